#!/bin/bash
# real_cpython_tests: CPython's own regression tests (Debian package libpython3.11-testsuite)
# for allocation-heavy modules -- test_dict test_list test_set test_json test_re test_unicode
# test_collections -- run with "$PYTHON -m test -j0" and PYTHONMALLOC=malloc (every Python
# object through malloc, not pymalloc's arenas): once without the library (the reference), once
# with it (default settings) and once with SYNCPOOL_ROTATE_MS=1.  From the JUnit XML that
# regrtest writes, the outcome of every test case (passed / skipped / failed / error) must be
# the same as in the reference, as must regrtest's exit status; the reference must have run at
# least 1000 test cases.  Modules can be chosen with SP_PY_TESTS="test_a test_b".
# Optional, for other module sets (unset: the behaviour above): SP_PY_MIN_CASES (the reference's
# minimum number of test cases, default 1000); SP_PY_TIMEOUT=SECONDS, which passes --timeout to
# regrtest (a test file running longer is killed and reported), bounds each whole run with
# `timeout -s KILL` (SECONDS + 300), and afterwards kills every process the run left behind
# (found by a marker in their environment), which also fails the run with the library.
. "$(dirname "$0")/common.sh" "$@"
SP_LIB=$(readlink -f "$SP_LIB")   # regrtest's workers run in other directories
MODULES=${SP_PY_TESTS:-test_dict test_list test_set test_json test_re test_unicode test_collections}
"$PYTHON" -c 'import test.support, test.libregrtest' 2>/dev/null \
    || fail "CPython's test suite is not installed (Debian package libpython3.$("$PYTHON" -c 'import sys; print(sys.version_info[1])')-testsuite)"
export PYTHONMALLOC=malloc PYTHONHASHSEED=0
MIN_CASES=${SP_PY_MIN_CASES:-1000}
PY_TIMEOUT=${SP_PY_TIMEOUT:-}
if [ -n "$PY_TIMEOUT" ]; then
    [[ "$PY_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || fail "SP_PY_TIMEOUT='$PY_TIMEOUT': expected seconds"
    TIMEOUT_ARGS=(--timeout "$PY_TIMEOUT")
    BOUND=(env -u LD_PRELOAD timeout -s KILL $((PY_TIMEOUT + 300)))   # timeout without the library
else
    TIMEOUT_ARGS=() BOUND=()
fi

# leftovers NAME: processes still alive whose environment has this run's marker; prints them
# ("pid state threads command") and kills them
leftovers() {
    without "$PYTHON" - "SP_PY_RUN=$$-$1" <<'PY'
import os, signal, sys
mark = sys.argv[1].encode()
def marked(pid):
    # a process whose main thread has exited has no environ of its own: ask its other threads
    for tid in [pid] + os.listdir("/proc/%s/task" % pid):
        try:
            with open("/proc/%s/task/%s/environ" % (pid, tid), "rb") as f:
                if mark in f.read().split(b"\0"):
                    return True
        except OSError:
            pass
    return False
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        if not marked(pid):
            continue
        with open("/proc/%s/stat" % pid) as f:
            st = f.read()
        state = st[st.rindex(")") + 2]
        threads = len(os.listdir("/proc/%s/task" % pid))
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            cmd = " ".join(f.read().replace(b"\0", b" ").decode(errors="replace").split())
        os.kill(int(pid), signal.SIGKILL)
    except (OSError, ValueError):
        continue
    print("%s %s %d %s" % (pid, state, threads, cmd[:100] or "(no command line: main thread exited)"))
PY
}

# outcomes FILE.xml [details] -> one line per test case: "name outcome", sorted; with
# "details", the messages of the failed test cases instead
outcomes() {
    "$PYTHON" - "$@" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
rows = []
for tc in root.iter("testcase"):
    kinds = [c for c in tc if c.tag in ("skipped", "failure", "error")]
    if len(sys.argv) > 2:
        if kinds and kinds[0].tag != "skipped":
            print("---", tc.get("name"), kinds[0].tag)
            print((kinds[0].text or kinds[0].get("message") or "")[-1500:])
        continue
    rows.append("%s %s" % (tc.get("name"), kinds[0].tag if kinds else "passed"))
print("\n".join(sorted(rows)))
PY
}

run_tests() { # RUN NAME [ENV...]
    local run=$1 name=$2; shift 2
    if [ -n "$PY_TIMEOUT" ]; then
        local pre=(-u LD_PRELOAD)
        [ "$run" = with ] && pre=(LD_PRELOAD="$SP_LIB")
        "${BOUND[@]}" env "${pre[@]}" SP_PY_RUN="$$-$name" "$@" "$PYTHON" -m test -j0 \
            "${TIMEOUT_ARGS[@]}" \
            --junit-xml "$WORK/$name.xml" $MODULES >"$WORK/$name.log" 2>&1
        echo $? >"$WORK/$name.rc"
        local left
        left=$(leftovers "$name")
        if [ "$(cat "$WORK/$name.rc")" = 137 ]; then
            fail "$name: regrtest still running after $((PY_TIMEOUT + 300)) s (killed)${left:+; it left (pid state threads command, killed): $left}: $(tail -c 1500 "$WORK/$name.log")"
        fi
        if grep -q '^Timeout (' "$WORK/$name.log"; then
            fail "$name: a test file ran longer than --timeout $PY_TIMEOUT (regrtest killed it)${left:+; processes left behind (pid state threads command, killed): $left}; where it was: $(grep -A40 '^Timeout (' "$WORK/$name.log" | grep -m8 'File .*test_' | sed 's/^ *//')"
        fi
        [ -z "$left" ] || [ "$run" = without ] \
            || fail "$name: processes of the run were still alive after regrtest ended (pid state threads command; killed): $left"
    else
        "$run" env "$@" "$PYTHON" -m test -j0 --junit-xml "$WORK/$name.xml" $MODULES \
            >"$WORK/$name.log" 2>&1
        echo $? >"$WORK/$name.rc"
    fi
    [ -s "$WORK/$name.xml" ] || fail "$name: regrtest wrote no JUnit XML: $(tail -c 1500 "$WORK/$name.log")"
    outcomes "$WORK/$name.xml" >"$WORK/$name.txt" || fail "$name: cannot parse $WORK/$name.xml"
}

run_tests without ref
n=$(wc -l <"$WORK/ref.txt")
[ "$n" -ge "$MIN_CASES" ] || fail "the reference run has only $n test cases: $(tail -c 1500 "$WORK/ref.log")"
for cfg in default rotate1; do
    if [ $cfg = default ]; then run_tests with $cfg; else run_tests with $cfg SYNCPOOL_ROTATE_MS=1; fi
    if ! cmp -s "$WORK/ref.txt" "$WORK/$cfg.txt"; then
        echo "== failed test cases with the library ($cfg):" >&2
        outcomes "$WORK/$cfg.xml" details | head -c 6000 >&2
        echo "== failed test cases without it:" >&2
        outcomes "$WORK/ref.xml" details | head -c 3000 >&2
        same "$WORK/ref.txt" "$WORK/$cfg.txt" "CPython test outcomes ($cfg)"
    fi
    [ "$(cat "$WORK/$cfg.rc")" = "$(cat "$WORK/ref.rc")" ] \
        || fail "regrtest exit status $(cat "$WORK/$cfg.rc") with the library ($cfg), $(cat "$WORK/ref.rc") without: $(tail -c 1500 "$WORK/$cfg.log")"
    grep -q '^syncpool:' "$WORK/$cfg.log" && fail "syncpool printed a warning ($cfg): $(grep '^syncpool:' "$WORK/$cfg.log" | head -3)"
done
summary=$(awk '{print $2}' "$WORK/ref.txt" | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')
echo "real_cpython_tests: OK ($MODULES: $n test cases, ${summary%, }; regrtest status $(cat "$WORK/ref.rc"); identical with the library in 2 configurations)"
