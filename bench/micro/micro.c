/* micro.c — microbenchmarks of the allocator fast paths (not timed tests).
 *
 *   microbench pairs   N SIZE      N times: p = malloc(SIZE); write a byte; free(p)
 *   microbench batch   N K SIZE    N/K times: K mallocs, then K frees (LIFO order)
 *   microbench fifo    N K SIZE    N/K times: K mallocs, then K frees in allocation order
 *   microbench prodcons N SIZE     one thread mallocs, another frees (through an SPSC ring)
 *   microbench bulk   N K         N/K times: K mallocs of sizes cycling over 16, 32, 48, 64,
 *                                 96, 128, 256, then K frees (LIFO order)
 *   microbench random N LIVE      LIVE objects of random sizes 16..512 (set up before the
 *                                 timed part), then N times: free a random live one, malloc a
 *                                 new random size in its place (xorshift, fixed seed)
 *   microbench large  N SIZE      N times: p = malloc(SIZE); touch every page; free(p)
 *   microbench latency N SIZE     N timed malloc+free pairs (a window of 64 live objects, so
 *                                 the shared chain is used too); prints p50/p99/p99.9/max in ns
 *   microbench poolpairs N SIZE   N times: x = syncpool_pool_get; write a byte; syncpool_pool_put
 *                                 (a program pool of SIZE-byte objects: only under syncpool,
 *                                 whose API is looked up with dlsym, so this file links nothing)
 *
 * Prints `ns_per_op=… ops_per_sec=…` (one op = one malloc + one free).  Under callgrind the
 * instruction count of two runs with different N gives instructions per op (scripts/callgrind). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void report(const char *what, long ops, double secs)
{
    printf("%s ops=%ld ns_per_op=%.2f ops_per_sec=%.0f\n", what, ops, secs * 1e9 / (double)ops,
           (double)ops / secs);
}

static void pairs(long n, size_t size)
{
    double t0 = now();
    for (long i = 0; i < n; i++) {
        char *volatile p = malloc(size);
        if (!p) abort();
        p[0] = (char)i;
        free(p);
    }
    report("pairs", n, now() - t0);
}

/* The program pool's API (include/syncpool.h), declared here so that this file builds without
 * the library. */
struct sp_bench_pool_config {
    void *(*new_object)(void *arg);
    void (*drop_object)(void *obj, void *arg);
    void *arg;
    size_t max_cached_bytes_per_p, object_size_hint;
    const char *name;
};
static void *bench_new(void *arg) { return malloc((size_t)(uintptr_t)arg); }
static void bench_drop(void *obj, void *arg) { free(obj); }

static int poolpairs(long n, size_t size)
{
    void *(*create)(const struct sp_bench_pool_config *) = dlsym(RTLD_DEFAULT, "syncpool_pool_create");
    void *(*get)(void *) = dlsym(RTLD_DEFAULT, "syncpool_pool_get");
    void (*put)(void *, void *) = dlsym(RTLD_DEFAULT, "syncpool_pool_put");
    void (*destroy)(void *) = dlsym(RTLD_DEFAULT, "syncpool_pool_destroy");
    if (!create || !get || !put || !destroy) {
        fprintf(stderr, "poolpairs: run under syncpool (LD_PRELOAD=libsyncpool.so)\n");
        return 2;
    }
    struct sp_bench_pool_config cfg = {bench_new, bench_drop, (void *)(uintptr_t)size, 0, size,
                                       "microbench"};
    void *pool = create(&cfg);
    if (!pool) abort();
    double t0 = now();
    for (long i = 0; i < n; i++) {
        char *volatile p = get(pool);
        if (!p) abort();
        p[0] = (char)i;
        put(pool, p);
    }
    report("poolpairs", n, now() - t0);
    destroy(pool);
    return 0;
}

static void batch(long n, long k, size_t size, int fifo)
{
    char **v = malloc(sizeof(char *) * (size_t)k);
    long rounds = n / k;
    double t0 = now();
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < k; i++) {
            v[i] = malloc(size);
            if (!v[i]) abort();
            v[i][0] = (char)i;
        }
        if (fifo)
            for (long i = 0; i < k; i++) free(v[i]);
        else
            for (long i = k - 1; i >= 0; i--) free(v[i]);
    }
    report(fifo ? "fifo" : "batch", rounds * k, now() - t0);
    free(v);
}

static const size_t bulk_sizes[] = {16, 32, 48, 64, 96, 128, 256};
#define BULK_NSIZES (sizeof bulk_sizes / sizeof bulk_sizes[0])

static void bulk(long n, long k)
{
    char **v = malloc(sizeof(char *) * (size_t)k);
    long rounds = n / k;
    double t0 = now();
    for (long r = 0; r < rounds; r++) {
        size_t c = 0;
        for (long i = 0; i < k; i++) {
            v[i] = malloc(bulk_sizes[c]);
            if (!v[i]) abort();
            v[i][0] = (char)i;
            c = c + 1 == BULK_NSIZES ? 0 : c + 1;
        }
        for (long i = k - 1; i >= 0; i--) free(v[i]);
    }
    report("bulk", rounds * k, now() - t0);
    free(v);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The set-up (LIVE mallocs) and the final frees are the same at any N, so they cancel in
 * scripts/callgrind's difference of two runs; what is left is the steady state. */
static void random_replace(long n, long live)
{
    char **v = malloc(sizeof(char *) * (size_t)live);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < live; i++) {
        v[i] = malloc(16 + (size_t)(xorshift(&s) % 497));
        if (!v[i]) abort();
        v[i][0] = (char)i;
    }
    double t0 = now();
    for (long i = 0; i < n; i++) {
        uint64_t r = xorshift(&s);
        long k = (long)(((r >> 32) * (uint64_t)live) >> 32);
        size_t size = 16 + (size_t)(((r & 0xffffffffu) * 497) >> 32);
        free(v[k]);
        v[k] = malloc(size);
        if (!v[k]) abort();
        v[k][0] = (char)i;
    }
    double dt = now() - t0;
    for (long i = 0; i < live; i++) free(v[i]);
    free(v);
    report("random", n, dt);
}

static void large(long n, size_t size)
{
    double t0 = now();
    for (long i = 0; i < n; i++) {
        char *p = malloc(size);
        if (!p) abort();
        for (size_t off = 0; off < size; off += 4096) p[off] = (char)i;
        free(p);
    }
    report("large", n, now() - t0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t ns_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void latency(long n, size_t size)
{
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)n);
    char *win[64] = {0};
    unsigned r = 1;
    for (long i = 0; i < n; i++) {
        r = r * 1103515245u + 12345u;
        unsigned k = (r >> 16) & 63;
        uint64_t t0 = ns_now();
        char *p = malloc(size);
        free(win[k]);
        uint64_t t1 = ns_now();
        if (!p) abort();
        p[0] = (char)i;
        win[k] = p;
        lat[i] = t1 - t0;
    }
    for (int k = 0; k < 64; k++) free(win[k]);
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    printf("latency ops=%ld p50_ns=%llu p99_ns=%llu p999_ns=%llu max_ns=%llu\n", n,
           (unsigned long long)lat[n / 2], (unsigned long long)lat[n * 99 / 100],
           (unsigned long long)lat[n * 999 / 1000], (unsigned long long)lat[n - 1]);
    free(lat);
}

#define RING 1024
static void *_Atomic ring[RING];
static long pc_n;

static void *consumer(void *arg)
{
    (void)arg;
    for (long i = 0; i < pc_n; i++) {
        void *_Atomic *slot = &ring[i & (RING - 1)];
        void *p;
        while (!(p = atomic_load_explicit(slot, memory_order_acquire)))
            ;
        atomic_store_explicit(slot, NULL, memory_order_relaxed);
        if (*(long *)p != i) abort();
        free(p);
    }
    return NULL;
}

static void prodcons(long n, size_t size)
{
    pc_n = n;
    pthread_t c;
    double t0 = now();
    pthread_create(&c, NULL, consumer, NULL);
    for (long i = 0; i < n; i++) {
        long *p = malloc(size < sizeof(long) ? sizeof(long) : size);
        if (!p) abort();
        *p = i;
        void *_Atomic *slot = &ring[i & (RING - 1)];
        while (atomic_load_explicit(slot, memory_order_relaxed))
            ;
        atomic_store_explicit(slot, p, memory_order_release);
    }
    pthread_join(c, NULL);
    report("prodcons", n, now() - t0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: microbench pairs|batch|fifo|prodcons|large|latency|poolpairs N [K] SIZE\n"
                        "       microbench bulk N K | random N LIVE\n");
        return 2;
    }
    const char *m = argv[1];
    long n = atol(argv[2]);
    if (!strcmp(m, "pairs")) pairs(n, (size_t)atol(argv[3]));
    else if (!strcmp(m, "bulk") && atol(argv[3]) > 0) bulk(n, atol(argv[3]));
    else if (!strcmp(m, "random") && atol(argv[3]) > 0) random_replace(n, atol(argv[3]));
    else if (!strcmp(m, "prodcons")) prodcons(n, (size_t)atol(argv[3]));
    else if (!strcmp(m, "large")) large(n, (size_t)atol(argv[3]));
    else if (!strcmp(m, "latency")) latency(n, (size_t)atol(argv[3]));
    else if (!strcmp(m, "poolpairs")) return poolpairs(n, (size_t)atol(argv[3]));
    else if (argc >= 5 && (!strcmp(m, "batch") || !strcmp(m, "fifo")))
        batch(n, atol(argv[3]), (size_t)atol(argv[4]), !strcmp(m, "fifo"));
    else {
        fprintf(stderr, "unknown mode %s\n", m);
        return 2;
    }
    return 0;
}
