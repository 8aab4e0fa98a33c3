/* alloc.c — malloc, free, calloc, realloc and friends.  Hot paths first and short; the slow
 * paths (thread set-up, misses, backend) are out of line and named for what they do.
 *
 * A request of n <= sp_max_size bytes from an ACTIVE thread is served by the pool of its class;
 * everything else goes to the backend.  Every object the pools hand out is a backend object of
 * exactly its class, so free() finds the class from the backend's usable size. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "pool.h"
#include "shim.h"

/* ---- backend paths (errno as glibc sets it) ---------------------------------------------- */

static SP_NOINLINE void *sp_backend_alloc(size_t n, int flags)
{
    void *p = be_alloc(n ? n : 1, flags);   /* size 0 is undefined for mallocx */
    if (SP_UNLIKELY(!p) && !(p = be_alloc_after_oom(n ? n : 1, flags))) errno = ENOMEM;
    return p;
}

static SP_NOINLINE void sp_backend_free(void *p, size_t size)
{
    be_free_keep_errno(p, size);
}

/* A pool miss: a fresh object of exactly class c. */
static SP_NOINLINE void *sp_alloc_miss(unsigned c, int flags)
{
    return sp_backend_alloc(sp_class_size[c], flags);
}

/* ---- malloc / free ------------------------------------------------------------------------ */

static SP_NOINLINE void *sp_malloc_slow(size_t n)
{
    if (sp_self.state == SP_T_NEW && sp_thread_setup() && n <= sp_max_size) return sp_malloc(n);
    return sp_backend_alloc(n, 0);
}

void *sp_malloc(size_t n)
{
    if (SP_LIKELY(n <= sp_max_size) && SP_LIKELY(sp_self.state == SP_T_ACTIVE))
        return sp_pool_get_or(sp_size_class(n), sp_get_rest_or_alloc);
    return sp_malloc_slow(n);
}

static SP_NOINLINE void sp_free_slow(void *p)
{
    if (sp_self.state == SP_T_NEW && sp_thread_setup()) { sp_free(p); return; }
    sp_backend_free(p, 0);
}

void sp_free(void *p)
{
    if (SP_LIKELY(sp_self.state == SP_T_ACTIVE) && SP_LIKELY(p != NULL)) {
        size_t size = be_usable(p);          /* design decision 2: the class from the backend */
        if (SP_LIKELY(size <= sp_max_size)) {
            (void)sp_pool_put_or(sp_size_class(size), p, sp_put_rest_or_free);
            return;
        }
        sp_backend_free(p, size);
        return;
    }
    if (p) sp_free_slow(p);
}

/* C++ sized delete: the caller tells us the size, so no lookup. */
void sp_free_sized(void *p, size_t n)
{
    if (SP_UNLIKELY(p == NULL)) return;
    if (SP_LIKELY(n <= sp_max_size) && SP_LIKELY(sp_self.state == SP_T_ACTIVE)) {
        (void)sp_pool_put_or(sp_size_class(n), p, sp_put_rest_or_free);
        return;
    }
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
    if (SP_LIKELY(n <= sp_max_size) &&
        (SP_LIKELY(sp_self.state == SP_T_ACTIVE) || sp_thread_setup())) {
        unsigned c = sp_size_class(n);
        void *p = sp_pool_get(c);
        if (SP_LIKELY(p != NULL)) return memset(p, 0, n);   /* pooled objects are dirty */
        return sp_alloc_miss(c, BE_ZERO);
    }
    return sp_backend_alloc(n, BE_ZERO);
}

static void *sp_realloc(void *p, size_t n)
{
    if (p == NULL) return sp_malloc(n);
    if (n == 0) {                 /* glibc 2.36: frees and returns NULL, errno untouched */
        sp_free(p);
        return NULL;
    }
    size_t old = be_usable(p);
    /* Same class: nothing to do.  Otherwise the backend moves it (design decision 1). */
    if (old <= sp_max_size && n <= sp_max_size && sp_size_class(n) == sp_size_class(old))
        return p;
    void *q = be_realloc(p, n, 0);
    if (SP_UNLIKELY(q == NULL) && !(q = be_realloc_after_oom(p, n, 0)))
        errno = ENOMEM;                           /* p stays valid */
    return q;
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
    return p ? be_usable(p) : 0;
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
