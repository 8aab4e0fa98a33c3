#!/bin/bash
# real_cxx_containers: tests/cxx_containers.cc (a multithreaded C++ program using map,
# unordered_map, set, vector, string, shared_ptr, list, deque, mutex/condvar queues; objects are
# made in one thread and destroyed in another) prints checksums that do not depend on thread
# scheduling.  Its output must be identical without the library, with it (default settings),
# with SYNCPOOL_ROTATE_MS=1 and with SYNCPOOL_ROTATE_MS=0; it must also be identical between two
# runs without the library (the program is deterministic), have the 4 expected lines and exit 0.
#   cxx_containers.sh LIBRARY PROGRAM [SCALE]
. "$(dirname "$0")/common.sh" "$@"
PROG=${2:-}
SCALE=${3:-1}
[ -x "$PROG" ] || fail "program not found: '$PROG' (pass it as \$2)"

without "$PROG" "$SCALE" >"$WORK/ref.txt" 2>"$WORK/ref.err" || fail "without the library: exit status $?: $(head -c 1000 "$WORK/ref.err")"
without "$PROG" "$SCALE" >"$WORK/ref2.txt" 2>&1 || fail "without the library (2nd run) failed"
same "$WORK/ref.txt" "$WORK/ref2.txt" "two runs without the library (the program must be deterministic)"
[ "$(grep -cE '^(local|queue|shared|strings):' "$WORK/ref.txt")" -eq 4 ] || fail "unexpected output: $(cat "$WORK/ref.txt")"
for cfg in "" "SYNCPOOL_ROTATE_MS=1" "SYNCPOOL_ROTATE_MS=0"; do
    with env $cfg "$PROG" "$SCALE" >"$WORK/with.txt" 2>"$WORK/with.err" \
        || fail "with the library (${cfg:-default settings}): exit status $?: $(head -c 1000 "$WORK/with.err")"
    same "$WORK/ref.txt" "$WORK/with.txt" "cxx_containers ${cfg:-(default settings)}"
    [ -s "$WORK/with.err" ] && fail "stderr with the library (${cfg:-default}): $(head -c 1000 "$WORK/with.err")"
done
echo "real_cxx_containers: OK (identical in 3 configurations)"
sed 's/^/  /' "$WORK/ref.txt"
