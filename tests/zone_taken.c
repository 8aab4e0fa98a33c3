/* zone_taken: syncpool without its zone (docs/design.md, "The zone").
 *
 * The zone's arena is made on the first pool miss.  This program maps the start of the zone's
 * address range itself, first thing in main (before any allocation of its own), so that making
 * the arena fails.  Then, in rounds, it allocates 100 000 objects of pooled sizes (mostly
 * misses), stamps them and frees them all:
 *   - the mapping must still hold what this program wrote there (syncpool never maps over it);
 *   - no object may come from that range, every one must keep its stamp and have a usable size
 *     of at least its request;
 *   - the pools still serve, by jemalloc's usable size: then N malloc(100)/free pairs must each
 *     get the freed object back (the private stack), and the statistics must show it.
 * Run with SYNCPOOL_ROTATE_MS=0 so that no rotation empties the pools between rounds. */
#define _GNU_SOURCE
#include "sp_stats.h"

#include <malloc.h>
#include <sys/mman.h>

#define ZONE_BASE 0x200000000000ul
#define TAKEN (2ul << 20)
#define N 100000

static void *objs[N];

int main(void)
{
    unsigned char *z = mmap((void *)ZONE_BASE, TAKEN, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    REQUIRE(z == (void *)ZONE_BASE, "could not map the zone's start (%p): the zone already "
            "existed before main, and this test cannot run", (void *)z);
    memset(z, 0x3c, TAKEN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("zone_taken: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");

    int inside = 0, stamp_bad = 0, small = 0;
    for (int r = 0; r < 5; r++) {
        for (int i = 0; i < N; i++) {
            size_t n = 16 + (size_t)(i % 13) * 200;
            unsigned char *p = malloc(n);
            REQUIRE(p != NULL, "malloc(%zu) failed", n);
            inside += (uintptr_t)p - ZONE_BASE < TAKEN;
            small += malloc_usable_size(p) < n;
            memset(p, (unsigned char)(i + r), n);
            objs[i] = p;
        }
        for (int i = 0; i < N; i++) {
            size_t n = 16 + (size_t)(i % 13) * 200;
            unsigned char *p = objs[i];
            stamp_bad += p[0] != (unsigned char)(i + r) || p[n - 1] != (unsigned char)(i + r);
            free(p);
        }
    }
    CHECK(inside == 0, "%d objects inside the range this program mapped", inside);
    CHECK(small == 0, "%d objects with a usable size below their request", small);
    CHECK(stamp_bad == 0, "%d objects lost their stamp", stamp_bad);
    /* Same-size pairs: each free must go to the pool (by usable size) and come straight back. */
    int pair_moved = 0;
    void *first = malloc(100);
    free(first);
    for (int i = 0; i < N; i++) {
        void *p = malloc(100);
        pair_moved += p != first;
        free(p);
    }
    CHECK(pair_moved == 0, "malloc(100); free: %d of %d pairs did not get the freed object back",
          pair_moved, N);
    size_t bad = 0;
    for (size_t i = 0; i < TAKEN; i++)
        bad += z[i] != 0x3c;
    CHECK(bad == 0, "%zu bytes of this program's own mapping changed", bad);

    struct sp_stats st;
    if (sp_under_syncpool()) {
        REQUIRE(sp_stats_read(&st) == 0, "cannot read syncpool's statistics");
        unsigned long long gets = SP_SUM_FIELD(&st, gets), misses = SP_SUM_FIELD(&st, misses),
                           priv = SP_SUM_FIELD(&st, hits_private);
        CHECK(priv >= N, "pools without the zone: only %llu private hits", priv);
        printf("zone_taken: %llu gets, %llu misses, %llu private hits without the zone\n", gets,
               misses, priv);
    }
    return sp_report("zone_taken");
}
