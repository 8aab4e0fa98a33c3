#!/bin/bash
# env_bad: bad SYNCPOOL_* values never break a program: for each variable and each bad value,
# /bin/true and "$PYTHON" -c 'print(1)' under the library exit 0 with the right output, and
# stderr holds exactly one line, starting with "syncpool:", that names the variable (for an
# empty value, no line is accepted too).  Good values print nothing.  Two bad variables at once
# give one line each.  SYNCPOOL_CACHE_BYTES also: 0 and 2^40+1 (out of range) warn, 1 and 65536
# do not.  Bad values include an escape sequence, a newline and bytes >= 0x80: stderr never holds
# anything but printable ASCII and newlines (the warning shows such bytes as \xHH).
. "$(dirname "$0")/common.sh" "$@"

clean=(env -u SYNCPOOL_ROTATE_MS -u SYNCPOOL_MAX_SIZE -u SYNCPOOL_DISABLE -u SYNCPOOL_STATS
       -u SYNCPOOL_CACHE_BYTES)
errs=0
bad() { echo "FAIL: $*" >&2; errs=$((errs + 1)); }

# check NAME VALUE EXPECT_LINES(min max) -- runs both programs with NAME=VALUE
check() {
    local name=$1 value=$2 min=$3 max=$4 prog out rc n other raw q
    q=$(printf %q "$value")            # for the messages: control characters shown, not sent
    for prog in true python; do
        if [ $prog = true ]; then
            out=$("${clean[@]}" "$name=$value" LD_PRELOAD="$SP_LIB" /bin/true 2>"$WORK/err"); rc=$?
            want=""
        else
            out=$("${clean[@]}" "$name=$value" LD_PRELOAD="$SP_LIB" "$PYTHON" -c 'print(1)' 2>"$WORK/err"); rc=$?
            want="1"
        fi
        n=$(grep -c '^syncpool:' "$WORK/err")
        other=$(grep -vc '^syncpool:' "$WORK/err")
        [ $rc -eq 0 ] || bad "$name=$q $prog: exit status $rc"
        [ "$out" = "$want" ] || bad "$name=$q $prog: stdout '$out', expected '$want'"
        if [ "$n" -lt "$min" ] || [ "$n" -gt "$max" ]; then
            bad "$name=$q $prog: $n 'syncpool:' lines on stderr, expected $min..$max: $(cat -v "$WORK/err" | head -c 600)"
        fi
        if [ "$n" -ge 1 ] && ! grep '^syncpool:' "$WORK/err" | grep -q "$name"; then
            bad "$name=$q $prog: the warning does not name $name: $(cat -v "$WORK/err" | head -c 300)"
        fi
        [ "$other" -eq 0 ] || bad "$name=$q $prog: unexpected stderr lines: $(grep -v '^syncpool:' "$WORK/err" | head -5 | cat -v)"
        raw=$(tr -d '\n' <"$WORK/err" | LC_ALL=C tr -d '[:print:]' | wc -c)
        [ "$raw" -eq 0 ] || bad "$name=$q $prog: $raw raw control or non-ASCII bytes on stderr: $(cat -v "$WORK/err" | head -c 300)"
    done
}

for name in SYNCPOOL_ROTATE_MS SYNCPOOL_MAX_SIZE SYNCPOOL_DISABLE SYNCPOOL_STATS SYNCPOOL_CACHE_BYTES; do
    check "$name" "" 0 1
    for value in "-5" "99999999999999999999999" "abc" "10xyz" $'\e[2J\e]0;x\a' $'1\n2' $'\xff7'; do
        check "$name" "$value" 1 1
    done
done
# good values: no warning at all
check SYNCPOOL_ROTATE_MS 0 0 0
check SYNCPOOL_ROTATE_MS 250 0 0
check SYNCPOOL_MAX_SIZE 1024 0 0
check SYNCPOOL_MAX_SIZE 14336 0 0
check SYNCPOOL_DISABLE 1 0 0
check SYNCPOOL_DISABLE 0 0 0
check SYNCPOOL_STATS "json:$WORK/stats.json" 0 0
[ -s "$WORK/stats.json" ] || bad "SYNCPOOL_STATS=json:PATH wrote no file"
check SYNCPOOL_CACHE_BYTES 65536 0 0
check SYNCPOOL_CACHE_BYTES 1 0 0
# out of range (1 ... 2^40)
check SYNCPOOL_CACHE_BYTES 0 1 1
check SYNCPOOL_CACHE_BYTES 1099511627777 1 1

# the default is really used: the statistics report rotate_ms 100 for a bad SYNCPOOL_ROTATE_MS
for value in "" "-5" "99999999999999999999999" "abc" "10xyz"; do
    rm -f "$WORK/d.json"
    "${clean[@]}" SYNCPOOL_ROTATE_MS="$value" SYNCPOOL_STATS="json:$WORK/d.json" LD_PRELOAD="$SP_LIB" /bin/true 2>/dev/null
    grep -q '^{"rotate_ms":100,' "$WORK/d.json" 2>/dev/null \
        || bad "SYNCPOOL_ROTATE_MS='$value': statistics do not show the default 100: $(head -c 100 "$WORK/d.json" 2>&1)"
done

# two bad variables: one line each
out=$("${clean[@]}" SYNCPOOL_ROTATE_MS=abc SYNCPOOL_MAX_SIZE=-1 LD_PRELOAD="$SP_LIB" "$PYTHON" -c 'print(2)' 2>"$WORK/err")
[ "$out" = 2 ] || bad "two bad variables: stdout '$out'"
[ "$(grep -c '^syncpool:' "$WORK/err")" -eq 2 ] && grep -q 'SYNCPOOL_ROTATE_MS' "$WORK/err" && grep -q 'SYNCPOOL_MAX_SIZE' "$WORK/err" \
    || bad "two bad variables: expected one warning line for each: $(cat "$WORK/err")"

[ $errs -eq 0 ] || { echo "env_bad: $errs failures" >&2; exit 1; }
echo "env_bad: OK"
