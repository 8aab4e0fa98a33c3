#!/bin/bash
# real_namespaces: programs that need a single-threaded process for a namespace call behave with
# the library as without it (issue #14, item 2; design decision 9).  unshare(CLONE_NEWUSER) and
# setns() into a user namespace return EINVAL in a multi-threaded process, setns() into a mount
# namespace does unless no other thread shares the filesystem context: a thread of the library's
# own that stays alive makes them fail under the library only (`unshare -U true` printed
# "unshare: unshare failed: Invalid argument").
#
#   namespaces.sh LIB SP_NAMESPACES     (SP_NAMESPACES: the test program tests/namespaces.c)
#
# Each command runs without the library (the reference) and with it, under `timeout -s KILL 20`
# (timeout itself without the library); exit status and stdout must be the same:
#   util-linux: unshare -U true, unshare -Ur true, unshare -Ur id -u, unshare -m true,
#               unshare -Urm true, and nsenter -U -m into a helper `unshare -Urm sleep`
#   sp_namespaces unshare-user / unshare-mnt / setns-user / setns-mnt / setns-both: the calls
#               made after the program created and joined threads that allocate
# A command that fails without the library (no user namespaces here, not root, ...) cannot be
# compared: it is listed as skipped, and the test then exits 77 (CTest: skipped) unless another
# command failed, so a machine that cannot run it never shows a silent pass.
. "$(dirname "$0")/common.sh" "$@"
PROG=${2:-}
[ -n "$PROG" ] && [ -x "$PROG" ] \
    || fail "the test program sp_namespaces is not given (\$2) or not executable: '$PROG'"
SECS=20
failures=() skipped=()

# bounded CMD...: at most $SECS s, then SIGKILL; `timeout` runs without the library
bounded() { env -u LD_PRELOAD timeout -s KILL "$SECS" "$@"; }

# compare NAME CMD...: the reference run, then the run with the library
# first N bytes of files, on one line
peek() { local n=$1; shift; head -c "$n" "$@" | tr '\n' ' '; }

compare() {
    local name=$1; shift
    local f="$WORK/$(echo "$name" | tr -c 'A-Za-z0-9_\n-' '_')"
    bounded env -u LD_PRELOAD "$@" >"$f.ref.out" 2>"$f.ref.err"
    local ref=$?
    if [ $ref -ne 0 ]; then
        skipped+=("$name: fails without the library too (status $ref: $(peek 300 "$f.ref.err" \
                   "$f.ref.out"))")
        echo "  skip $name (fails without the library: status $ref)"
        return
    fi
    bounded env LD_PRELOAD="$SP_LIB" "$@" >"$f.lib.out" 2>"$f.lib.err"
    local rc=$?
    if [ $rc -eq 137 ]; then
        failures+=("$name: still running after $SECS s with the library (killed); stderr: \
$(peek 500 "$f.lib.err")")
        echo "  FAIL $name (hung with the library)"
    elif [ $rc -ne $ref ]; then
        failures+=("$name: exit status $rc with the library, $ref without; stdout: \
$(peek 300 "$f.lib.out")stderr: $(peek 500 "$f.lib.err")")
        echo "  FAIL $name (status $rc with the library, $ref without)"
    elif ! cmp -s "$f.ref.out" "$f.lib.out"; then
        failures+=("$name: output with the library differs: without: '$(peek 300 "$f.ref.out")' \
with: '$(peek 300 "$f.lib.out")'; stderr: $(peek 300 "$f.lib.err")")
        echo "  FAIL $name (output differs)"
    else
        echo "  ok   $name (status $rc$([ -s "$f.lib.out" ] && printf ', output: %s' \
              "$(peek 100 "$f.lib.out")"))"
    fi
}

echo "real_namespaces: library $SP_LIB"
# Without user namespaces nothing here can be compared: say so, skip.
if ! msg=$(bounded env -u LD_PRELOAD unshare -U true 2>&1); then
    echo "SKIP: this machine does not allow user namespaces even without the library" \
         "(unshare -U true: ${msg:-no message}); nothing tested"
    exit 77
fi

compare "unshare -U true" unshare -U true
compare "unshare -Ur true" unshare -Ur true
compare "unshare -Ur id -u" unshare -Ur id -u
compare "unshare -m true" unshare -m true
compare "unshare -Urm true" unshare -Urm true

# nsenter into the namespaces of a helper (made without the library; `sleep` bounds its life,
# and it is killed when done)
env -u LD_PRELOAD unshare -Urm sleep $SECS &
helper=$!
for _ in $(seq 500); do
    ns=$(readlink /proc/$helper/ns/user 2>/dev/null)
    [ -n "$ns" ] && [ "$ns" != "$(readlink /proc/self/ns/user)" ] && break
    sleep 0.01
done
if [ -n "$ns" ] && [ "$ns" != "$(readlink /proc/self/ns/user)" ]; then
    compare "nsenter -U -m true (into unshare -Urm sleep)" nsenter -t "$helper" -U -m true
    compare "nsenter -U -m id -u" nsenter -t "$helper" -U -m id -u
else
    skipped+=("nsenter: the helper 'unshare -Urm sleep' got no user namespace of its own in 5 s")
    echo "  skip nsenter (no helper namespace)"
fi
kill -9 "$helper" 2>/dev/null
wait "$helper" 2>/dev/null

for mode in unshare-user unshare-mnt setns-user setns-mnt setns-both; do
    compare "sp_namespaces $mode" "$PROG" "$mode"
done

if [ ${#failures[@]} -gt 0 ]; then
    for f in "${failures[@]}"; do echo "FAIL: $f" >&2; done
    [ ${#skipped[@]} -gt 0 ] && printf 'skipped: %s\n' "${skipped[@]}" >&2
    echo "real_namespaces: ${#failures[@]} command(s) behave differently with the library" >&2
    exit 1
fi
if [ ${#skipped[@]} -gt 0 ]; then
    printf 'SKIP: %s\n' "${skipped[@]}"
    echo "real_namespaces: SKIPPED (${#skipped[@]} command(s) could not be compared here;" \
         "the others were the same with the library)"
    exit 77
fi
echo "real_namespaces: OK (the same exit status and output with the library for every command)"
