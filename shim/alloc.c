/* alloc.c — malloc, free, calloc, realloc and friends.  Hot paths first and short; the slow
 * paths (thread set-up, misses, backend) are out of line and named for what they do.
 *
 * A request of n <= sp_max_size bytes is served by the pool of its class; everything else goes
 * to the backend.  Every object the pools hand out is a backend object of exactly its class,
 * normally from the zone (backend.h), so free() reads the class from the zone's page map.  Any
 * other pointer (a pooled-size object from before the zone was made, or from while it could
 * not grow) goes to the pool's pass-through, which asks the backend (pass.h). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "pass.h"
#include "pool.h"
#include "shim.h"

/* ---- malloc / free ------------------------------------------------------------------------ */

void *sp_malloc(size_t n)
{
    if (SP_LIKELY(n <= sp_max_size)) return sp_pool_alloc(sp_size_class(n));
    return sp_pool_pass_alloc(n, 0, false);
}

void sp_free(void *p)
{
    unsigned c;
    if (SP_LIKELY(sp_pool_class_of(p, &c))) {
        sp_pool_free(c, p);
        return;
    }
    /* Not a pooled object (or NULL): large, over-aligned, a pooled-size object from outside the
     * zone, a block of the nested region, or every pointer when there is no zone. */
    sp_pool_pass_free(p);
}

/* C++ sized delete: the zone says the class as it does for free (the size is not needed). */
void sp_free_sized(void *p, size_t n)
{
    (void)n;
    sp_free(p);
}

/* ---- calloc / realloc ---------------------------------------------------------------------- */

static void *sp_calloc(size_t count, size_t size)
{
    size_t n;
    if (SP_UNLIKELY(__builtin_mul_overflow(count, size, &n))) {
        errno = ENOMEM;
        return NULL;
    }
    if (SP_LIKELY(n <= sp_max_size)) {
        void *p = sp_pool_alloc(sp_size_class(n));
        return SP_LIKELY(p != NULL) ? memset(p, 0, n) : NULL;   /* pooled objects are dirty */
    }
    return sp_pool_pass_alloc(n, 0, true);
}

static void *sp_realloc(void *p, size_t n)
{
    if (p == NULL) return sp_malloc(n);
    if (n == 0) {                 /* glibc 2.36: frees and returns NULL, errno untouched */
        sp_free(p);
        return NULL;
    }
    size_t old = sp_pool_usable(p);
    bool old_pooled = old <= sp_max_size;
    /* Same class, and it fits (a block of the nested region has a size of its own): nothing to
     * do. */
    if (old_pooled && n <= old && sp_size_class(n) == sp_size_class(old)) return p;
    /* Into or out of the pooled sizes: move it ourselves, so the new object comes from the pool
     * (or the zone) and the old one goes back to its pool (jemalloc's rallocx would resize a
     * zone object in place, behind the back of the zone's page map). */
    if (old_pooled || n <= sp_max_size) {
        void *q = sp_malloc(n);
        if (SP_UNLIKELY(q == NULL)) return NULL;  /* errno ENOMEM; p stays valid */
        memcpy(q, p, old < n ? old : n);
        sp_free(p);
        return q;
    }
    return sp_pool_pass_realloc(p, n);
}

static void *sp_reallocarray(void *p, size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return sp_realloc(p, n);
}

static size_t sp_usable_size(void *p)
{
    return p ? sp_pool_usable(p) : 0;
}

/* ---- exported names ------------------------------------------------------------------------ */

#define SP_ALIAS(name, impl) __typeof__(impl) name __attribute__((alias(#impl), visibility("default")))

SP_ALIAS(malloc, sp_malloc);
SP_ALIAS(free, sp_free);
SP_ALIAS(cfree, sp_free);
SP_ALIAS(calloc, sp_calloc);
SP_ALIAS(realloc, sp_realloc);
SP_ALIAS(reallocarray, sp_reallocarray);
SP_ALIAS(malloc_usable_size, sp_usable_size);
/* glibc-private names some programs and libraries call directly. */
SP_ALIAS(__libc_malloc, sp_malloc);
SP_ALIAS(__libc_free, sp_free);
SP_ALIAS(__libc_cfree, sp_free);
SP_ALIAS(__libc_calloc, sp_calloc);
SP_ALIAS(__libc_realloc, sp_realloc);
