/* Small helpers shared by the preload tests (the C and C++ programs in tests/).
 *
 * CHECK(cond, fmt, ...) counts a check and, when cond is false, prints where and why on stderr
 * and counts a failure.  sp_report(name) prints "<name>: N checks, M failed" and returns the exit
 * status (0 only when nothing failed).  Counters are atomic: CHECK may be used from any thread.
 * Everything here is header-only (static functions) so each test is a single translation unit. */
#ifndef SP_TEST_H
#define SP_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
#include <atomic>
#define SP_ATOMIC_ULONG std::atomic<unsigned long>
#else
#include <stdatomic.h>
#define SP_ATOMIC_ULONG _Atomic unsigned long
#endif

static SP_ATOMIC_ULONG sp_checks_;
static SP_ATOMIC_ULONG sp_failures_;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5), unused))
#endif
static void sp_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    unsigned long n = ++sp_failures_;
    if (n > 40) {               /* keep the log readable */
        if (n == 41)
            fprintf(stderr, "... further failures not printed\n");
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAIL %s:%d: %s [%s]\n", file, line, msg, cond);
    fflush(stderr);
}

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        ++sp_checks_;                                                                      \
        if (!(cond))                                                                       \
            sp_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                               \
    } while (0)

/* Fatal: print and exit at once (used where continuing would only crash). */
#define REQUIRE(cond, ...)                                                                 \
    do {                                                                                   \
        ++sp_checks_;                                                                      \
        if (!(cond)) {                                                                     \
            sp_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                               \
            fprintf(stderr, "aborting: required condition failed\n");                      \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

__attribute__((unused)) static unsigned long sp_failures(void) { return sp_failures_; }

/* In a forked child: its own count from zero, so that its exit status and its messages are its
 * own, not the parent's failures inherited with the memory. */
__attribute__((unused)) static void sp_counts_reset(void)
{
    sp_checks_ = 0;
    sp_failures_ = 0;
}

__attribute__((unused)) static int sp_report(const char *name)
{
    unsigned long c = sp_checks_, f = sp_failures_;
    printf("%s: %lu checks, %lu failed -> %s\n", name, c, f, f ? "FAIL" : "OK");
    fflush(stdout);
    return f ? 1 : 0;
}

/* Warms the library's pools so that its rotation thread runs (it starts once the pools' misses
 * have handed out 64 KiB: pool.h, SP_WARM_BYTES): 1024 objects of 128 bytes, all live at once,
 * then freed.  Tests of how a process behaves with that thread call it first; harmless without
 * the library. */
__attribute__((unused)) static void sp_warm_pools(void)
{
    enum { N = 1024 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = malloc(128);
        if (!v[i]) abort();
        memset(v[i], i, 1);
    }
    for (int i = 0; i < N; i++) free(v[i]);
}

/* xorshift64* PRNG; state must be non-zero. */
static inline uint64_t sp_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t sp_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Fill n bytes with a pattern that depends on the seed and on the position, so that two
 * different blocks (different seeds) or a shifted copy never look right. */
__attribute__((unused)) static void sp_fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    uint64_t base = sp_mix(seed | 1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = base + i * 0x9E3779B97F4A7C15ULL;
        memcpy(b + i, &w, 8);
    }
    uint64_t w = base + i * 0x9E3779B97F4A7C15ULL;
    for (size_t k = 0; i < n; i++, k++)
        b[i] = (unsigned char)(w >> (8 * k));
}

/* Returns the offset of the first byte that differs from sp_fill(p, n, seed), or -1. */
__attribute__((unused)) static long sp_verify(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    uint64_t base = sp_mix(seed | 1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = base + i * 0x9E3779B97F4A7C15ULL, v;
        memcpy(&v, b + i, 8);
        if (v != w) {
            for (size_t k = 0; k < 8; k++)
                if (b[i + k] != (unsigned char)(w >> (8 * k)))
                    return (long)(i + k);
        }
    }
    uint64_t w = base + i * 0x9E3779B97F4A7C15ULL;
    for (size_t k = 0; i < n; i++, k++)
        if (b[i] != (unsigned char)(w >> (8 * k)))
            return (long)i;
    return -1;
}

__attribute__((unused)) static double sp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

__attribute__((unused)) static void sp_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* True when libsyncpool.so is loaded in this process (its public API is visible).  Tests that
 * can also run over plain jemalloc (the stand-in used while the library was being written) use
 * this to skip checks that only the real library can pass (pvalloc, cfree, __libc_*). */
__attribute__((unused)) static int sp_under_syncpool(void)
{
    return dlsym(RTLD_DEFAULT, "syncpool_rotations") != NULL;
}

/* Seed from $SP_SEED if set (to reproduce a failure), else the given default. */
__attribute__((unused)) static uint64_t sp_seed(uint64_t dflt)
{
    const char *s = getenv("SP_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return dflt;
}

/* jemalloc's small size classes = the pooled classes (8 ... 14336). */
static const size_t sp_classes[] = {
    8,    16,   32,   48,   64,   80,   96,   112,  128,  160,  192,   224,
    256,  320,  384,  448,  512,  640,  768,  896,  1024, 1280, 1536,  1792,
    2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336};
#define SP_NCLASSES (sizeof sp_classes / sizeof sp_classes[0])

/* The optional first argument: a count in [1, max], default dflt; a bad one prints a usage line
 * naming what is counted and exits 2. */
__attribute__((unused)) static long sp_arg_count(int argc, char **argv, long dflt, long max,
                                                 const char *what)
{
    if (argc <= 1) return dflt;
    char *end;
    long v = strtol(argv[1], &end, 10);
    if (*end || v < 1 || v > max) {
        fprintf(stderr, "usage: %s [%s]\n", argv[0], what);
        exit(2);
    }
    return v;
}

#endif
