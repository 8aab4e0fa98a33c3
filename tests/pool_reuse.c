/* pool_reuse: the seed example's behaviour (shared/seeds), through malloc/free.
 * Must run with SYNCPOOL_ROTATE_MS=0 (no background rotation): the test drives rotation with
 * syncpool_rotate_now().
 *
 *   p = malloc(40); free(p); q = malloc(40)        -> q == p  (Put then Get: the private stack)
 *   the same for other classes
 *   p = malloc(40); free(p); rotate; q = malloc(40) -> q == p  (found in the victim)
 *   free(q); rotate; rotate                          -> nothing cached (syncpool_cached_bytes()
 *      == 0), the second rotation released >= 1 object, and the stats of class 48 (40 rounds
 *      up to 48) show released >= 1 and hits_victim >= 1; rotations == 3.
 *   after that, a Get on the empty pool is a miss (class 2560, which stdio does not use).
 *
 * Nothing between the steps may malloc or free in the classes under test: no printing until
 * the end (stdout is set up first). */
#define _GNU_SOURCE
#include "sp_stats.h"

#include <malloc.h>

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("pool_reuse: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");
    const char *rm = getenv("SYNCPOOL_ROTATE_MS");
    REQUIRE(rm && strcmp(rm, "0") == 0, "run with SYNCPOOL_ROTATE_MS=0 (got %s)", rm ? rm : "unset");
    REQUIRE(syncpool_rotations() == 0, "rotations = %llu at start with SYNCPOOL_ROTATE_MS=0",
            syncpool_rotations());

    /* The pools warm, their zone made: every object below comes from it (an object from before
     * the zone is freed to jemalloc, not pooled). */
    sp_warm_pools();

    /* 1. Put then Get, same thread, same class */
    static const size_t sizes[] = {40, 8, 100, 1000, 3000, 5000, 14000, 14336};
    void *got[8][2];
    for (int i = 0; i < 8; i++) {
        void *p = malloc(sizes[i]);
        memset(p, 0x55, sizes[i]);
        free(p);
        void *q = malloc(sizes[i]);
        got[i][0] = p;
        got[i][1] = q;
        free(q);
    }
    for (int i = 0; i < 8; i++)
        CHECK(got[i][1] == got[i][0], "malloc(%zu); free; malloc(%zu): got %p, expected the "
              "freed %p back", sizes[i], sizes[i], got[i][1], got[i][0]);

    /* 2. through the victim */
    void *p = malloc(40);
    free(p);
    unsigned long r1 = syncpool_rotate_now();
    void *q = malloc(40);
    CHECK(q == p, "malloc(40); free; rotate; malloc(40): got %p, expected %p from the victim",
          q, p);
    (void)r1;

    /* 3. two rotations with no Put in between: everything goes back to jemalloc */
    free(q);
    unsigned long r2 = syncpool_rotate_now();
    unsigned long r3 = syncpool_rotate_now();
    unsigned long long cached = syncpool_cached_bytes();
    unsigned long long rots = syncpool_rotations();
    CHECK(cached == 0, "syncpool_cached_bytes() = %llu after two rotations without Puts, "
          "expected 0", cached);
    CHECK(r3 >= 1, "the second rotation after free(q) released %lu objects, expected >= 1 "
          "(q at least); the first released %lu", r3, r2);
    CHECK(rots == 3, "syncpool_rotations() = %llu after 3 syncpool_rotate_now(), expected 3",
          rots);

    /* 4. the empty pool: the next Get is a miss (class 2560: nothing else here uses it) */
    struct sp_stats s0, s1;
    REQUIRE(sp_stats_read(&s0) == 0, "stats");
    void *z = malloc(2500);
    REQUIRE(sp_stats_read(&s1) == 0, "stats");
    const struct sp_class_stats *c0 = sp_stats_class(&s0, 2500), *c1 = sp_stats_class(&s1, 2500);
    REQUIRE(c0 && c1 && c0->size == 2560, "no class 2560 in the stats");
    CHECK(c1->misses - c0->misses == 1 && c1->gets - c0->gets == 1,
          "malloc(2500) on an empty pool: misses +%llu, gets +%llu (expected +1, +1)",
          c1->misses - c0->misses, c1->gets - c0->gets);
    free(z);

    /* 5. the stats of class 48 */
    const struct sp_class_stats *c48 = sp_stats_class(&s1, 40);
    REQUIRE(c48 != NULL, "no class for 40 bytes in the stats");
    CHECK(c48->size == 48, "40 bytes map to class %llu, expected 48", c48->size);
    CHECK(c48->released >= 1, "class 48: released = %llu, expected >= 1", c48->released);
    CHECK(c48->hits_victim >= 1, "class 48: hits_victim = %llu, expected >= 1",
          c48->hits_victim);
    CHECK(c48->hits_private >= 1, "class 48: hits_private = %llu, expected >= 1",
          c48->hits_private);
    CHECK(s1.rotate_ms == 0, "stats rotate_ms = %llu, expected 0", s1.rotate_ms);
    CHECK(s1.rotations == 3, "stats rotations = %llu, expected 3", s1.rotations);
    for (int i = 0; i < 8; i++) {
        const struct sp_class_stats *c = sp_stats_class(&s1, sizes[i]);
        CHECK(c && c->hits_private >= 1, "class of %zu bytes: hits_private = %llu, expected >= 1",
              sizes[i], c ? c->hits_private : 0);
    }
    printf("  rotations released %lu, %lu, %lu objects; class 48: gets %llu, hits_private %llu, "
           "hits_victim %llu, released %llu\n", r1, r2, r3, c48->gets, c48->hits_private,
           c48->hits_victim, c48->released);
    return sp_report("pool_reuse");
}
