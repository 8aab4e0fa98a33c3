/* secure_env: the program tests/real/secure_env.sh makes setuid.  In secure-execution mode ld.so
 * ignores an LD_PRELOAD path with a slash, so the script compiles this file at test time and
 * links it against a copy of libsyncpool.so, with an absolute RUNPATH, in a directory the
 * unprivileged owner can read.
 *
 * Prints "AT_SECURE=<getauxval(AT_SECURE)> ruid=<r> euid=<e>" on the first line (the script
 * checks that the kernel really set AT_SECURE), makes 20000 small mallocs and frees, then writes
 * syncpool_stats_json() (the configuration the library took from the environment: rotate_ms,
 * the classes) as the second line, and exits 0. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "syncpool.h"

int main(void)
{
    printf("AT_SECURE=%lu ruid=%ld euid=%ld\n", getauxval(AT_SECURE), (long)getuid(),
           (long)geteuid());
    void *keep[8] = {0};
    for (int i = 0; i < 20000; i++) {
        size_t n = 16 + (size_t)(i % 7) * 40;
        void *p = malloc(n);
        if (!p) return 1;
        memset(p, i, n);
        free(keep[i % 8]);
        keep[i % 8] = p;
    }
    for (int i = 0; i < 8; i++) free(keep[i]);
    if (syncpool_stats_json(stdout) != 0) return 1;
    return fflush(stdout) == 0 ? 0 : 1;
}
