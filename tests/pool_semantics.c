/* pool_semantics: Go's TestPool / TestPoolRelease (research.md 1.4), through malloc/free.
 * Must run with SYNCPOOL_ROTATE_MS=0; rotation is driven by syncpool_rotate_now().
 *
 * The classes under test (5120, 640 and 224) are ones that nothing else in this program uses
 * (reading the stats touches stdio's classes only), so the order of Gets is exact.  Class 5120
 * keeps one private object, as Go does; class 224 a private stack of 36 (pool.h, struct sp_priv):
 *   - Put a, Put b -> Get a (private), Get b (shared head), Get: a miss (empty pool).
 *   - Put a, b, c  -> Get a (private), c, b (the owner pops its shared chain LIFO).
 *   - Class 224, Put o0 .. o37 -> Get o37 .. o0, newest first, with hits_private +36 and
 *     hits_shared +2: Put o36 finds the stack full and moves all of it (o0 .. o35) to the shared
 *     head, Gets take o37, o36 from the stack, then the empty stack takes o18 .. o35 back at once
 *     and hands out o35 (a shared hit), then o34 .. o18 from the stack, then o0 .. o17 the same
 *     way.
 *   - The per-P cap through free(): 51 + 70 frees of 5120 B -> 51 cached (256 KiB), 70
 *     released; 52 mallocs after it -> one miss.  For class 224 (1170 + 70), past the cap each
 *     full private stack sends its oldest half back: between cap - 17 and cap stay cached, the
 *     rest is released, and as many mallocs as stay cached, then one miss.
 *   - Put 100 (they spill into the shared chain), rotate once -> 100 Gets return exactly those
 *     100 objects (from the victim: hits_victim >= 99, no misses), the 101st is a miss.
 *   - Put 101, rotate twice -> nothing cached, released grew by >= 101, the next Get misses.
 *   - Drain (TestPoolRelease with drain): Put 100, Get them all back, rotate twice -> nothing
 *     was released from that class (the pool kept no reference to the objects it handed out)
 *     and the objects are intact. */
#define _GNU_SOURCE
#include "sp_stats.h"

#include <malloc.h>

#define SZ_A 5000 /* class 5120 */
#define SZ_B 600  /* class 640 */
#define SZ_C 200  /* class 224 */
#define PRIV_C 36 /* private objects of class 224: 8192 / 224 (pool.h, SP_PRIV_BYTES) */

/* delta of one class's counter between two snapshots */
#define D(a, b, size, field)                                                               \
    (sp_stats_class(&(b), size)->field - sp_stats_class(&(a), size)->field)

static void clean(const char *when)
{
    syncpool_rotate_now();
    syncpool_rotate_now();
    unsigned long long c = syncpool_cached_bytes();
    CHECK(c == 0, "%s: cached_bytes = %llu after two rotations, expected 0", when, c);
}

/* cap + 70 Puts of one class -> all taken; past the cap each full private stack sends its
 * oldest batch (b objects, 1 for a single private slot) back: between cap - b + 1 and cap stay
 * cached, the rest is released (in whole batches), then as many Gets from the pool and a miss. */
static void cap_test(size_t size, unsigned class_size)
{
    enum { EXTRA = 70, MAXCAP = 262144 / 224 };
    const int cap = 262144 / (int)class_size;
    const int priv = 8192 / (int)class_size > 127 ? 127 : 8192 / (int)class_size;
    const int b = priv > 1 ? (priv + 1) / 2 : 1;
    static void *big[MAXCAP + EXTRA];
    static struct sp_stats s0, s1, s2;
    REQUIRE(cap <= MAXCAP, "cap test: class %u too small", class_size);
    clean("before the cap test");
    for (int i = 0; i < cap + EXTRA; i++)
        REQUIRE((big[i] = malloc(size)) != NULL, "malloc");
    /* Nothing of the class is cached after clean(), and a miss takes one object. */
    REQUIRE(sp_stats_read(&s0) == 0, "stats");
    unsigned long long left = sp_stats_class(&s0, size)->cached_bytes / class_size;
    for (int i = 0; i < cap + EXTRA; i++)
        free(big[i]);
    REQUIRE(sp_stats_read(&s1) == 0, "stats");
    unsigned long long rel = D(s0, s1, size, released),
                       kept = sp_stats_class(&s1, size)->cached_bytes / class_size;
    CHECK(D(s0, s1, size, puts) == (unsigned long long)(cap + EXTRA) && rel % b == 0 &&
              left == 0 && kept + rel == (unsigned long long)(cap + EXTRA) &&
              kept <= (unsigned long long)cap && kept + b > (unsigned long long)cap,
          "cap: %d frees of %u B (%llu cached before) -> puts +%llu released +%llu cached %llu "
          "objects, expected +%d, whole batches of %d, and %d - %d .. %d cached", cap + EXTRA,
          class_size, left, D(s0, s1, size, puts), rel, kept, cap + EXTRA, b, cap, b - 1, cap);
    for (unsigned long long i = 0; i < kept + 1; i++)
        big[i] = malloc(size);
    REQUIRE(sp_stats_read(&s2) == 0, "stats");
    CHECK(D(s1, s2, size, gets) == kept + 1 && D(s1, s2, size, misses) == 1,
          "cap: %llu Gets of %u B after it -> gets +%llu misses +%llu, expected +%llu and +1",
          kept + 1, class_size, D(s1, s2, size, gets), D(s1, s2, size, misses), kept + 1);
    for (unsigned long long i = 0; i < kept + 1; i++)
        free(big[i]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("pool_semantics: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");
    const char *rm = getenv("SYNCPOOL_ROTATE_MS");
    REQUIRE(rm && strcmp(rm, "0") == 0, "run with SYNCPOOL_ROTATE_MS=0 (got %s)", rm ? rm : "unset");
    static struct sp_stats s0, s1, s2, s3;
    REQUIRE(sp_stats_read(&s0) == 0, "stats");
    REQUIRE(sp_stats_class(&s0, SZ_A) && sp_stats_class(&s0, SZ_A)->size == 5120 &&
                sp_stats_class(&s0, SZ_B) && sp_stats_class(&s0, SZ_B)->size == 640 &&
                sp_stats_class(&s0, SZ_C) && sp_stats_class(&s0, SZ_C)->size == 224,
            "classes 5120, 640 and 224 are not in the stats");

    /* ---- Put a, Put b -> a, b, miss ---- */
    clean("start");
    void *a = malloc(SZ_A), *b = malloc(SZ_A);
    REQUIRE(a && b && a != b, "malloc");
    free(a);
    free(b);
    void *x = malloc(SZ_A);
    void *y = malloc(SZ_A);
    CHECK(x == a, "Put a, Put b: first Get returned %p, expected a = %p (private)", x, a);
    CHECK(y == b, "Put a, Put b: second Get returned %p, expected b = %p (shared head)", y, b);
    REQUIRE(sp_stats_read(&s0) == 0, "stats");
    void *z = malloc(SZ_A);
    REQUIRE(sp_stats_read(&s1) == 0, "stats");
    CHECK(D(s0, s1, SZ_A, misses) == 1 && D(s0, s1, SZ_A, gets) == 1,
          "third Get: misses +%llu gets +%llu, expected a miss (empty pool)",
          D(s0, s1, SZ_A, misses), D(s0, s1, SZ_A, gets));

    /* ---- Put a, b, c -> a, c, b ---- */
    void *c = z;
    a = x;
    b = y;
    free(a);
    free(b);
    free(c);
    void *g1 = malloc(SZ_A), *g2 = malloc(SZ_A), *g3 = malloc(SZ_A);
    CHECK(g1 == a && g2 == c && g3 == b, "Put a, b, c: Gets returned %p %p %p, expected a=%p "
          "c=%p b=%p (private, then shared LIFO)", g1, g2, g3, a, c, b);
    free(g1);
    free(g2);
    free(g3);

    /* ---- class 224: a private stack of 36, then the shared head ---- */
    clean("before the private-stack test");
    static void *o[PRIV_C + 2];
    for (int i = 0; i < PRIV_C + 2; i++)
        REQUIRE((o[i] = malloc(SZ_C)) != NULL, "malloc");
    for (int i = 0; i < PRIV_C + 2; i++)
        free(o[i]);
    REQUIRE(sp_stats_read(&s0) == 0, "stats");
    int order_bad = 0;
    for (int i = 0; i < PRIV_C + 2; i++) {
        int w = PRIV_C + 1 - i;
        void *g = malloc(SZ_C);
        if (g != o[w] && order_bad++ < 3)
            CHECK(0, "class 224, Put o0..o37: Get %d returned %p, expected o%d = %p", i, g, w, o[w]);
        o[w] = g;
    }
    CHECK(order_bad == 0, "class 224: %d of %d Gets out of newest-first order", order_bad,
          PRIV_C + 2);
    REQUIRE(sp_stats_read(&s1) == 0, "stats");
    CHECK(D(s0, s1, SZ_C, hits_private) == PRIV_C && D(s0, s1, SZ_C, hits_shared) == 2,
          "class 224: hits_private +%llu hits_shared +%llu, expected +%d and +2",
          D(s0, s1, SZ_C, hits_private), D(s0, s1, SZ_C, hits_shared), PRIV_C);
    for (int i = 0; i < PRIV_C + 2; i++)
        free(o[i]);

    /* ---- the per-P cap through free(), for class 5120 (Go's one private slot) and class 224 (a
     * private stack that spills whole, so the last spill before the cap is cut short, and
     * flushes its oldest half past the cap) ---- */
    {
        const char *cb = getenv("SYNCPOOL_CACHE_BYTES");
        REQUIRE(!cb, "run without SYNCPOOL_CACHE_BYTES (the cap below is the default's)");
        cap_test(SZ_A, 5120);
        cap_test(SZ_C, 224);
    }

    /* ---- 100 Puts, one rotation: all found in the victim ---- */
    enum { N = 100 };
    static void *obj[N + 1], *back[N + 64];
    clean("before the 100-object test");
    for (int i = 0; i < N; i++) {
        obj[i] = malloc(SZ_B);
        REQUIRE(obj[i] != NULL, "malloc");
    }
    for (int i = 0; i < N; i++)
        free(obj[i]);
    REQUIRE(sp_stats_read(&s0) == 0, "stats");
    unsigned long long held = sp_stats_class(&s0, SZ_B)->cached_bytes / 640, L = held - N;
    REQUIRE(held == N, "class 640 holds %llu objects after 100 Puts, want 100", held);
    unsigned long rel1 = syncpool_rotate_now();
    for (unsigned i = 0; i < held; i++)
        back[i] = malloc(SZ_B);
    REQUIRE(sp_stats_read(&s1) == 0, "stats");
    int foreign = 0, dup = 0, mine = 0;
    for (unsigned i = 0; i < held; i++) {
        int found = 0;
        for (int j = 0; j < N; j++)
            found |= back[i] == obj[j];
        for (unsigned j = 0; j < i; j++)
            dup |= back[i] == back[j];
        mine += found;
        foreign += !found;
    }
    CHECK(mine == N && foreign == (int)L, "%d of the %llu Gets after one rotation were the 100 "
          "freed objects, %d others (want 100 and the %llu the pool held besides)", mine, held,
          foreign, L);
    CHECK(!dup, "the same object was returned twice");
    CHECK(D(s0, s1, SZ_B, hits_victim) >= held - 1, "hits_victim +%llu for %llu Gets after one "
          "rotation, expected >= %llu", D(s0, s1, SZ_B, hits_victim), held, held - 1);
    CHECK(D(s0, s1, SZ_B, misses) == 0, "%llu misses among the %llu Gets after one rotation",
          D(s0, s1, SZ_B, misses), held);
    back[held] = malloc(SZ_B);
    REQUIRE(sp_stats_read(&s2) == 0, "stats");
    CHECK(D(s1, s2, SZ_B, misses) == 1, "the Get after them (victim drained): misses +%llu, "
          "expected 1", D(s1, s2, SZ_B, misses));
    (void)rel1;

    /* ---- 101 or more Puts, two rotations: all released, then a miss ---- */
    for (unsigned i = 0; i <= held; i++)
        free(back[i]);
    REQUIRE(sp_stats_read(&s2) == 0, "stats");
    unsigned long ra = syncpool_rotate_now();
    unsigned long rb = syncpool_rotate_now();
    unsigned long long cached = syncpool_cached_bytes();
    CHECK(cached == 0, "cached_bytes = %llu after Put 101 + two rotations, expected 0", cached);
    CHECK(rb >= N + 1, "second rotation released %lu objects, expected >= 101", rb);
    REQUIRE(sp_stats_read(&s3) == 0, "stats");
    CHECK(D(s2, s3, SZ_B, released) >= N + 1, "class 640: released +%llu, expected >= 101",
          D(s2, s3, SZ_B, released));
    CHECK(sp_stats_class(&s3, SZ_B)->cached_bytes == 0, "class 640: cached_bytes = %llu",
          sp_stats_class(&s3, SZ_B)->cached_bytes);
    z = malloc(SZ_B);
    REQUIRE(sp_stats_read(&s1) == 0, "stats");
    CHECK(D(s3, s1, SZ_B, misses) == 1, "Get after two rotations: misses +%llu, expected 1",
          D(s3, s1, SZ_B, misses));
    free(z);

    /* ---- drain: nothing stale is released ---- */
    clean("before the drain test");
    for (int i = 0; i < N; i++)
        obj[i] = malloc(SZ_B);
    for (int i = 0; i < N; i++)
        free(obj[i]);
    for (int i = 0; i < N; i++) {
        back[i] = malloc(SZ_B);
        sp_fill(back[i], SZ_B, (uint64_t)i + 1);
    }
    REQUIRE(sp_stats_read(&s0) == 0, "stats");
    syncpool_rotate_now();
    syncpool_rotate_now();
    REQUIRE(sp_stats_read(&s1) == 0, "stats");
    CHECK(D(s0, s1, SZ_B, released) == 0, "rotations released %llu objects of class 640 while "
          "all of them were in use (stale references in the pool)", D(s0, s1, SZ_B, released));
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += sp_verify(back[i], SZ_B, (uint64_t)i + 1) >= 0;
    CHECK(bad == 0, "%d drained objects were overwritten after the rotations", bad);
    /* and they are ordinary blocks: realloc and free work */
    for (int i = 0; i < N; i++) {
        void *r = realloc(back[i], SZ_B * 3);
        CHECK(r && sp_verify(r, SZ_B, (uint64_t)i + 1) < 0, "realloc of drained object %d", i);
        free(r);
    }
    printf("  rotations released: %lu then %lu objects\n", ra, rb);
    return sp_report("pool_semantics");
}
