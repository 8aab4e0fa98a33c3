#!/bin/bash
# stats_wrapper: SYNCPOOL_STATS=json:PATH names the process it describes, and a wrapper that
# exits after the program does not overwrite the program's figures (issue #14, item 7; the rule
# is in shim/stats_file.c and README.md).  $2 is sp_stats_worker (tests/stats_worker.c), which
# prints its pid and makes N pooled-size mallocs.  After each run PATH must be one JSON object
# with the documented top-level keys (rotate_ms, rotations, cached_bytes, classes) and with
# "pid", "program" and "written_at_us", and name the expected process:
#  - `timeout 60 W`, `env W`, `sh -c 'W; :'` and `bash -c 'W; :'` (the shell forks, waits,
#    exits last) and `timeout 60 sh -c 'W; true'`: the worker (its pid, program
#    "sp_stats_worker");
#  - then W with few mallocs, directly: that run (a file from an earlier run is always replaced);
#  - `sh -c 'W small --linger 1000 & (once it runs) W big; wait'`: the big worker, although the
#    small one exits last (the big one wrote during its lifetime and made more mallocs);
#  - `W small --fork big` (the child leaves through exit()): the parent, because a forked child
#    writes no statistics unless PATH has %p;
#  - with %p in PATH, `timeout 60 W small --fork big`: one file per process (timeout, worker,
#    its child), each naming the pid in its file name.
. "$(dirname "$0")/common.sh" "$@"
W=${2:-}
[ -x "$W" ] || fail "sp_stats_worker not found: '$W' (pass it as \$2)"

clean=(env -u SYNCPOOL_ROTATE_MS -u SYNCPOOL_MAX_SIZE -u SYNCPOOL_DISABLE -u SYNCPOOL_STATS
       -u SYNCPOOL_CACHE_BYTES)
errs=0
bad() { echo "FAIL: $*" >&2; errs=$((errs + 1)); }
F=$WORK/stats.json
BIG=200000

cat >"$WORK/check.py" <<'PY'
import json, sys
path, pid, program, what = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    with open(path) as f:
        st = json.load(f)
except Exception as e:
    sys.exit("%s: %s is not one JSON object: %s" % (what, path, e))
errs = []
for k in ("rotate_ms", "rotations", "cached_bytes", "classes", "pid", "program", "written_at_us"):
    if k not in st:
        errs.append("top-level key %r missing" % k)
if not errs:
    gets = sum(c["gets"] for c in st["classes"])
    if st["pid"] != pid or st["program"] != program:
        errs.append("describes pid %r program %r (%d gets), expected pid %d program %r"
                    % (st["pid"], st["program"], gets, pid, program))
if errs:
    sys.exit("%s: %s" % (what, "; ".join(errs)))
PY
# expect WHAT PID PROGRAM [FILE]
expect() {
    without "$PYTHON" "$WORK/check.py" "${4:-$F}" "$2" "$3" "$1" || bad "see above"
}
# run OUTFILE COMMAND...: COMMAND under the library with SYNCPOOL_STATS=json:$F; its stdout in
# OUTFILE, and stderr must stay empty
run() {
    local out=$1 rc; shift
    "${clean[@]}" SYNCPOOL_STATS="json:$F" LD_PRELOAD="$SP_LIB" "$@" >"$out" 2>"$WORK/err"; rc=$?
    [ $rc -eq 0 ] || bad "$*: exit status $rc"
    [ -s "$WORK/err" ] && bad "$*: stderr: $(head -c 300 "$WORK/err")"
}
pid_of() { sed -n "s/^$1=//p" "$2" | head -1; }

# 1. wrappers around the worker
rm -f "$F"
run "$WORK/o1" timeout 60 "$W" $BIG
expect "timeout 60 W" "$(pid_of pid "$WORK/o1")" sp_stats_worker
run "$WORK/o2" env "$W" $BIG
expect "env W" "$(pid_of pid "$WORK/o2")" sp_stats_worker
run "$WORK/o3" sh -c '"$0" "$1"; :' "$W" $BIG
expect "sh -c 'W; :'" "$(pid_of pid "$WORK/o3")" sp_stats_worker
run "$WORK/o3b" bash -c '"$0" "$1"; :' "$W" $BIG        # bash, unlike dash, exits through exit()
expect "bash -c 'W; :'" "$(pid_of pid "$WORK/o3b")" sp_stats_worker
run "$WORK/o4" timeout 60 sh -c '"$0" "$1"; true' "$W" $BIG
expect "timeout 60 sh -c 'W; true'" "$(pid_of pid "$WORK/o4")" sp_stats_worker

# 2. an earlier run's file is replaced, even by a run with fewer mallocs
run "$WORK/o5" "$W" 10
expect "W 10 after a bigger run" "$(pid_of pid "$WORK/o5")" sp_stats_worker

# 3. two workers at once: the busier one, although the other exits last.  The big one starts once
#    the small one runs (it has printed its pid), so their lifetimes overlap whatever the timing.
run "$WORK/o6" sh -c '"$0" 1000 --linger 1000 >"$2" &
    while ! grep -q pid= "$2"; do sleep 0.01; done; "$0" "$1"; wait' "$W" $BIG "$WORK/o6.small"
expect "W small --linger 1000 & W big" "$(pid_of pid "$WORK/o6")" sp_stats_worker
small=$(pid_of pid "$WORK/o6.small")
[ -n "$small" ] && [ "$small" != "$(pid_of pid "$WORK/o6")" ] ||
    bad "two workers: pids '$small' and '$(pid_of pid "$WORK/o6")'"

# 4. a forked child (no exec) does not write without %p
run "$WORK/o7" "$W" 1000 --fork $BIG
expect "W small --fork big" "$(pid_of pid "$WORK/o7")" sp_stats_worker
child=$(pid_of child "$WORK/o7")
[ -n "$child" ] || bad "W --fork printed no child pid"

# 5. with %p: a file per process, each naming itself
rm -rf "$WORK/p"; mkdir "$WORK/p"
"${clean[@]}" SYNCPOOL_STATS="json:$WORK/p/s.%p.json" LD_PRELOAD="$SP_LIB" timeout 60 "$W" 1000 --fork $BIG \
    >"$WORK/o8" 2>"$WORK/err" || bad "%p run: exit status $?"
for who in pid child; do
    p=$(pid_of $who "$WORK/o8")
    expect "%p, the $who" "$p" sp_stats_worker "$WORK/p/s.$p.json"
done
n=$(ls "$WORK/p" | wc -l)
[ "$n" -eq 3 ] || bad "%p run: $n files, expected 3 (timeout, worker, child): $(ls "$WORK/p")"

[ $errs -eq 0 ] || { echo "stats_wrapper: $errs failures" >&2; exit 1; }
echo "stats_wrapper: OK"
