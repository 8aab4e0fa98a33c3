#!/bin/bash
# real_gcc: gcc -O2 and g++ -O2 under the library produce byte-identical object files, and the
# programs built from them print the same as the ones built without the library.
# Inputs are generated: a C file of ~3000 lines (hundreds of functions, switch tables, structs,
# loops) and a C++ file with templates and STL containers.  Compiled without the library, with
# it, and with it and SYNCPOOL_ROTATE_MS=1.
. "$(dirname "$0")/common.sh" "$@"
cd "$WORK" || fail "cd"

awk 'BEGIN {
    print "#include <stdio.h>\n#include <string.h>\n#include <stdint.h>"
    print "struct rec { int a; long b; double c; char name[16]; };"
    N = 170
    for (i = 0; i < N; i++) {
        printf "static uint32_t f%d(uint32_t x, int n) {\n", i
        printf "    uint32_t acc = %du;\n", i * 2654435761 % 4294967296
        printf "    for (int k = 0; k < n; k++) {\n"
        printf "        switch ((x + k) %% 7) {\n"
        for (c = 0; c < 7; c++)
            printf "        case %d: acc = acc * %du + (x >> %d) + %d; break;\n", c, 31 + c * 2 + i % 5, c + 1, i + c
        printf "        }\n        x ^= acc << %d;\n    }\n", 1 + i % 13
        printf "    struct rec r = { %d, %dL, %d.5, \"f%d\" };\n", i, i * 1000, i, i
        printf "    acc += (uint32_t)(r.a + r.b + (long)r.c) + (uint32_t)strlen(r.name);\n"
        printf "    return acc;\n}\n"
    }
    print "typedef uint32_t (*fn)(uint32_t, int);"
    printf "static const fn table[%d] = {", N
    for (i = 0; i < N; i++) printf "%sf%d", (i ? ", " : ""), i
    print "};"
    print "int main(void) {"
    print "    uint32_t h = 2166136261u;"
    print "    for (int r = 0; r < 50; r++)"
    printf "        for (int i = 0; i < %d; i++) { h ^= table[i](h + (uint32_t)i, 3 + i %% 11); h *= 16777619u; }\n", N
    print "    printf(\"checksum %u\\n\", h);"
    print "    return 0;\n}"
}' >prog.c
lines=$(wc -l <prog.c)
[ "$lines" -ge 3000 ] || fail "generated C file has only $lines lines"

awk 'BEGIN {
    print "#include <map>\n#include <string>\n#include <vector>\n#include <algorithm>\n#include <cstdio>\n#include <memory>"
    print "template <int N> struct S { std::vector<std::string> v; std::map<std::string, int> m;"
    print "  S() { for (int i = 0; i < N; i++) { v.push_back(std::to_string(i * N)); m[v.back()] = i; } }"
    print "  long sum() const { long s = 0; for (auto &kv : m) s += kv.second * (long)kv.first.size(); return s; } };"
    for (i = 1; i <= 8; i++)
        printf "static long g%d() { S<%d> s; std::sort(s.v.begin(), s.v.end()); auto p = std::make_unique<S<%d>>(); return s.sum() + p->sum() + (long)s.v.front().size(); }\n", i, i * 3, i * 3 + 1
    print "int main() { long t = 0;"
    for (i = 1; i <= 8; i++) printf "  t += g%d();\n", i
    print "  std::printf(\"total %ld\\n\", t); return 0; }"
}' >prog.cc

build() { # RUN DIR [ENV...]
    local run=$1 dir=$2; shift 2
    mkdir -p "$dir"
    "$run" env "$@" gcc -O2 -frandom-seed=sp -c prog.c -o "$dir/prog.o" 2>"$dir/cc.err" \
        || fail "gcc -O2 -c prog.c failed ($run $*): $(head -c 1000 "$dir/cc.err")"
    "$run" env "$@" g++ -std=c++17 -O2 -frandom-seed=sp -c prog.cc -o "$dir/progxx.o" 2>"$dir/cxx.err" \
        || fail "g++ -O2 -c prog.cc failed ($run $*): $(head -c 1000 "$dir/cxx.err")"
    "$run" env "$@" gcc "$dir/prog.o" -o "$dir/prog" || fail "link prog ($run $*)"
    "$run" env "$@" g++ "$dir/progxx.o" -o "$dir/progxx" || fail "link progxx ($run $*)"
    without "$dir/prog" >"$dir/out.txt" || fail "the program compiled $run the library failed"
    without "$dir/progxx" >>"$dir/out.txt" || fail "the C++ program compiled $run the library failed"
}

build without ref
build with d1
build with d2 SYNCPOOL_ROTATE_MS=1
grep -q '^checksum [0-9]' ref/out.txt && grep -q '^total [0-9]' ref/out.txt \
    || fail "reference programs printed: $(cat ref/out.txt)"
for d in d1 d2; do
    same ref/prog.o "$d/prog.o" "gcc -O2 object file ($d)"
    same ref/progxx.o "$d/progxx.o" "g++ -O2 object file ($d)"
    same ref/out.txt "$d/out.txt" "output of the compiled programs ($d)"
    [ -s "$d/cc.err" ] && fail "gcc wrote to stderr under the library: $(head -c 500 "$d/cc.err")"
    [ -s "$d/cxx.err" ] && fail "g++ wrote to stderr under the library: $(head -c 500 "$d/cxx.err")"
done
# and the compiled program itself run under the library
with ref/prog >run_with.txt && with ref/progxx >>run_with.txt || fail "compiled programs fail under the library"
same ref/out.txt run_with.txt "compiled programs run under the library"
echo "real_gcc: OK ($lines-line C file and $(wc -l <prog.cc)-line C++ file; objects and outputs identical)"
