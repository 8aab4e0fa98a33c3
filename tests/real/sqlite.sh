#!/bin/bash
# real_sqlite: the sqlite3 command-line shell builds a 100 000-row table in a database file
# (recursive CTE insert), adds indexes and a second table, and runs joins, GROUP BY, window
# functions, DISTINCT, LIKE, ORDER BY with OFFSET, JSON aggregation, UPDATE/DELETE, VACUUM and
# PRAGMA integrity_check, plus the same on an in-memory database with a 20 MB page cache.  All
# data is computed deterministically.  The output must be identical without the library, with it
# (default settings) and with SYNCPOOL_ROTATE_MS=1; stderr must stay empty.
. "$(dirname "$0")/common.sh" "$@"
command -v sqlite3 >/dev/null || fail "sqlite3 is not installed (Debian package sqlite3)"

cat >"$WORK/work.sql" <<'SQL'
PRAGMA cache_size = -20000;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INT, name TEXT, val REAL, note TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, (x * 7919) % 97,
       printf('n%06d-%s', (x * 2654435761) % 1000003, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x % 7)),
       ((x * 48271) % 2147483647) / 1000.0,
       substr(hex(x * 1103515245 + 12345), 1, 1 + x % 16) || printf('%.*c', x % 40, 'z')
FROM c;
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name);
CREATE TABLE g(grp INTEGER PRIMARY KEY, label TEXT);
WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 96)
INSERT INTO g SELECT x, printf('group-%02d-%s', x, substr('XYZWV', 1 + x % 5, 2)) FROM c;
SELECT count(*), sum(val), min(name), max(name), total(length(note)) FROM t;
SELECT grp, count(*), round(sum(val), 3), min(name), max(name) FROM t GROUP BY grp ORDER BY grp LIMIT 20;
SELECT g.label, count(*), round(avg(t.val), 4) FROM t JOIN g USING (grp)
 WHERE t.id % 3 = 0 GROUP BY g.label ORDER BY 3 DESC, 1 LIMIT 25;
SELECT count(DISTINCT name), count(DISTINCT substr(note, 1, 3)) FROM t;
SELECT id, name FROM t WHERE name LIKE 'n0001%' ORDER BY name, id LIMIT 15;
SELECT id, name, val FROM t ORDER BY note DESC, id LIMIT 10 OFFSET 50000;
SELECT id, round(sum(val) OVER (PARTITION BY grp ORDER BY id ROWS 3 PRECEDING), 3),
       rank() OVER (PARTITION BY grp ORDER BY val DESC)
  FROM t WHERE id < 3000 ORDER BY id LIMIT 30;
SELECT a.grp, count(*) FROM t a JOIN t b ON a.grp = b.grp AND b.id = a.id + 97
 GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 10;
SELECT length(json_group_array(json_object('id', id, 'n', name))) FROM t WHERE grp < 10;
SELECT grp, group_concat(id % 10, '') FROM (SELECT * FROM t WHERE id < 2000 ORDER BY id) GROUP BY grp ORDER BY grp LIMIT 5;
UPDATE t SET name = upper(name), note = note || note WHERE id % 5 = 0;
DELETE FROM t WHERE id % 7 = 0;
SELECT count(*), sum(length(name)), sum(length(note)) FROM t;
VACUUM;
PRAGMA integrity_check;
SELECT count(*), min(id), max(id), round(sum(val), 2) FROM t WHERE grp BETWEEN 10 AND 20;
ATTACH ':memory:' AS m;
CREATE TABLE m.copy AS SELECT * FROM t ORDER BY random();
CREATE INDEX m.copy_note ON copy(note);
SELECT count(*), sum(id) FROM m.copy WHERE note > 'A';
SELECT note, count(*) FROM m.copy GROUP BY note ORDER BY 2 DESC, 1 LIMIT 10;
SQL

run_sql() { # RUN OUT
    rm -f "$WORK/db.sqlite"
    "$1" sqlite3 -batch -bail "$WORK/db.sqlite" <"$WORK/work.sql" >"$2" 2>"$2.err"
}
run_sql without "$WORK/ref.txt" || fail "sqlite3 without the library failed: $(head -c 1000 "$WORK/ref.txt.err")"
[ -s "$WORK/ref.txt.err" ] && fail "sqlite3 wrote to stderr without the library: $(head -c 1000 "$WORK/ref.txt.err")"
grep -qx ok "$WORK/ref.txt" || fail "integrity_check did not print ok"
[ "$(wc -l <"$WORK/ref.txt")" -ge 120 ] || fail "sqlite3 printed only $(wc -l <"$WORK/ref.txt") lines"
for cfg in "" "SYNCPOOL_ROTATE_MS=1"; do
    rm -f "$WORK/db.sqlite"
    with env $cfg sqlite3 -batch -bail "$WORK/db.sqlite" <"$WORK/work.sql" >"$WORK/with.txt" 2>"$WORK/with.err" \
        || fail "sqlite3 with the library (${cfg:-default settings}): exit status $?: $(head -c 1000 "$WORK/with.err")"
    same "$WORK/ref.txt" "$WORK/with.txt" "sqlite3 ${cfg:-(default settings)}"
    [ -s "$WORK/with.err" ] && fail "sqlite3 wrote to stderr with the library (${cfg:-default}): $(head -c 1000 "$WORK/with.err")"
done
echo "real_sqlite: OK ($(wc -l <"$WORK/ref.txt") lines identical in 2 configurations)"
