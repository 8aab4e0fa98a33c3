# Shared by the real-program tests (sourced).  Usage in a script:  . "$(dirname "$0")/common.sh" "$@"
#
# $1 (or, failing that, $LD_PRELOAD as set by CTest) is the library.  Provides:
#   without CMD...   run CMD with no preload at all (env -u LD_PRELOAD)
#   with CMD...      run CMD with the library preloaded (and SYNCPOOL_* as in the environment)
#   fail MSG         print "FAIL: MSG" on stderr and exit 1
#   same A B WHAT    fail unless files A and B are byte-identical (shows a diff excerpt)
#   $WORK            a fresh temporary directory (on /dev/shm if possible), removed on exit
#   $PYTHON          the system python3 (/usr/bin/python3 if present: a wrapper such as a pyenv
#                    shim would run several processes, each printing its own warnings)
set -u
SP_LIB=${1:-${LD_PRELOAD:-}}
if [ -z "$SP_LIB" ] || [ ! -f "$SP_LIB" ]; then
    echo "FAIL: library not found: '${SP_LIB}' (pass it as \$1)" >&2
    exit 1
fi
without() { env -u LD_PRELOAD "$@"; }
with() { env LD_PRELOAD="$SP_LIB" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
same() {
    if ! cmp -s "$1" "$2"; then
        echo "FAIL: $3: output with the library differs from the output without it" >&2
        echo "  without: $1 ($(wc -c <"$1") bytes)   with: $2 ($(wc -c <"$2") bytes)" >&2
        diff "$1" "$2" 2>/dev/null | head -20 >&2 || cmp "$1" "$2" >&2
        exit 1
    fi
}
# tmpfs if there is one: creating thousands of small files (git) is much slower on disk
WORK=$(mktemp -d /dev/shm/sp_real.XXXXXX 2>/dev/null || mktemp -d "${TMPDIR:-/tmp}/sp_real.XXXXXX") \
    || fail "mktemp"
trap 'rm -rf "$WORK"' EXIT
export LC_ALL=C
if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=$(command -v python3) || fail "no python3"; fi
