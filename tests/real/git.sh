#!/bin/bash
# real_git: git on a generated repository gives identical results with and without the library.
# The same scenario runs three times (without the library; with it; with it and
# SYNCPOOL_ROTATE_MS=1): init, ~30 commits adding/modifying a few hundred generated files,
# a branch and a --no-ff merge, a rename, then log --stat, log --graph, ls-tree, diff, blame,
# show, gc (multi-threaded pack), fsck --full, rev-list --objects.  Authors, committers and
# dates are fixed, so every commit hash must come out identical.
. "$(dirname "$0")/common.sh" "$@"

export GIT_AUTHOR_NAME="Test Author" GIT_AUTHOR_EMAIL="author@example.com"
export GIT_COMMITTER_NAME="Test Committer" GIT_COMMITTER_EMAIL="committer@example.com"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME="$WORK" TZ=UTC
unset GIT_DIR GIT_WORK_TREE

# gen RUN COMMIT [RANGE PARITY]: writes files for commit COMMIT: 12 new files, and appends to 6
# existing ones (numbers below RANGE, of the given parity: the two branches touch disjoint files)
gen() {
    "$1" awk -v c="$2" -v range="${3:-0}" -v par="${4:--1}" 'BEGIN {
        for (k = 0; k < 12; k++) {
            n = c * 12 + k; dir = "src/d" (n % 9); f = dir "/file" n ".c"
            print "/* file " n " created in commit " c " */" > f
            for (l = 0; l < 20 + (n * 7) % 60; l++)
                printf "int f%d_%d(int x) { return x * %d + %d; }\n", n, l, (n * l) % 97, l > f
            close(f)
        }
        for (k = 0; k < 6 && c > 1; k++) {
            r = range ? range : (c - 1) * 12
            n = (c * 37 + k * 101) % r
            if (par >= 0 && n % 2 != par) n = (n + 1) % r
            dir = "src/d" (n % 9); f = dir "/file" n ".c"
            printf "/* touched in commit %d */\nint g%d_%d;\n", c, n, c >> f
            close(f)
        }
    }'
}

commit() { # RUN N MSG
    GIT_AUTHOR_DATE="@$((1700000000 + $2 * 3600)) +0000" GIT_COMMITTER_DATE="@$((1700000000 + $2 * 3600 + 60)) +0000" \
        "$1" git commit -q -m "$3" || fail "git commit $2 failed ($1)"
}

scenario() { # RUN DIR
    local run=$1 dir=$2 c
    mkdir -p "$dir/repo" && cd "$dir/repo" || fail "mkdir"
    "$run" git init -q -b main . || fail "git init ($run)"
    mkdir -p src/d0 src/d1 src/d2 src/d3 src/d4 src/d5 src/d6 src/d7 src/d8
    "$run" git config gc.auto 0
    "$run" git config pack.threads 2
    for c in $(seq 1 14); do
        gen "$run" "$c"; "$run" git add -A || fail "git add"; commit "$run" "$c" "commit $c on main"
    done
    "$run" git checkout -q -b feature || fail "checkout -b"
    for c in $(seq 15 21); do
        gen "$run" "$c" 0 1; "$run" git add -A; commit "$run" "$c" "commit $c on feature"
    done
    "$run" git checkout -q main || fail "checkout main"
    for c in $(seq 22 26); do
        gen "$run" "$c" 168 0; "$run" git add -A; commit "$run" "$c" "commit $c on main"
    done
    GIT_AUTHOR_DATE="@1700200000 +0000" GIT_COMMITTER_DATE="@1700200000 +0000" \
        "$run" git merge -q --no-ff -m "merge feature" feature || fail "git merge ($run)"
    "$run" git mv src/d0/file0.c src/renamed.c && commit "$run" 27 "rename"
    for c in $(seq 28 31); do
        gen "$run" "$c"; "$run" git add -A; commit "$run" "$c" "commit $c on main"
    done
    {
        "$run" git log --stat --format=fuller
        "$run" git log --graph --oneline --all
        "$run" git rev-parse HEAD main feature HEAD~5 HEAD~5^2
        "$run" git ls-tree -r HEAD
        "$run" git diff --stat HEAD~12 HEAD
        "$run" git diff HEAD~3 HEAD
        "$run" git blame -s src/d3/file3.c
        "$run" git show --stat HEAD~1
        "$run" git log -p --follow src/renamed.c
        "$run" git shortlog -sn --all
    } >"$dir/out.txt" 2>"$dir/err.txt" || fail "git inspection commands failed ($run): $(head -c 1000 "$dir/err.txt")"
    "$run" git gc -q >"$dir/gc.txt" 2>&1 || fail "git gc failed ($run): $(head -c 1000 "$dir/gc.txt")"
    {
        "$run" git fsck --full --strict 2>&1
        "$run" git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
        "$run" git rev-list --objects --all | sort
        "$run" git log --stat --format=fuller
    } >"$dir/after_gc.txt" || fail "git fsck / rev-list after gc failed ($run)"
    cd "$WORK"
}

scenario without "$WORK/a"
scenario with "$WORK/b"
SYNCPOOL_ROTATE_MS=1 scenario with "$WORK/c"

nfiles=$(git -C "$WORK/a/repo" ls-files | wc -l)
[ "$nfiles" -ge 300 ] || fail "the generated repository has only $nfiles files"
grep -q "merge feature" "$WORK/a/out.txt" || fail "reference run has no merge commit"
[ -s "$WORK/a/err.txt" ] && fail "git wrote to stderr without the library: $(head -c 1000 "$WORK/a/err.txt")"
for d in b c; do
    cfg=$([ $d = b ] && echo "default settings" || echo "SYNCPOOL_ROTATE_MS=1")
    same "$WORK/a/out.txt" "$WORK/$d/out.txt" "git log/diff/blame ($cfg)"
    same "$WORK/a/after_gc.txt" "$WORK/$d/after_gc.txt" "git gc + fsck + rev-list ($cfg)"
    [ -s "$WORK/$d/err.txt" ] && fail "git wrote to stderr under the library ($cfg): $(head -c 1000 "$WORK/$d/err.txt")"
done
echo "real_git: OK ($nfiles files, $(git -C "$WORK/a/repo" rev-list --all | wc -l) commits, outputs identical)"
