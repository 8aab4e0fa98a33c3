/* backend.h — the one place that names jemalloc.
 *
 * Everything the pools cache is a real allocation of this backend, of exactly one of its small size
 * classes (design decision 1), so any path that bypasses the pools still works.  The rest of the
 * project calls be_* only.
 *
 * SYNCPOOL_BACKEND_LIBC maps the same calls onto the C library's malloc: it exists so the pool
 * core can be built as a plain static library and run under ThreadSanitizer / AddressSanitizer,
 * whose interceptors then see every allocation (a preloaded malloc cannot run under them). */
#ifndef SYNCPOOL_BACKEND_H
#define SYNCPOOL_BACKEND_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sizeclass.h"
#include "sp_assert.h"

/* ---- The zone: where pooled objects live, and a byte per page that says their class ----------
 * Pooled objects come from a jemalloc arena of our own whose memory comes only from one address
 * range, [BE_ZONE_BASE, + be_zone_used), mapped on demand by extent hooks (backend.c).  jemalloc
 * carves its slabs from it as it does from any memory, so pages go from one class to another as
 * in jemalloc itself.  Below the range lies the class map: one byte per 4 KiB page, holding the
 * class of the objects that start on that page.  So for any pointer p, d = p - BE_ZONE_BASE <
 * be_zone_used means p is a pooled object and map[d >> 12] its class (be_zone_lookup): free()
 * needs no lookup in jemalloc.
 *
 * Why the map is exact: a slab holds objects of one class, and its pages belong to no other slab
 * while it exists.  The zone holds objects of pooled classes only, and every zone object that
 * reaches the application has had its first page's byte written with its class just before:
 * be_alloc_class writes it for the pools' misses, and the shim's other allocation paths mark any
 * zone object they get (be_zone_mark with the class of its size).  The slab then lives at least
 * as long as the object, so that byte keeps its value until the object is freed.
 *
 * The zone is made once the pools are warm (pool.h, sp_pool_zoned).  A thread with a P then binds
 * its jemalloc thread cache and arena to the zone on its next miss (be_zone_bind), so its misses
 * and the objects its pools refuse take jemalloc's fast paths; its other requests name its
 * previous arena (be_home_flags), so the zone never holds objects of other sizes.  Threads
 * without a P use the zone arena without a cache (be_zone_flags_shared), and give zone objects
 * back to it without one, so their own caches never hold zone objects.
 * be_zone_used is 0 when there is no zone (pools off, the libc backend, or the address range was
 * not available), and every pointer is then "outside". */
#define BE_ZONE_BASE  0x200000000000ul           /* 32 TiB */
#define BE_ZONE_BITS  40                         /* 1 TiB of address space for all of it */
#define BE_ZONE_LG_PAGE 12                       /* jemalloc's page (checked at start-up) */
#define BE_MAP_BASE   (BE_ZONE_BASE - (1ul << (BE_ZONE_BITS - BE_ZONE_LG_PAGE)))

#ifndef SYNCPOOL_BACKEND_LIBC
#include <jemalloc/jemalloc.h>

#define BE_ALIGN(a)   MALLOCX_ALIGN(a)
#define BE_ZERO       MALLOCX_ZERO
#define BE_NO_TCACHE  MALLOCX_TCACHE_NONE

extern __attribute__((visibility("hidden"))) _Atomic uintptr_t be_zone_used;
static inline void *be_alloc(size_t n, int flags);

/* d (an offset from BE_ZONE_BASE) below be_zone_used: a relaxed load, compared in place (gcc
 * loads an atomic into a register first, one instruction more on every free). */
static inline bool be_zone_below_used(uintptr_t d)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
    bool below;
    __asm__("cmpq %2, %1" : "=@ccb"(below) : "r"(d), "m"(be_zone_used));
    return below;
#else
    return d < atomic_load_explicit(&be_zone_used, memory_order_relaxed);
#endif
}

/* p in the zone: true, and *cls is its class (a subtract, a compare, a shift and a byte load). */
static inline bool be_zone_lookup(const void *p, unsigned *cls)
{
    uintptr_t d = (uintptr_t)p - BE_ZONE_BASE;
    if (!be_zone_below_used(d)) return false;
    *cls = *((const uint8_t *)BE_MAP_BASE + (d >> BE_ZONE_LG_PAGE));
    sp_assert(*cls < sp_nclasses);          /* the zone holds objects of pooled classes only */
    return true;
}
static inline bool be_in_zone(const void *p)
{
    return be_zone_below_used((uintptr_t)p - BE_ZONE_BASE);
}

/* Once the pools are warm, or enough objects from outside the zone were freed (pool.h,
 * sp_pool_zoned): the zone and its arena.  false: no zone. */
bool be_zone_init(void);
/* The zone's arena exists: the pools' misses come from the zone (be_zone_bind), so a pooled-size
 * object from outside it need not be pooled any more (pass.c). */
bool be_zone_serving(void);
/* "Zone flags", what callers pass to be_alloc_class/be_free_class.  0: no zone (allocate as
 * usual).  With BE_ZF_BOUND (a bit jemalloc's flags leave unused), the calling thread's jemalloc
 * arena is the zone and the rest names the arena it had before; otherwise they are jemalloc
 * flags naming the zone arena. */
#define BE_ZF_BOUND 0x80
/* For a thread with a P, on its first miss once the zone exists: binds the thread's jemalloc
 * arena (and so its thread cache's refills) to the zone, once for the thread's life.  Returns
 * its zone flags: bound, or, if binding failed, the shared flags; 0 if there is no zone (yet:
 * call again later). */
int be_zone_bind(void);
/* For a caller that must not use its thread cache for zone objects (a thread without a P): the
 * zone arena, no cache. */
int be_zone_flags_shared(void);
/* Flags for a request that must not come from the zone (not of a pooled class) on a thread with
 * zone flags zf: its previous arena if it is bound, else nothing. */
static inline int be_home_flags(int zf)
{
    int f = zf & BE_ZF_BOUND ? zf & ~BE_ZF_BOUND : 0;
    sp_assert(!(f & BE_ZF_BOUND));          /* never the zone's flag */
    return f;
}

/* Misses that skip the zone after it failed to grow (address-space limit or range full): each
 * try costs jemalloc a failing mmap, so the zone is tried again only every so often. */
extern __attribute__((visibility("hidden"))) _Atomic unsigned be_zone_backoff;
void *be_alloc_class_outside(unsigned c, size_t size, int flags, int zf, void *p);
/* p (NULL or not) in the zone: writes its page's map byte (class c) and returns true. */
static inline bool be_zone_mark(const void *p, unsigned c)
{
    if (__builtin_expect(!be_in_zone(p), 0)) return false;
    /* Why the map is exact: a zone object is of a pooled class, and c is jemalloc's for it. */
    sp_assert(c < sp_nclasses && sallocx((void *)p, 0) == sp_class_size[c]);
    uintptr_t d = (uintptr_t)p - BE_ZONE_BASE;
    /* Relaxed: the byte reaches whoever frees p through whatever hands p over.  Written only if
     * it changes, so that the map's lines stay shared between CPUs. */
    uint8_t *m = (uint8_t *)BE_MAP_BASE + (d >> BE_ZONE_LG_PAGE);
    if (__atomic_load_n(m, __ATOMIC_RELAXED) != c) __atomic_store_n(m, (uint8_t)c, __ATOMIC_RELAXED);
    return true;
}
/* A fresh object of class c (exactly `size` bytes, sp_class_size[c]), from the zone when zf says
 * so; its page's map byte is set before it is returned (see above).  If the zone cannot grow, an
 * object from jemalloc's usual arenas (outside the zone: free() then looks its size up, pass.c). */
static inline void *be_alloc_class(unsigned c, size_t size, int flags, int zf)
{
    sp_assert(c < sp_nclasses && size == sp_class_size[c]);
    if (zf == 0) return be_alloc(size, flags);
    void *p = NULL;
    if (__builtin_expect(atomic_load_explicit(&be_zone_backoff, memory_order_relaxed) == 0, 1))
        p = zf & BE_ZF_BOUND ? be_alloc(size, flags) : mallocx(size, zf | flags);
    if (__builtin_expect(!be_zone_mark(p, c), 0))
        return be_alloc_class_outside(c, size, flags, zf, p);
    return p;
}
/* Frees an object of class size `size` that a pool held (errno preserved): through the caller's
 * thread cache if it is bound to the zone, else a zone object straight to its arena (so that
 * unbound caches never hold zone objects) and any other one as usual. */
static inline void be_free_class(void *p, size_t size, int zf)
{
    unsigned c;
    /* A zone object's map byte names its class (size), as for free(). */
    sp_assert(p != NULL && (!be_zone_lookup(p, &c) || sp_class_size[c] == size));
    int e = errno;
    sdallocx(p, size, !(zf & BE_ZF_BOUND) && be_in_zone(p) ? MALLOCX_TCACHE_NONE : 0);
    errno = e;
}

/* After be_alloc_class returned NULL: purge and try the zone again, then outside it. */
void *be_alloc_class_after_oom(unsigned c, size_t size, int flags, int zf);

/* jemalloc 5.3's own malloc/free have fast paths that mallocx/dallocx lack (measured: ~80 vs
 * ~290 instructions per pair).  Our malloc/free shadow them, so they are looked up in
 * libjemalloc.so.2 itself at start-up (be_init); until then the *allocx calls serve. */
extern void *(*be_je_malloc)(size_t);
extern void (*be_je_free)(void *);

/* A batch for the pools' thread caches (a flush at the cap): n objects freed as be_free_class
 * would, errno preserved once for all.  A bound thread's calls are jemalloc's flag-less fast
 * path, so what each object costs is what it costs jemalloc's own callers. */
static inline void be_free_class_n(void *const *v, uint32_t n, size_t size, int zf)
{
    int e = errno;
    if (zf & BE_ZF_BOUND)
        for (uint32_t i = 0; i < n; i++) sdallocx(v[i], size, 0);
    else
        for (uint32_t i = 0; i < n; i++)
            sdallocx(v[i], size, be_in_zone(v[i]) ? MALLOCX_TCACHE_NONE : 0);
    errno = e;
}

/* size 0 is undefined for the *allocx family: callers pass >= 1. */
static inline void *be_alloc(size_t n, int flags)
{
    sp_assert(n >= 1);
    if (flags == 0 && be_je_malloc) return be_je_malloc(n);
    return mallocx(n, flags);
}
static inline void *be_realloc(void *p, size_t n, int flags)
{
    sp_assert(p != NULL && n >= 1);
    return rallocx(p, n, flags);
}
static inline void be_free(void *p)
{
    if (be_je_free) be_je_free(p);
    else dallocx(p, 0);
}
/* Our own bookkeeping (generations, pblocks, rings, P chunks): never through the thread cache
 * (a fill from arena 0 would hand a bound thread's next misses objects outside the zone), and
 * never from the zone, whatever the calling thread's arena. */
static inline void *be_alloc_internal(size_t n, int flags)
{
    sp_assert(n >= 1);
    return mallocx(n, flags | BE_NO_TCACHE | MALLOCX_ARENA(0));   /* never from the zone */
}
static inline void be_free_internal(void *p)
{
    sp_assert(p != NULL);
    dallocx(p, BE_NO_TCACHE);
}
/* sdallocx has a fast path when flags == 0. */
static inline void be_free_sized(void *p, size_t n, int flags)
{
    sp_assert(p != NULL && n >= 1);
    sdallocx(p, n, flags);
}
static inline size_t be_usable(const void *p) { return sallocx(p, 0); }
static inline size_t be_class_size(size_t n) { return nallocx(n, 0); }
/* What jemalloc hands out for n bytes at this alignment.  When that is a small class, every
 * object of the class is so aligned (its slabs are page-aligned and hold whole objects of that
 * size), so the pool of that class may serve the request. */
static inline size_t be_class_size_aligned(size_t n, size_t align)
{
    sp_assert(n >= 1 && align != 0 && (align & (align - 1)) == 0);
    return nallocx(n, MALLOCX_ALIGN(align));
}
/* Initialises the backend (it registers its fork handlers then) and finds its fast paths. */
void be_init(void);
/* Fork: prepare takes our lock of the backend that a thread holds outside jemalloc (arena
 * creation and settings); parent releases it; in the child both our locks are made anew.  The
 * zone's growth lock is not taken: jemalloc calls the zone's extent hooks only under its own
 * mutexes, which its prefork handler (it runs after ours) takes, so no thread is inside a hook
 * when the process forks, and taking it before them could deadlock with a thread in a hook. */
void be_fork_prepare(void);
void be_fork_parent(void);
void be_fork_child(void);
/* Hands jemalloc's purging of unused dirty pages over to the caller (the rotation thread),
 * which then calls be_purge() on its own schedule: the arenas other than the zone never purge
 * by themselves, the zone keeps jemalloc's decay.  Returns false if the user's MALLOC_CONF sets a
 * decay time (theirs wins) or jemalloc refused. */
bool be_take_over_purging(void);
/* jemalloc 5.3's opt.dirty_decay_ms. */
#define BE_JEMALLOC_DIRTY_DECAY_MS 10000
/* The rotation thread's purge tick: the zone's dirty pages all go back to the kernel if `zone`,
 * else its decay runs (pages unused for longer than the decay time go back); if `arenas`, every
 * other arena's dirty pages go back too. */
void be_purge(bool zone, bool arenas);
/* Gives purging back to jemalloc (its default decay times), e.g. when no thread can do it. */
void be_give_back_purging(void);
/* For a background thread of ours: sets up its backend state now, bound to arena 0, so that it
 * never has to create an arena later (jemalloc 5.3 crashes doing that once the address space is
 * exhausted). */
void be_thread_init(void);
/* After an allocation failed: when we hold jemalloc's purging, memory freed since the last purge
 * may sit in dirty extents that jemalloc cannot reuse for this request under an address-space
 * limit; purge now and try once more.  NULL if that fails too (or there is nothing to purge). */
void *be_alloc_after_oom(size_t n, int flags);
void *be_realloc_after_oom(void *p, size_t n, int flags);

#else /* SYNCPOOL_BACKEND_LIBC: sanitizer builds of the pool core */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define BE_ALIGN(a)   ((int)(a) & 0xfffff)
#define BE_ZERO       0x100000
#define BE_NO_TCACHE  0

size_t be_libc_class_size(size_t n); /* jemalloc's small-class rounding, by formula (sizeclass.c) */

static inline void *be_alloc(size_t n, int flags)
{
    size_t a = (size_t)(flags & 0xfffff);
    sp_assert(n >= 1 && (a & (a - 1)) == 0);  /* aligned_alloc: a power of two */
    void *p = a > 16 ? aligned_alloc(a, (n + a - 1) & ~(a - 1)) : malloc(n);
    if (p && (flags & BE_ZERO)) memset(p, 0, n);
    return p;
}
static inline void *be_realloc(void *p, size_t n, int flags)
{
    (void)flags;
    sp_assert(p != NULL && n >= 1);
    return realloc(p, n);
}
static inline void be_free(void *p) { free(p); }
static inline void be_free_sized(void *p, size_t n, int flags)
{
    (void)n; (void)flags;
    sp_assert(p != NULL && n >= 1 && malloc_usable_size(p) >= n);
    free(p);
}
static inline void *be_alloc_internal(size_t n, int flags) { return be_alloc(n, flags); }
static inline void be_free_internal(void *p)
{
    sp_assert(p != NULL);
    free(p);
}
/* No zone: every pointer is outside. */
static inline bool be_zone_lookup(const void *p, unsigned *cls)
{
    (void)p; (void)cls;
    return false;
}
static inline bool be_in_zone(const void *p) { (void)p; return false; }
static inline bool be_zone_mark(const void *p, unsigned c) { (void)p; (void)c; return false; }
static inline bool be_zone_init(void) { return false; }
static inline bool be_zone_serving(void) { return false; }
#define BE_ZF_BOUND 0x80
static inline int be_zone_bind(void) { return 0; }
static inline int be_zone_flags_shared(void) { return 0; }
static inline int be_home_flags(int zf) { (void)zf; return 0; }
static inline void *be_alloc_class(unsigned c, size_t size, int flags, int zf)
{
    (void)c; (void)zf;
    sp_assert(c < sp_nclasses && size == sp_class_size[c]);
    return be_alloc(size, flags);
}
static inline void be_free_class(void *p, size_t size, int zf)
{
    (void)size; (void)zf;
    /* An object of the class (size): the pools key on the usable size here. */
    sp_assert(p != NULL && malloc_usable_size(p) >= size);
    int e = errno;
    free(p);
    errno = e;
}
static inline void *be_alloc_class_after_oom(unsigned c, size_t size, int flags, int zf)
{
    (void)c; (void)size; (void)flags; (void)zf;
    return NULL;
}
static inline void be_free_class_n(void *const *v, uint32_t n, size_t size, int zf)
{
    for (uint32_t i = 0; i < n; i++) be_free_class(v[i], size, zf);
}
static inline size_t be_usable(const void *p) { return malloc_usable_size((void *)p); }
static inline size_t be_class_size(size_t n) { return be_libc_class_size(n); }
/* As jemalloc: the smallest class of at least n bytes that is a multiple of align. */
static inline size_t be_class_size_aligned(size_t n, size_t align)
{
    size_t u = be_libc_class_size(n);
    while (u % align) u = be_libc_class_size(u + 1);
    return u;
}
static inline void be_init(void) {}  /* nothing to set up */
static inline void be_fork_prepare(void) {}
static inline void be_fork_parent(void) {}
static inline void be_fork_child(void) {}
static inline bool be_take_over_purging(void) { return false; }
static inline void be_purge(bool zone, bool arenas) { (void)zone; (void)arenas; }
static inline void be_give_back_purging(void) {}
static inline void be_thread_init(void) {}
static inline void *be_alloc_after_oom(size_t n, int flags) { (void)n; (void)flags; return NULL; }
static inline void *be_realloc_after_oom(void *p, size_t n, int flags)
{
    (void)p; (void)n; (void)flags;
    return NULL;
}
#endif

/* Frees p (size 0: unknown) without disturbing errno: free() must preserve it, and the backend
 * may madvise or munmap on the way. */
static inline void be_free_keep_errno(void *p, size_t size)
{
    sp_assert(p != NULL);
    int e = errno;
    if (size) be_free_sized(p, size, 0);
    else be_free(p);
    errno = e;
}
/* Frees a pooled-size object from outside the zone to its arena, not into the calling thread's
 * cache (a bound thread's misses would get it back from there), errno preserved. */
static inline void be_free_outside(void *p, size_t size)
{
    sp_assert(p != NULL && !be_in_zone(p));
    int e = errno;
    be_free_sized(p, size, BE_NO_TCACHE);
    errno = e;
}

#endif
