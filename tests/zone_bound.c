/* zone_bound: what a thread bound to the zone allocates outside the pools (docs/design.md,
 * "The zone").
 *
 * A thread with a P binds its jemalloc arena and thread cache to the zone on its first miss, so
 * that its misses and the objects its pools refuse take jemalloc's fast paths.  Everything else
 * such a thread asks the backend for must come from its previous arena (the page map has no class
 * for a large object), and any zone object that its cache hands out on another path must be
 * marked like a miss.  Run with a small SYNCPOOL_CACHE_BYTES, so that most frees are refused
 * and go through the thread's jemalloc cache, and SYNCPOOL_ROTATE_MS=0 (rotations are driven
 * here).  In the main thread, in 3 worker threads, and in a pthread-key destructor of each
 * worker (which runs after the thread has left the pools, still bound):
 *   - pooled sizes: rounds of many allocations of one class, freed, then of another class, so
 *     that pages change class;
 *   - every other path: large malloc, calloc and realloc growth, the aligned family with classes
 *     that are not pooled, calloc(0) (checked to fail when large requests of a bound thread are
 *     not sent to its previous arena);
 * and for every object: malloc_usable_size() (syncpool's: the page map's class inside the zone)
 * must equal jemalloc's own sallocx(), and no object of more than the largest pooled class may
 * lie in the zone. */
#define _GNU_SOURCE
#include "sp_test.h"
#include "syncpool.h"

#include <malloc.h>
#include <pthread.h>

#define ZONE_BASE 0x200000000000ul
#define ZONE_SIZE (1ul << 40)
#define MAX_POOLED 14336
#define N 20000

static size_t (*je_sallocx)(const void *, int);
static pthread_key_t key;

static int in_zone(const void *p)
{
    return (uintptr_t)p - ZONE_BASE < ZONE_SIZE;
}

static void check_obj(void *p, size_t n, const char *what)
{
    CHECK(p != NULL, "%s(%zu) failed", what, n);
    if (!p) return;
    size_t u = malloc_usable_size(p), truth = je_sallocx(p, 0);
    CHECK(u == truth && u >= n, "%s(%zu) = %p: malloc_usable_size %zu, jemalloc's size %zu", what,
          n, p, u, truth);
    CHECK(!(in_zone(p) && truth > MAX_POOLED), "%s(%zu) = %p: %zu bytes in the zone", what, n, p,
          truth);
}

/* Pooled sizes: N objects of size a, checked, freed; then of size b (pages of a's reused). */
static void pooled_rounds(size_t a, size_t b)
{
    static __thread void *objs[N];
    size_t sizes[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < N; i++) {
            objs[i] = malloc(sizes[k]);
            if (i % 97 == 0) check_obj(objs[i], sizes[k], "malloc");
        }
        for (int i = 0; i < N; i++)
            free(objs[i]);
    }
}

/* Every path that does not go through the pools. */
static void other_paths(void)
{
    static const size_t large[] = {MAX_POOLED + 1, 16384, 20000, 32768, 40000, 100000, 1u << 20};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        void *p = malloc(large[i]);
        check_obj(p, large[i], "malloc");
        void *q = calloc(1, large[i]);
        check_obj(q, large[i], "calloc");
        free(p);
        free(q);
    }
    void *r = malloc(MAX_POOLED + 100);
    for (size_t n = MAX_POOLED + 100; n < (2u << 20); n += n / 2) {
        r = realloc(r, n);
        check_obj(r, n, "realloc");
    }
    free(r);
    static const size_t align[] = {32, 64, 4096, 8192};
    for (size_t i = 0; i < sizeof align / sizeof align[0]; i++) {
        void *p = memalign(align[i], 20000);
        check_obj(p, 20000, "memalign");
        free(p);
        p = NULL;
        CHECK(posix_memalign(&p, align[i], 30000) == 0, "posix_memalign(%zu, 30000)", align[i]);
        check_obj(p, 30000, "posix_memalign");
        free(p);
        p = aligned_alloc(align[i], 16384);
        check_obj(p, 16384, "aligned_alloc");
        free(p);
    }
    void *v = valloc(20000);
    check_obj(v, 20000, "valloc");
    free(v);
    void *z[64];
    for (int i = 0; i < 64; i++) {
        z[i] = calloc(i & 1, 0);
        check_obj(z[i], 0, "calloc(0)");
    }
    for (int i = 0; i < 64; i++)
        free(z[i]);
}

static void at_exit_of_thread(void *arg)
{
    (void)arg;
    /* After syncpool's own exit hook: the thread no longer uses the pools, so calloc(0) goes to
     * the backend (jemalloc's 8-byte class) and malloc(8) to the zone without a pool.  Whether
     * the thread's jemalloc cache is still the zone's here depends on whether jemalloc's own
     * thread-exit clean-up ran first; either way every object must have its true size. */
    static __thread void *pair[N][2];
    for (int i = 0; i < N; i++) {
        pair[i][0] = malloc(8);
        pair[i][1] = calloc(1, 0);
        check_obj(pair[i][1], 0, "calloc(0) at thread exit");
    }
    for (int i = 0; i < N; i++) {
        free(pair[i][0]);
        free(pair[i][1]);
    }
    other_paths();
    void *p[256];
    for (int i = 0; i < 256; i++) {
        p[i] = malloc(8 + (size_t)i * 40);
        check_obj(p[i], 8 + (size_t)i * 40, "malloc at thread exit");
    }
    for (int i = 0; i < 256; i++)
        free(p[i]);
}

static void *worker(void *arg)
{
    pthread_setspecific(key, arg);
    pooled_rounds(48, 80);
    other_paths();
    pooled_rounds(1280, 96);
    other_paths();
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    je_sallocx = (size_t (*)(const void *, int))dlsym(RTLD_DEFAULT, "sallocx");
    REQUIRE(je_sallocx != NULL, "jemalloc's sallocx not found: run under libsyncpool.so");
    REQUIRE(pthread_key_create(&key, at_exit_of_thread) == 0, "pthread_key_create");
    pooled_rounds(100, 3072);              /* the main thread's first misses bind it */
    other_paths();
    syncpool_rotate_now();
    syncpool_rotate_now();
    for (int round = 0; round < 3; round++) {
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, worker, (void *)1) == 0, "pthread_create");
        pthread_join(t, NULL);
        syncpool_rotate_now();
        syncpool_rotate_now();
        pooled_rounds(640, 1024);
    }
    other_paths();
    return sp_report("zone_bound");
}
