#!/bin/bash
# stats_file_safety: SYNCPOOL_STATS=json:PATH writes only a regular file, never through a
# symlink, and warnings never echo raw control characters (issue #14, item 6; docs/reliability.md,
# "Environment and files the library writes").  Each run is /bin/true under the library, at most
# 10 s, and must exit 0.
#  - a symlink at PATH (to an existing file, and dangling, and at the predictable name a %p path
#    gives) is not followed: the target keeps its content or is not created, the link stays, and
#    stderr has one "syncpool:" line saying it is a symbolic link;
#  - a FIFO without a reader at PATH does not block the exit; it, /dev/null and a directory get
#    one "syncpool:" line each and are left as they are;
#  - a new file is created with mode 0644 under umask 000 (0600 under umask 077);
#  - a longer regular file at PATH is truncated: PATH is then exactly one JSON object;
#  - warnings quoting SYNCPOOL_ROTATE_MS, SYNCPOOL_STATS or an unwritable PATH with escape
#    sequences, a newline or bytes >= 0x80 are one line each, printable ASCII only, with the
#    bytes shown as \xHH.
. "$(dirname "$0")/common.sh" "$@"

clean=(env -u SYNCPOOL_ROTATE_MS -u SYNCPOOL_MAX_SIZE -u SYNCPOOL_DISABLE -u SYNCPOOL_STATS
       -u SYNCPOOL_CACHE_BYTES)
errs=0
bad() { echo "FAIL: $*" >&2; errs=$((errs + 1)); }

# run WHAT VAR=VALUE...: /bin/true under the library with these variables, 10 s at most;
# stderr in $WORK/err.  `timeout` itself runs without the library.
run() {
    local what=$1 rc; shift
    without timeout 10 "${clean[@]}" "$@" LD_PRELOAD="$SP_LIB" /bin/true 2>"$WORK/err"; rc=$?
    [ $rc -eq 0 ] || bad "$what: exit status $rc$([ $rc -eq 124 ] && echo ' (killed after 10 s: blocked at exit)')"
}
# one_warning WHAT PATTERN: stderr is exactly one line, a "syncpool:" warning matching PATTERN
one_warning() {
    local n
    n=$(wc -l <"$WORK/err")
    if [ "$n" -ne 1 ] || ! grep -q '^syncpool:' "$WORK/err" || ! grep -q -- "$2" "$WORK/err"; then
        bad "$1: expected one 'syncpool:' line matching '$2' on stderr, got $n lines: $(cat -v "$WORK/err" | head -c 400)"
    fi
}
# printable WHAT: stderr holds nothing but printable ASCII and newlines
printable() {
    local n
    n=$(tr -d '\n' <"$WORK/err" | LC_ALL=C tr -d '[:print:]' | wc -c)
    [ "$n" -eq 0 ] || bad "$1: $n raw control or non-ASCII bytes on stderr: $(od -c "$WORK/err" | head -5)"
}

# 1. symlinks
printf 'precious\n' >"$WORK/victim"
ln -s "$WORK/victim" "$WORK/link.json"
run "symlink to a file" SYNCPOOL_STATS="json:$WORK/link.json"
[ "$(cat "$WORK/victim")" = precious ] || bad "symlink to a file: the target was written: $(head -c 100 "$WORK/victim")"
[ -L "$WORK/link.json" ] || bad "symlink to a file: the link is gone"
one_warning "symlink to a file" "symbolic link"

ln -s "$WORK/created" "$WORK/dangling.json"
run "dangling symlink" SYNCPOOL_STATS="json:$WORK/dangling.json"
[ -e "$WORK/created" ] && bad "dangling symlink: its target was created"
one_warning "dangling symlink" "symbolic link"

# %p gives a predictable name: plant the link for the pid the program will have (sh execs it)
printf 'precious\n' >"$WORK/victim2"
without timeout 10 "${clean[@]}" SYNCPOOL_STATS="json:$WORK/p.%p.json" sh -c \
    'ln -s "$1/victim2" "$1/p.$$.json" && export LD_PRELOAD="$2" && exec /bin/true' sh "$WORK" "$SP_LIB" \
    2>"$WORK/err" || bad "symlink at the %p name: exit status $?"
[ "$(cat "$WORK/victim2")" = precious ] || bad "symlink at the %p name: the target was written"
one_warning "symlink at the %p name" "symbolic link"

# 2. not a regular file
mkfifo "$WORK/fifo.json"
run "FIFO" SYNCPOOL_STATS="json:$WORK/fifo.json"
[ -p "$WORK/fifo.json" ] || bad "FIFO: no longer a FIFO"
one_warning "FIFO" "not a regular file"

run "/dev/null" SYNCPOOL_STATS="json:/dev/null"
[ -c /dev/null ] || bad "/dev/null is no longer a character device"
one_warning "/dev/null" "not a regular file"

mkdir "$WORK/dir.json"
run "directory" SYNCPOOL_STATS="json:$WORK/dir.json"
[ -d "$WORK/dir.json" ] || bad "directory: no longer a directory"
one_warning "directory" "dir.json"

# 3. mode of a new file
saved_umask=$(umask)
for um in 000:644 077:600; do
    rm -f "$WORK/new.json"
    umask "${um%:*}"
    run "umask ${um%:*}" SYNCPOOL_STATS="json:$WORK/new.json"
    umask "$saved_umask"
    mode=$(stat -c %a "$WORK/new.json" 2>/dev/null)
    [ "$mode" = "${um#*:}" ] || bad "umask ${um%:*}: new statistics file has mode '$mode', expected ${um#*:}"
    [ -s "$WORK/err" ] && bad "umask ${um%:*}: stderr: $(head -c 300 "$WORK/err")"
done

# 4. a longer regular file is replaced whole
head -c 200000 /dev/zero | tr '\0' x >"$WORK/old.json"
run "longer regular file" SYNCPOOL_STATS="json:$WORK/old.json"
without "$PYTHON" -c 'import json, sys; json.load(open(sys.argv[1]))' "$WORK/old.json" 2>"$WORK/perr" \
    || bad "longer regular file: not one JSON object afterwards: $(tail -c 200 "$WORK/perr")"

# 5. warnings that quote the environment
for v in $'\e]0;owned\a\e[2J\r' $'12\n34' $'\xff\xfe9'; do
    run "SYNCPOOL_ROTATE_MS=$(printf %q "$v")" SYNCPOOL_ROTATE_MS="$v"
    one_warning "SYNCPOOL_ROTATE_MS=$(printf %q "$v")" "SYNCPOOL_ROTATE_MS"
    printable "SYNCPOOL_ROTATE_MS=$(printf %q "$v")"
done
run "ESC" SYNCPOOL_ROTATE_MS=$'\e]0;owned\a\e[2J\r'
grep -qF 'SYNCPOOL_ROTATE_MS="\x1b]0;owned\x07\x1b[2J\x0d"' "$WORK/err" \
    || bad "an escape sequence is not shown as \\xHH: $(cat -v "$WORK/err")"
run "SYNCPOOL_STATS with an escape sequence" SYNCPOOL_STATS=$'\e[31mred'
one_warning "SYNCPOOL_STATS with an escape sequence" "SYNCPOOL_STATS"
printable "SYNCPOOL_STATS with an escape sequence"
run "unwritable PATH with an escape sequence" SYNCPOOL_STATS=$'json:/nonexistent-dir/\e[31mred\n.json'
one_warning "unwritable PATH with an escape sequence" "nonexistent-dir"
printable "unwritable PATH with an escape sequence"

[ $errs -eq 0 ] || { echo "stats_file_safety: $errs failures" >&2; exit 1; }
echo "stats_file_safety: OK"
