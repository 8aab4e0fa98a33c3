/* large_reuse: a program that frees an 8 MiB block and allocates it again does not fault its
 * pages in again each time (docs/design.md, "Purging"; the lead over jemalloc alone, which
 * purges a large block freed in the current decay epoch at once).  Run with the default period.
 *
 * 50 times: malloc(8 MiB), write every page, free; after 2 such rounds (the first faults the
 * block in, and its 8 MiB start the rotation thread, which takes the purging over), the minor
 * faults of the 50 rounds (getrusage) must stay under a quarter of 50 x 2048 pages: a purge now
 * and then (every second, or once when the program has gone quiet) is allowed, one per round is
 * not.  Counts faults, not time. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <sys/resource.h>

#define BLOCK (8u << 20)
#define ROUNDS 50

static long minflt(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_minflt;
}

static void round_once(void)
{
    volatile char *p = malloc(BLOCK);
    REQUIRE(p != NULL, "malloc(8 MiB)");
    for (size_t i = 0; i < BLOCK; i += 4096) p[i] = (char)i;
    free((void *)p);
}

int main(void)
{
    REQUIRE(sp_under_syncpool(), "run with LD_PRELOAD=libsyncpool.so");
    round_once();
    round_once();
    long f0 = minflt();
    for (int i = 0; i < ROUNDS; i++) round_once();
    long faults = minflt() - f0;
    long pages = (long)ROUNDS * (BLOCK / 4096);
    printf("large_reuse: %ld minor faults in %d rounds of 8 MiB (%ld pages written)\n", faults,
           ROUNDS, pages);
    CHECK(faults < pages / 4, "%ld faults: the block is faulted in again on reuse", faults);
    return sp_report("large_reuse");
}
