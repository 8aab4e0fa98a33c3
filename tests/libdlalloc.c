/* libdlalloc: a MODULE loaded by dlopen_test.  It allocates in its constructor, hands out
 * malloc'ed memory, frees memory the main program allocated, uses TLS (each dlopen'ed copy is a
 * new TLS module: the DTV grows, and glibc allocates the TLS block lazily with malloc), and
 * verifies and frees its constructor's allocation in its destructor, reporting the result
 * through counters the main program registers. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTOR_N 37
static unsigned char *ctor_buf[CTOR_N];
static char *ctor_str;
static int *ok_counter, *bad_counter;
static __thread unsigned char tls_buf[4096];
static __thread void *tls_ptr;

static size_t ctor_size(int i) { return (size_t)(1 + i * 397); } /* 1 .. 14293 bytes */

static unsigned char pat(uint64_t seed, size_t i)
{
    return (unsigned char)((seed * 131 + i * 7 + (i >> 8)) ^ (seed >> 3));
}

__attribute__((constructor)) static void dlalloc_init(void)
{
    for (int i = 0; i < CTOR_N; i++) {
        ctor_buf[i] = malloc(ctor_size(i));
        if (ctor_buf[i])
            for (size_t k = 0; k < ctor_size(i); k++)
                ctor_buf[i][k] = pat((uint64_t)i, k);
    }
    ctor_str = strdup("libdlalloc constructor string");
}

/* 0 if everything the constructor allocated is intact */
int dlalloc_check_ctor(void)
{
    for (int i = 0; i < CTOR_N; i++) {
        if (!ctor_buf[i])
            return -1;
        for (size_t k = 0; k < ctor_size(i); k++)
            if (ctor_buf[i][k] != pat((uint64_t)i, k))
                return -2;
    }
    if (!ctor_str || strcmp(ctor_str, "libdlalloc constructor string") != 0)
        return -3;
    return 0;
}

__attribute__((destructor)) static void dlalloc_fini(void)
{
    int rc = dlalloc_check_ctor();
    for (int i = 0; i < CTOR_N; i++) {
        free(ctor_buf[i]);
        ctor_buf[i] = NULL;
    }
    free(ctor_str);
    ctor_str = NULL;
    if (rc != 0) {
        fprintf(stderr, "libdlalloc: constructor allocations corrupted at destructor time (%d)\n",
                rc);
        if (bad_counter)
            __atomic_fetch_add(bad_counter, 1, __ATOMIC_SEQ_CST);
    } else if (ok_counter) {
        __atomic_fetch_add(ok_counter, 1, __ATOMIC_SEQ_CST);
    }
}

void dlalloc_set_counters(int *ok, int *bad)
{
    ok_counter = ok;
    bad_counter = bad;
}

/* n bytes of malloc'ed memory filled with pattern(seed); the caller frees it. */
void *dlalloc_make(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    if (p)
        for (size_t k = 0; k < n; k++)
            p[k] = pat(seed, k);
    return p;
}

/* 0 if p holds pattern(seed) */
int dlalloc_check(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    for (size_t k = 0; k < n; k++)
        if (b[k] != pat(seed, k))
            return -1;
    return 0;
}

/* frees memory the main program allocated */
void dlalloc_free(void *p) { free(p); }

/* touches this module's TLS in the calling thread and keeps a per-thread allocation there;
 * returns 0 if the previous value for this thread was intact */
int dlalloc_tls_touch(uint64_t seed)
{
    int rc = 0;
    if (tls_ptr) {
        uint64_t old;
        memcpy(&old, tls_buf, sizeof old);
        if (dlalloc_check(tls_ptr, 100, old) != 0)
            rc = -1;
        free(tls_ptr);
    }
    memcpy(tls_buf, &seed, sizeof seed);
    memset(tls_buf + sizeof seed, (int)(seed & 0xff), sizeof tls_buf - sizeof seed);
    tls_ptr = dlalloc_make(100, seed);
    return tls_ptr ? rc : -2;
}

/* frees the calling thread's TLS-held allocation */
void dlalloc_tls_release(void)
{
    free(tls_ptr);
    tls_ptr = NULL;
}
