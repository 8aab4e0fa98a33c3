/* alloc.c — malloc, free, calloc, realloc and friends.  Hot paths first and short; the slow
 * paths (thread set-up, misses, backend) are out of line and named for what they do.
 *
 * A request of n <= sp_max_size bytes is served by the pool of its class; everything else goes
 * to the backend.  Every object the pools hand out is a backend object of exactly its class,
 * normally from the zone (backend.h), so free() reads the class from the zone's page map.  A
 * pooled-size object outside the zone (allocated before start-up, while the zone could not
 * grow, or every one when there is no zone) is pooled by jemalloc's usable size instead. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "pool.h"
#include "shim.h"

/* ---- backend paths (errno as glibc sets it) ---------------------------------------------- */

/* An object from a backend path other than the pools' (backend.h, "Why the map is exact"): a
 * thread bound to the zone asks its previous arena, but its jemalloc cache may still hand out a
 * zone object for a request of a pooled class's size (calloc(0) on an exiting thread, say), which
 * then gets its class in the map like any zone object. */
static inline void *sp_mark_zone(void *p)
{
    if (SP_UNLIKELY(be_in_zone(p))) {
        size_t u = be_usable(p);
        if (u <= sp_max_size) be_zone_mark(p, (unsigned)sp_size_class(u));
    }
    return p;
}

void *sp_backend_alloc(size_t n, int flags)
{
    /* zone_flags 0: the thread never used the zone, and its cache holds no zone object. */
    int zf = sp_self.zone_flags;
    if (SP_UNLIKELY(zf != 0)) flags |= be_home_flags(zf);   /* not a pooled class: not the zone */
    void *p = be_alloc(n ? n : 1, flags);   /* size 0 is undefined for mallocx */
    if (SP_UNLIKELY(!p) && !(p = be_alloc_after_oom(n ? n : 1, flags))) errno = ENOMEM;
    return SP_UNLIKELY(zf != 0) ? sp_mark_zone(p) : p;
}

static SP_NOINLINE void sp_backend_free(void *p, size_t size)
{
    be_free_keep_errno(p, size);
}

/* A fresh object of exactly class c for a thread that does not use the pools (no P, so no cache
 * of its own: the zone's shared flags). */
static SP_NOINLINE void *sp_alloc_class_unpooled(size_t c, int flags)
{
    /* A thread bound to the zone keeps its flags (it may be exiting); others: no cache. */
    int zf = sp_self.zone_flags & BE_ZF_BOUND ? sp_self.zone_flags : be_zone_flags_shared();
    void *p = be_alloc_class((unsigned)c, sp_class_size[c], flags, zf);
    if (SP_UNLIKELY(!p) && !(p = be_alloc_class_after_oom((unsigned)c, sp_class_size[c], flags, zf)))
        errno = ENOMEM;
    return p;
}

/* ---- malloc / free ------------------------------------------------------------------------ */

/* Everything after a missed private stack, inside the read-side section the fast path opened. */
/* A thread that is not ACTIVE: set up a new thread and try again; otherwise the zone.
 * (A request that maps to class c is served by c's size.  Before start-up sp_max_size is 0:
 * only malloc(0) gets here, with no classes yet.) */
static SP_NOINLINE void *sp_malloc_unpooled(struct sp_thread *t, size_t c)
{
    sp_rcu_exit(&t->rcu);
    if (t->state == SP_T_NEW && sp_thread_setup()) return sp_malloc(sp_class_size[c]);
    if (!sp_max_size) return sp_backend_alloc(1, 0);
    return sp_alloc_class_unpooled(c, 0);
}

/* The second step: whether my own shared chain can refill my private stack is decided inline;
 * the refill itself (sp_get_shared_or_alloc) and everything else are tail calls, so this
 * function saves no registers. */
static SP_NOINLINE void *sp_malloc_rest(struct sp_thread *t, size_t c)
{
    if (SP_UNLIKELY(t->state != SP_T_ACTIVE)) return sp_malloc_unpooled(t, c);
    if (SP_LIKELY(sp_pool_has_shared(t, c))) return sp_get_shared_or_alloc(t, c);
    if (sp_pool_miss_now(t, c)) {
        sp_rcu_exit(&t->rcu);
        return sp_pool_alloc_class(t, c, 0);
    }
    return sp_get_rest_or_alloc(t, c);
}

void *sp_malloc(size_t n)
{
    if (SP_LIKELY(n <= sp_max_size)) return sp_pool_get_or(sp_size_class(n), sp_malloc_rest);
    return sp_backend_alloc(n, 0);
}

static bool sp_free_rest(struct sp_thread *t, size_t c, void *p);

static SP_NOINLINE bool sp_free_unpooled(struct sp_thread *t, size_t c, void *p)
{
    sp_rcu_exit(&t->rcu);
    if (t->state == SP_T_NEW && sp_thread_setup()) return sp_pool_put_or(c, p, sp_free_rest);
    be_free_class(p, sp_class_size[c], 0);   /* zone objects bypass jemalloc's thread cache */
    return true;
}

/* Over the cap (sp_pool_put_shared counted it): p back to the backend.  Out of line, so that
 * sp_free_rest stays free of register saves. */
static SP_NOINLINE bool sp_free_refused(struct sp_thread *t, size_t c, void *p)
{
    sp_rcu_exit(&t->rcu);
    be_free_class(p, sp_class_size[c], t->zone_flags);
    return true;
}

/* As sp_malloc_rest.  Returns true (the object is taken care of), to fit sp_pool_put_or. */
static SP_NOINLINE bool sp_free_rest(struct sp_thread *t, size_t c, void *p)
{
    if (SP_UNLIKELY(t->state != SP_T_ACTIVE)) return sp_free_unpooled(t, c, p);
    int r = sp_pool_put_shared(t, c, p);
    if (SP_LIKELY(r == SP_PUT_TAKEN)) {
        sp_rcu_exit(&t->rcu);
        return true;
    }
    if (r == SP_PUT_SPILL) return sp_put_spill_or_free(t, c, p);
    if (r == SP_PUT_REFUSED) return sp_free_refused(t, c, p);
    return sp_put_rest_or_free(t, c, p);
}

/* A pointer outside the zone (or NULL): large, over-aligned, a pooled-size object from outside
 * the zone, or every pointer when there is no zone. */
static SP_NOINLINE void sp_free_other(void *p)
{
    if (p == NULL) return;
    if (!sp_max_size) {                            /* pools off (or not yet on) */
        sp_backend_free(p, 0);
        return;
    }
    size_t size = be_usable(p);
    if (size <= sp_max_size) {                     /* exactly a class's size: pool it */
        (void)sp_pool_put_or(sp_size_class(size), p, sp_free_rest);
        return;
    }
    sp_backend_free(p, size);
}

void sp_free(void *p)
{
    unsigned c;
    if (SP_LIKELY(be_zone_lookup(p, &c))) {
        (void)sp_pool_put_or(c, p, sp_free_rest);
        return;
    }
    sp_free_other(p);
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
    if (SP_LIKELY(n <= sp_max_size) &&
        (SP_LIKELY(sp_self.state == SP_T_ACTIVE) || sp_thread_setup())) {
        size_t c = sp_size_class(n);
        void *p = sp_pool_get(c);
        if (SP_LIKELY(p != NULL)) return memset(p, 0, n);   /* pooled objects are dirty */
        return sp_pool_alloc_class(&sp_self, c, BE_ZERO);
    }
    if (n <= sp_max_size && n) return sp_alloc_class_unpooled(sp_size_class(n), BE_ZERO);
    return sp_backend_alloc(n, BE_ZERO);
}

/* Usable size of a live object: its class's size inside the zone, else jemalloc's. */
static size_t sp_size_of(void *p)
{
    unsigned c;
    return be_zone_lookup(p, &c) ? sp_class_size[c] : be_usable(p);
}

static void *sp_realloc(void *p, size_t n)
{
    if (p == NULL) return sp_malloc(n);
    if (n == 0) {                 /* glibc 2.36: frees and returns NULL, errno untouched */
        sp_free(p);
        return NULL;
    }
    size_t old = sp_size_of(p);
    bool old_pooled = old <= sp_max_size;
    /* Same class: nothing to do. */
    if (old_pooled && n <= sp_max_size && sp_size_class(n) == sp_size_class(old)) return p;
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
    int flags = be_home_flags(sp_self.zone_flags);   /* large: never from the zone */
    void *q = be_realloc(p, n, flags);
    if (SP_UNLIKELY(q == NULL) && !(q = be_realloc_after_oom(p, n, flags)))
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
    return p ? sp_size_of(p) : 0;
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
