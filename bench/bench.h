/* Small helpers shared by the benchmark workloads in bench/.
 *
 * Every workload:
 *   - takes a size argument first (its meaning is in the workload's usage line);
 *   - stamps each object it allocates and checks the stamp before freeing it, so an allocator
 *     that hands out overlapping or corrupted memory makes the workload fail;
 *   - prints its throughput as `ops_per_sec=N` (plus a few informative key=value lines) on stdout;
 *   - exits 1 with "CHECK FAILED: ..." on stderr when its own check fails, 2 on bad usage. */
#ifndef BENCH_H
#define BENCH_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: small, fast, deterministic per seed. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t rng_seed(uint64_t k)
{
    return (k + 1) * 0x9E3779B97F4A7C15ULL | 1;
}

/* A small request size in [lo, hi], skewed towards the low end the way real programs are:
 * three times in four from the lower quarter of the range. */
static inline size_t rng_small_size(uint64_t *s, size_t lo, size_t hi)
{
    uint64_t r = rng_next(s);
    size_t span = hi - lo + 1;
    if ((r & 3) != 0)
        span = span / 4 + 1;
    return lo + (size_t)((r >> 8) % span);
}

static void bench_fail(const char *prog, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
static void bench_fail(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: CHECK FAILED: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Parses argv[i] as a positive count (suffixes k and M allowed), or returns def if absent. */
static inline size_t bench_arg(int argc, char **argv, int i, size_t def, const char *usage)
{
    if (i >= argc)
        return def;
    char *end;
    double v = strtod(argv[i], &end);
    if (*end == 'k' || *end == 'K')
        v *= 1e3, end++;
    else if (*end == 'M' || *end == 'm')
        v *= 1e6, end++;
    if (end == argv[i] || *end != '\0' || v < 1) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        exit(2);
    }
    return (size_t)v;
}

/* Object stamp: the first 8 bytes hold (size, tag); bytes at every 4 KiB step and the last byte
 * hold the tag's low byte.  Small objects get filled entirely, as a program would write them;
 * large ones only get one byte per page, so the workload measures the allocator, not memset. */
static inline void obj_fill(void *p, size_t n, uint32_t tag)
{
    unsigned char *b = (unsigned char *)p;
    unsigned char t = (unsigned char)tag;
    if (n <= 4096) {
        memset(b, t, n);
    } else {
        for (size_t i = 0; i < n; i += 4096)
            b[i] = t;
        b[n - 1] = t;
    }
    if (n >= 8) {
        uint32_t h[2] = {(uint32_t)n, tag};
        memcpy(b, h, 8);
    }
}

/* A live object of the random-size workloads: its block, size and tag (obj_fill, obj_check). */
struct bench_obj {
    void *p;
    uint32_t n;
    uint32_t tag;
};

/* A fresh object of a random small size (8..1024 B, skewed to the small end), filled with tag. */
static inline void obj_new_random(const char *prog, struct bench_obj *o, uint64_t *rng,
                                  uint32_t tag)
{
    size_t n = rng_small_size(rng, 8, 1024);
    void *p = malloc(n);
    if (!p)
        bench_fail(prog, "malloc(%zu) returned NULL", n);
    obj_fill(p, n, tag);
    o->p = p;
    o->n = (uint32_t)n;
    o->tag = tag;
}

/* Checks the stamp obj_fill(p, n, tag) wrote; 0 if intact. */
static inline int obj_check(const void *p, size_t n, uint32_t tag)
{
    const unsigned char *b = (const unsigned char *)p;
    unsigned char t = (unsigned char)tag;
    if (n >= 8) {
        uint32_t h[2];
        memcpy(h, b, 8);
        if (h[0] != (uint32_t)n || h[1] != tag)
            return -1;
    } else if (b[0] != t) {
        return -1;
    }
    if (n > 8 && b[n - 1] != t)
        return -1;
    if (n <= 4096) {
        if (n > 8 && b[8 + (n - 8) / 2] != t)
            return -1;
    } else {
        for (size_t i = 4096; i < n; i += 4096)
            if (b[i] != t)
                return -1;
    }
    return 0;
}

static inline void bench_report(double ops, double secs)
{
    printf("ops_per_sec=%.0f\n", secs > 0 ? ops / secs : 0.0);
    printf("seconds=%.3f\n", secs);
    printf("check=ok\n");
}

#endif
