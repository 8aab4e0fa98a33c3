/* pass.c — the backend's pass-through: requests that no pool serves (large, over-aligned, from
 * a thread without a P) and frees of pointers outside the zone, for the shim.
 *
 * Each runs under the re-entry guard although it reads no pool (guard.h): a signal handler that
 * interrupts the backend here (its thread cache half updated, or one of its locks held) must not
 * call it again.  Such a nested call is served by nested.h's region, and a nested free is
 * deferred to the thread (sp_put_nested).  None opens a read-side section. */
#include <errno.h>
#include <string.h>

#include "backend.h"
#include "nested.h"
#include "pass.h"
#include "pool.h"
#include "sp_assert.h"

static void *sp_nested_alloc_zeroed(size_t n, size_t align, bool zero)
{
    void *p = sp_nested_alloc(n ? n : 1, align);
    if (p && zero) memset(p, 0, n);
    return p;
}

/* An object from a backend path other than the pools' (backend.h, "Why the map is exact"): a
 * thread bound to the zone asks its previous arena, but its jemalloc cache may still hand out a
 * zone object for a request of a pooled class's size (calloc(0) on an exiting thread, say), which
 * then gets its class in the map like any zone object. */
static inline void *sp_mark_zone(void *p)
{
    if (SP_UNLIKELY(be_in_zone(p))) {
        size_t u = be_usable(p);
        sp_assert(u <= sp_max_size);   /* the zone holds objects of pooled classes only */
        if (u <= sp_max_size) be_zone_mark(p, (unsigned)sp_size_class(u));
    }
    return p;
}

void *sp_pool_pass_alloc(size_t n, size_t align, bool zero)
{
    struct sp_thread *t = &sp_self;
    if (SP_UNLIKELY(sp_guard_enter(&t->guard))) return sp_nested_alloc_zeroed(n, align, zero);
    int flags = (align ? BE_ALIGN(align) : 0) | (zero ? BE_ZERO : 0);
    /* zone_flags 0: the thread never used the zone, and its cache holds no zone object. */
    int zf = t->zone_flags;
    if (SP_UNLIKELY(zf != 0)) flags |= be_home_flags(zf);   /* not a pooled class: not the zone */
    void *p = be_alloc(n ? n : 1, flags);   /* size 0 is undefined for mallocx */
    if (SP_UNLIKELY(!p) && !(p = be_alloc_after_oom(n ? n : 1, flags))) errno = ENOMEM;
    if (SP_UNLIKELY(zf != 0)) p = sp_mark_zone(p);
    sp_guard_exit(&t->guard);
    sp_pool_note_handed_out(t, n >> SP_WARM_LARGE_SHIFT);
    return p;
}

void *sp_pool_alloc_unpooled(size_t c, bool zero)
{
    struct sp_thread *t = &sp_self;
    sp_assert(c < sp_nclasses);
    if (SP_UNLIKELY(sp_guard_enter(&t->guard)))
        return sp_nested_alloc_zeroed(sp_class_size[c], 0, zero);
    /* A thread bound to the zone keeps its flags (it may be exiting); others: no cache. */
    int zf = t->zone_flags & BE_ZF_BOUND ? t->zone_flags : be_zone_flags_shared();
    int flags = zero ? BE_ZERO : 0;
    void *p = be_alloc_class((unsigned)c, sp_class_size[c], flags, zf);
    if (SP_UNLIKELY(!p) && !(p = be_alloc_class_after_oom((unsigned)c, sp_class_size[c], flags, zf)))
        errno = ENOMEM;
    sp_guard_exit(&t->guard);
    return p;
}

void sp_pool_free_unpooled(size_t c, void *p)
{
    struct sp_thread *t = &sp_self;
    sp_assert(c < sp_nclasses && p != NULL);
    if (SP_UNLIKELY(sp_guard_enter(&t->guard))) {
        sp_put_nested(t, p);
        return;
    }
    be_free_class(p, sp_class_size[c], 0);   /* zone objects bypass jemalloc's thread cache */
    sp_guard_exit(&t->guard);
}

void sp_pool_pass_free(void *p)
{
    if (p == NULL) return;
    sp_assert(!be_in_zone(p));                     /* zone objects go to their pool */
    struct sp_thread *t = &sp_self;
    if (SP_UNLIKELY(sp_guard_enter(&t->guard))) {
        sp_put_nested(t, p);
        return;
    }
    if (SP_UNLIKELY(sp_nested_owns(p))) {
        sp_nested_free(p);
        sp_guard_exit(&t->guard);
        return;
    }
    if (!sp_max_size) {                            /* pools off (or not yet on) */
        be_free_keep_errno(p, 0);
        sp_guard_exit(&t->guard);
        return;
    }
    size_t size = be_usable(p);
    if (size > sp_max_size) {
        be_free_keep_errno(p, size);
        sp_guard_exit(&t->guard);
        return;
    }
    /* Exactly a class's size (an object from before the pools were warm, or from outside a zone
     * that could not grow or was never made). */
    sp_assert(sp_class_size[sp_size_class(size)] == size);
    if (be_zone_serving()) {
        /* Back to its arena, past the thread's cache (which would hand it to the next miss
         * again): that miss then takes a zone object, whose frees skip this path.  Pooled
         * instead, a program whose few objects always hit would pay this path forever. */
        be_free_outside(p, size);
        if (t->state == SP_T_ACTIVE) sp_count_put_released(t, sp_size_class(size));
        sp_guard_exit(&t->guard);
        return;
    }
    /* No zone yet: pooled by its size, and counted toward making it (pool.h, sp_pool_zoned). */
    sp_guard_exit(&t->guard);
    sp_pool_free(sp_size_class(size), p);
    sp_pool_note_freed_outside(size);
}

size_t sp_pool_usable(const void *p)
{
    unsigned c;
    if (be_zone_lookup(p, &c)) return sp_class_size[c];
    if (sp_nested_owns(p)) return sp_nested_size(p);
    struct sp_thread *t = &sp_self;
    /* Nested: the backend's size lookup only reads (its per-thread lookup cache aside). */
    bool nested = sp_guard_enter(&t->guard);
    size_t n = be_usable(p);
    if (!nested) sp_guard_exit(&t->guard);
    return n;
}

void *sp_pool_pass_realloc(void *p, size_t n)
{
    struct sp_thread *t = &sp_self;
    sp_assert(p != NULL && !be_in_zone(p) && n > sp_max_size);   /* large, outside the zone */
    bool nested = sp_guard_enter(&t->guard);
    if (SP_LIKELY(!nested && !sp_nested_owns(p))) {
        int flags = be_home_flags(t->zone_flags);  /* large: never from the zone */
        void *q = be_realloc(p, n, flags);
        if (SP_UNLIKELY(q == NULL) && !(q = be_realloc_after_oom(p, n, flags)))
            errno = ENOMEM;                        /* p stays valid */
        sp_guard_exit(&t->guard);
        sp_pool_note_handed_out(t, n >> SP_WARM_LARGE_SHIFT);
        return q;
    }
    if (!nested) sp_guard_exit(&t->guard);
    /* Moved: a nested call takes its new block from the region too; a block of the region (from
     * an earlier nested call) moves to the backend. */
    void *q = nested ? sp_nested_alloc(n ? n : 1, 0) : sp_pool_pass_alloc(n, 0, false);
    if (!q) return NULL;                           /* errno ENOMEM; p stays valid */
    size_t old = sp_pool_usable(p);
    memcpy(q, p, old < n ? old : n);
    sp_pool_pass_free(p);
    return q;
}
