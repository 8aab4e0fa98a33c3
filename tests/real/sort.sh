#!/bin/bash
# real_sort: GNU sort under the library gives byte-identical output.
# Input: 200k generated lines (~6 MB: number, word, decimal, padding).  Variants: default,
# -n, -u, -k2,2 -s, -g -r, -t/-k multi-key, --parallel=2 with a 1 MiB buffer (temporary files
# and a multi-threaded merge).  Each is run without the library, with it, and (for some) with
# SYNCPOOL_ROTATE_MS=1; outputs are compared with cmp.
. "$(dirname "$0")/common.sh" "$@"
cd "$WORK" || fail "cd"

awk 'BEGIN {
    x = 12345
    for (i = 0; i < 200000; i++) {
        x = (x * 1103515245 + 12345) % 2147483648
        w = ""
        for (k = 0; k < 3 + x % 9; k++) w = w sprintf("%c", 97 + int(x / (k + 1)) % 26)
        printf "%d %s %d.%03d %s\n", x % 1000003, w, x % 977, x % 1000, substr("................................", 1, x % 17)
    }
}' >input.txt
size=$(wc -c <input.txt)
[ "$size" -gt 4000000 ] || fail "generated input is only $size bytes"

variants=("" "-n" "-u" "-k2,2 -s" "-g -r -k3,3" "-t. -k2,2n -k1,1" "--parallel=2 -S 1M" "-n -u --parallel=2 -S 2M")
i=0
for opts in "${variants[@]}"; do
    i=$((i + 1))
    without sort $opts input.txt >"ref$i.txt" 2>"ref$i.err" || fail "sort $opts without the library failed: $(cat "ref$i.err")"
    [ -s "ref$i.txt" ] || fail "sort $opts produced nothing"
    with sort $opts input.txt >"with$i.txt" 2>"with$i.err" || fail "sort $opts under the library failed (status $?): $(head -c 500 "with$i.err")"
    same "ref$i.txt" "with$i.txt" "sort $opts"
    [ -s "with$i.err" ] && fail "sort $opts wrote to stderr under the library: $(head -c 500 "with$i.err")"
    if [ $((i % 2)) -eq 1 ]; then
        SYNCPOOL_ROTATE_MS=1 with sort $opts input.txt >"rot$i.txt" || fail "sort $opts (SYNCPOOL_ROTATE_MS=1) failed"
        same "ref$i.txt" "rot$i.txt" "sort $opts (SYNCPOOL_ROTATE_MS=1)"
    fi
done
# sanity of the reference itself
[ "$(wc -l <ref1.txt)" -eq 200000 ] || fail "sort lost lines"
[ "$(wc -l <ref3.txt)" -lt 200000 ] || fail "sort -u removed nothing: the input has no duplicates?"
echo "real_sort: OK ($size-byte input, ${#variants[@]} variants identical)"
