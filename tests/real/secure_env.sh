#!/bin/bash
# secure_env: in a secure-execution process (AT_SECURE) the library ignores every SYNCPOOL_*
# variable (design decision 9; issue #14, item 6).  Needs root (exit 77 = skipped otherwise).
#
# Usage: secure_env.sh LIB CC SOURCE INCLUDE_DIR.  ld.so ignores an LD_PRELOAD path with a slash
# in such a process, so SOURCE (tests/secure_env.c) is compiled here and linked against a copy of
# LIB with an absolute RUNPATH, in a fresh 0755 directory; one copy of the program is made
# setuid to `nobody`, and run as root (real uid 0, effective uid 65534: the kernel sets
# AT_SECURE, which the program prints and the script checks).  The other copy, not setuid, is
# the control: it must honour the same variables, so the checks are not vacuous.
#  A. SYNCPOOL_ROTATE_MS=7 SYNCPOOL_MAX_SIZE=64 SYNCPOOL_CACHE_BYTES=1
#     SYNCPOOL_STATS=json:DIR/stats.json, DIR writable by nobody:
#     setuid: no file is created, rotate_ms is 100 and classes go up to 14336 (the defaults),
#     stderr is empty.  Control: the file is written, rotate_ms is 7, no class above 64.
#  B. SYNCPOOL_STATS=1 SYNCPOOL_DISABLE=1 SYNCPOOL_ROTATE_MS=<escape sequence>:
#     setuid: stderr is empty (no warning, no table) and the pools served mallocs.  Control: a
#     warning naming SYNCPOOL_ROTATE_MS and the table on stderr, no pooled mallocs.
. "$(dirname "$0")/common.sh" "$@"
CC=${2:-}; SRC=${3:-}; INC=${4:-}
[ -n "$CC" ] && [ -f "$SRC" ] && [ -d "$INC" ] || fail "usage: secure_env.sh LIB CC SOURCE INCLUDE_DIR"
if [ "$(id -u)" -ne 0 ] || ! id nobody >/dev/null 2>&1; then
    echo "secure_env: SKIPPED (needs root and a user 'nobody' to make a setuid program)"
    exit 77
fi
NOBODY=$(id -u nobody)
# not $WORK: /dev/shm is often mounted nosuid, and $WORK is 0700; /tmp is open to everyone
D=$(mktemp -d /tmp/sp_secure.XXXXXX) || fail "mktemp"
trap 'rm -rf "$WORK" "$D"' EXIT
chmod 0755 "$D"
mkdir "$D/out" && chmod 1777 "$D/out"
cp "$SP_LIB" "$D/libsyncpool.so" && chmod 0644 "$D/libsyncpool.so" || fail "copying the library"
without "$CC" -O1 -fno-builtin-malloc -fno-builtin-free -I"$INC" -o "$D/plain" "$SRC" \
    -L"$D" -lsyncpool -Wl,-rpath,"$D" -Wl,--enable-new-dtags 2>"$WORK/cc.err" \
    || fail "compiling $SRC: $(head -c 1000 "$WORK/cc.err")"
cp "$D/plain" "$D/setuid" && chown nobody "$D/setuid" && chmod 4755 "$D/setuid" \
    || fail "making the setuid copy"
if ! env -i "$D/plain" >/dev/null 2>"$WORK/run.err"; then
    echo "secure_env: SKIPPED (cannot run a program from $D: $(head -c 200 "$WORK/run.err"))"
    exit 77
fi

errs=0
bad() { echo "FAIL: $*" >&2; errs=$((errs + 1)); }
# go WHO VAR=VALUE...: runs $D/WHO with only these variables (and PATH); stdout in $WORK/WHO.out,
# stderr in $WORK/WHO.err; line 1 of stdout must say AT_SECURE=1 for setuid, 0 for plain
go() {
    local who=$1 rc; shift
    env -i PATH=/usr/bin:/bin "$@" "$D/$who" >"$WORK/$who.out" 2>"$WORK/$who.err"; rc=$?
    [ $rc -eq 0 ] || bad "$who ($*): exit status $rc: $(head -c 300 "$WORK/$who.err")"
    local first
    first=$(head -1 "$WORK/$who.out")
    if [ $who = setuid ] && [ "${first%% *}" != AT_SECURE=1 ]; then
        case $first in
            "AT_SECURE=0 ruid=0 euid=$NOBODY") ;;
            *) fail "setuid copy: unexpected first line '$first'" ;;
        esac
        echo "secure_env: SKIPPED (a setuid program here does not get AT_SECURE: '$first')"
        exit 77
    fi
    [ $who = plain ] && [ "${first%% *}" != AT_SECURE=0 ] && bad "plain copy: '$first'"
    sed -n 2p "$WORK/$who.out" >"$WORK/$who.json"
}
# summary WHO: "rotate_ms max_class gets" from the JSON line
summary() {
    without "$PYTHON" -c '
import json, sys
st = json.load(open(sys.argv[1]))
cls = [c for c in st["classes"]]
print(st["rotate_ms"], max([c["size"] for c in cls] or [0]), sum(c["gets"] for c in cls))' \
        "$WORK/$1.json" 2>&1
}

# A
envA=(SYNCPOOL_ROTATE_MS=7 SYNCPOOL_MAX_SIZE=64 SYNCPOOL_CACHE_BYTES=1
      SYNCPOOL_STATS="json:$D/out/stats.json")
go setuid "${envA[@]}"
[ -e "$D/out/stats.json" ] &&
    bad "A setuid: SYNCPOOL_STATS was honoured: $D/out/stats.json created ($(stat -c '%U %a' "$D/out/stats.json"))"
read -r rot maxc gets <<<"$(summary setuid)"
[ "$rot" = 100 ] || bad "A setuid: rotate_ms '$rot', expected the default 100 (SYNCPOOL_ROTATE_MS=7 ignored)"
[ "$maxc" = 14336 ] || bad "A setuid: largest class '$maxc', expected 14336 (SYNCPOOL_MAX_SIZE=64 ignored)"
[ -s "$WORK/setuid.err" ] && bad "A setuid: stderr: $(head -c 300 "$WORK/setuid.err")"
rm -f "$D/out/stats.json"
go plain "${envA[@]}"
[ -s "$D/out/stats.json" ] || bad "A control: SYNCPOOL_STATS=json:PATH wrote nothing"
read -r rot maxc gets <<<"$(summary plain)"
[ "$rot" = 7 ] || bad "A control: rotate_ms '$rot', expected 7"
[ -n "$maxc" ] && [ "$maxc" -le 64 ] 2>/dev/null || bad "A control: largest class '$maxc', expected <= 64"

# B
envB=(SYNCPOOL_STATS=1 SYNCPOOL_DISABLE=1 SYNCPOOL_ROTATE_MS=$'\e[2J')
go setuid "${envB[@]}"
[ -s "$WORK/setuid.err" ] && bad "B setuid: stderr not empty: $(cat -v "$WORK/setuid.err" | head -c 300)"
read -r rot maxc gets <<<"$(summary setuid)"
[ "${gets:-0}" -gt 0 ] 2>/dev/null || bad "B setuid: no pooled mallocs ('$gets'): SYNCPOOL_DISABLE=1 was honoured"
go plain "${envB[@]}"
grep -q '^syncpool:.*SYNCPOOL_ROTATE_MS' "$WORK/plain.err" || bad "B control: no warning for SYNCPOOL_ROTATE_MS"
grep -q '^syncpool stats:' "$WORK/plain.err" || bad "B control: no table for SYNCPOOL_STATS=1"
read -r rot maxc gets <<<"$(summary plain)"
[ "$gets" = 0 ] || bad "B control: $gets pooled mallocs with SYNCPOOL_DISABLE=1"

[ $errs -eq 0 ] || { echo "secure_env: $errs failures" >&2; exit 1; }
echo "secure_env: OK (AT_SECURE=1 for the setuid copy)"
