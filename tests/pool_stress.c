/* pool_stress: 8 threads, random malloc / calloc / realloc / posix_memalign / free and
 * cross-thread frees of every pooled size class plus large blocks, while the pools rotate
 * every millisecond (SYNCPOOL_ROTATE_MS=1) and one thread also calls syncpool_rotate_now().
 *
 * Every block carries a canary: a header {magic, owner, size, seq} and a payload pattern that
 * depends on seq, plus an 8-byte trailer; all of it is checked before every free and realloc.
 * A block handed out twice, written after free, or released to jemalloc while still cached
 * shows up as a corrupted canary.  Runs SP_STRESS_SECONDS (default 5) seconds; the seed is
 * printed and can be set with SP_SEED.  At the end: rotations > 0, the stats parse, and two
 * more rotations leave nothing cached. */
#define _GNU_SOURCE
#include "sp_stats.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

#define NTHREADS 8
#define NLIVE 512
#define NXCHG 256
#define MAGIC 0x5350504f4f4c2121ULL /* "SPPOOL!!" */

struct hdr {
    uint64_t magic;
    uint64_t owner;
    uint64_t size; /* total requested bytes, header and trailer included */
    uint64_t seq;
};
#define OVERHEAD (sizeof(struct hdr) + 8)

static atomic_int stop;
static _Atomic(struct hdr *) xchg[NXCHG];
static atomic_ulong total_ops, total_cross;
static uint64_t seed0;

static uint64_t trailer(uint64_t seq) { return sp_mix(seq ^ 0xabcdef); }

static void stamp(struct hdr *h, uint64_t owner, size_t size, uint64_t seq)
{
    h->magic = MAGIC;
    h->owner = owner;
    h->size = size;
    h->seq = seq;
    sp_fill(h + 1, size - OVERHEAD, seq);
    uint64_t t = trailer(seq);
    memcpy((char *)h + size - 8, &t, 8);
}

/* 0 if intact; reports otherwise */
static int verify(const struct hdr *h, const char *when)
{
    if (h->magic != MAGIC) {
        CHECK(0, "%s: block %p: header magic %#llx (overwritten or reused while live)", when,
              (const void *)h, (unsigned long long)h->magic);
        return -1;
    }
    size_t size = h->size;
    if (size < OVERHEAD || size > (1 << 20)) {
        CHECK(0, "%s: block %p: bad size %zu in header", when, (const void *)h, size);
        return -1;
    }
    long bad = sp_verify(h + 1, size - OVERHEAD, h->seq);
    uint64_t t;
    memcpy(&t, (const char *)h + size - 8, 8);
    if (bad >= 0 || t != trailer(h->seq)) {
        CHECK(0, "%s: block %p (%zu bytes, owner %llu, seq %llu): %s at byte %ld", when,
              (const void *)h, size, (unsigned long long)h->owner, (unsigned long long)h->seq,
              bad >= 0 ? "payload corrupted" : "trailer corrupted", bad >= 0 ? bad : (long)size - 8);
        return -1;
    }
    size_t us = malloc_usable_size((void *)h);
    if (us < size) {
        CHECK(0, "%s: block %p: usable size %zu < %zu", when, (const void *)h, us, size);
        return -1;
    }
    return 0;
}

static size_t pick_size(uint64_t r)
{
    unsigned k = (unsigned)(r % 100);
    if (k < 90) {
        /* a random pooled class, and a random size inside it */
        size_t ci = (size_t)((r >> 8) % SP_NCLASSES);
        size_t hi = sp_classes[ci], lo = ci ? sp_classes[ci - 1] + 1 : 1;
        size_t s = lo + (size_t)((r >> 16) % (hi - lo + 1));
        return s < OVERHEAD ? OVERHEAD : s;
    }
    if (k < 97)
        return 14337 + (size_t)((r >> 8) % 50000);
    return OVERHEAD + (size_t)((r >> 8) % 16); /* tiny */
}

static void *worker(void *arg)
{
    uint64_t id = (uint64_t)(intptr_t)arg;
    uint64_t rng = seed0 * 0x9E3779B97F4A7C15ULL + id + 1;
    struct hdr *live[NLIVE] = {0};
    uint64_t seq = id << 48;
    unsigned long ops = 0, cross = 0;
    double next_rotate = sp_now() + 0.01;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = sp_rand(&rng);
        int k = (int)((r >> 3) % NLIVE);
        unsigned op = (unsigned)(r % 16);
        ops++;
        if (live[k] && op < 6) {                 /* free own */
            verify(live[k], "before free");
            free(live[k]);
            live[k] = NULL;
        } else if (live[k] && op < 8) {          /* realloc */
            size_t ns = pick_size(sp_rand(&rng));
            size_t os = live[k]->size;
            uint64_t oseq = live[k]->seq;
            verify(live[k], "before realloc");
            struct hdr *h = realloc(live[k], ns);
            if (!h) {
                CHECK(0, "realloc(%zu -> %zu) failed", os, ns);
                continue;
            }
            size_t keep = (ns < os ? ns : os) - OVERHEAD;
            CHECK(h->magic == MAGIC && h->seq == oseq && sp_verify(h + 1, keep, oseq) < 0,
                  "realloc(%zu -> %zu) lost contents", os, ns);
            stamp(h, id, ns, ++seq);
            live[k] = h;
        } else if (live[k]) {                    /* hand over to another thread */
            struct hdr *old = atomic_exchange(&xchg[(r >> 20) % NXCHG], live[k]);
            live[k] = NULL;
            if (old) {
                verify(old, "before cross-thread free");
                free(old);
                cross++;
            }
        } else {                                 /* allocate */
            size_t n = pick_size(sp_rand(&rng));
            struct hdr *h;
            if (op < 3) {
                h = calloc(1, n);
                if (h) {
                    const unsigned char *b = (const unsigned char *)h;
                    for (size_t i = 0; i < n; i++)
                        if (b[i]) {
                            CHECK(0, "calloc(1, %zu) byte %zu is %#x", n, i, b[i]);
                            break;
                        }
                }
            } else if (op < 5) {
                void *p = NULL;
                size_t al = (size_t)16 << ((r >> 40) % 5); /* 16..256 */
                int rc = posix_memalign(&p, al, n);
                CHECK(rc == 0 && ((uintptr_t)p & (al - 1)) == 0, "posix_memalign(%zu, %zu): "
                      "rc %d, %p", al, n, rc, p);
                h = p;
            } else {
                h = malloc(n);
            }
            if (!h) {
                CHECK(0, "allocation of %zu bytes failed", n);
                continue;
            }
            stamp(h, id, n, ++seq);
            live[k] = h;
        }
        if (id == 0 && (ops & 1023) == 0 && sp_now() > next_rotate) {
            syncpool_rotate_now();              /* concurrent with the background rotation */
            next_rotate = sp_now() + 0.01;
        }
    }
    for (int k = 0; k < NLIVE; k++)
        if (live[k]) {
            verify(live[k], "final");
            free(live[k]);
        }
    atomic_fetch_add(&total_ops, ops);
    atomic_fetch_add(&total_cross, cross);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    seed0 = sp_seed(20240601);
    const char *secs_env = getenv("SP_STRESS_SECONDS");
    double secs = secs_env ? atof(secs_env) : 5.0;
    printf("pool_stress: libsyncpool.so %s; seed %llu (set SP_SEED to repeat); %d threads, "
           "%.1f s; SYNCPOOL_ROTATE_MS=%s\n", sp_under_syncpool() ? "loaded" : "NOT loaded",
           (unsigned long long)seed0, NTHREADS, secs,
           getenv("SYNCPOOL_ROTATE_MS") ? getenv("SYNCPOOL_ROTATE_MS") : "(unset)");
    unsigned long long rot0 = syncpool_rotations();
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        REQUIRE(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");
    double t0 = sp_now();
    while (sp_now() - t0 < secs && sp_failures() == 0)
        sp_sleep_ms(50);
    atomic_store(&stop, 1);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NXCHG; i++) {
        struct hdr *h = atomic_exchange(&xchg[i], NULL);
        if (h) {
            verify(h, "left in exchange");
            free(h);
        }
    }
    unsigned long long rots = syncpool_rotations() - rot0;
    printf("  %lu operations, %lu cross-thread frees, %llu rotations in %.2f s\n",
           (unsigned long)total_ops, (unsigned long)total_cross, rots, sp_now() - t0);
    CHECK(rots > 0, "no rotation happened during the run (SYNCPOOL_ROTATE_MS=1)");
    CHECK(total_cross > 1000, "only %lu cross-thread frees", (unsigned long)total_cross);

    /* all threads gone, nothing live: two rotations empty the pools */
    syncpool_rotate_now();
    syncpool_rotate_now();
    unsigned long long cached = syncpool_cached_bytes();

    struct sp_stats st;
    REQUIRE(sp_stats_read(&st) == 0, "stats");
    CHECK(st.rotations > 0, "stats JSON: rotations = %llu", st.rotations);
    CHECK(st.rotate_ms == 1, "stats JSON: rotate_ms = %llu, expected 1", st.rotate_ms);
    unsigned long long gets = SP_SUM_FIELD(&st, gets);
    unsigned long long hits = SP_SUM_FIELD(&st, hits_private) + SP_SUM_FIELD(&st, hits_shared) +
                              SP_SUM_FIELD(&st, steals) + SP_SUM_FIELD(&st, hits_victim);
    unsigned long long misses = SP_SUM_FIELD(&st, misses);
    unsigned long long steals = SP_SUM_FIELD(&st, steals);
    printf("  stats: gets %llu, hits %llu (steals %llu, victim %llu), misses %llu, released %llu;"
           " cached after 2 rotations: %llu bytes\n", gets, hits, steals,
           SP_SUM_FIELD(&st, hits_victim), misses, SP_SUM_FIELD(&st, released), cached);
    CHECK(hits + misses == gets, "stats: hits %llu + misses %llu != gets %llu", hits, misses,
          gets);
    CHECK(gets > 100000, "stats: only %llu gets counted", gets);
    CHECK(hits > 0 && steals > 0, "stats: hits %llu, steals %llu: expected both > 0", hits,
          steals);
    /* A background rotation may have run between the two rotate_now() calls and the read, and
     * main's own frees (none here) would land in the pools; with every thread joined nothing
     * can be cached. */
    CHECK(cached == 0, "cached_bytes = %llu after all threads exited and two rotations", cached);
    return sp_report("pool_stress");
}
