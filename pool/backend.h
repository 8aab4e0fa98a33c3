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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- The zone: pooled objects carry their class in their address --------------------------
 * Each pooled class c gets a jemalloc arena of its own whose memory comes only from the range
 * [be_zone_base + (c << BE_ZONE_SHIFT), + 2^BE_ZONE_SHIFT) (extent hooks, backend.c).  So for any
 * pointer p, d = p - be_zone_base < be_zone_span means p is an object of class d >> BE_ZONE_SHIFT:
 * free() needs no lookup in jemalloc.  be_zone_span is 0 when there is no zone (pools off, the
 * libc backend, or the address range was not available), and every pointer is then "outside". */
#define BE_ZONE_SHIFT 38              /* 256 GiB of address space per class */
#define BE_ZONE_MAX_CLASSES 40

#ifndef SYNCPOOL_BACKEND_LIBC
#include <jemalloc/jemalloc.h>

#define BE_ALIGN(a)   MALLOCX_ALIGN(a)
#define BE_ZERO       MALLOCX_ZERO
#define BE_NO_TCACHE  MALLOCX_TCACHE_NONE

extern __attribute__((visibility("hidden"))) uintptr_t be_zone_base, be_zone_span;
static inline void *be_alloc(size_t n, int flags);
/* Per class: MALLOCX_ARENA(its arena) once created, 0 before, -1 if it cannot have one. */
extern __attribute__((visibility("hidden"))) int be_class_flags[BE_ZONE_MAX_CLASSES];

/* Start-up: the zone for classes of these sizes (size[c] for c < n).  false: no zone. */
bool be_zone_init(const uint32_t *size, unsigned n);
/* Gives class c its arena in the zone, if the budget allows (later calls return at once).  Each
 * arena costs ~88 KiB of jemalloc metadata, so the shim asks only for classes in steady use, and
 * beyond the first few the total stays under 1/16 of what jemalloc has resident.  false: not
 * now (ask again later). */
bool be_class_arena_create(unsigned c);
void *be_alloc_class_unstray(unsigned c, size_t size, int flags, void *p);
/* A fresh object of class c (exactly `size` bytes, sp_class_size[c]): from its arena in the
 * zone, or from jemalloc's usual arenas while the class has none. */
static inline void *be_alloc_class(unsigned c, size_t size, int flags)
{
    int f = __atomic_load_n(&be_class_flags[c], __ATOMIC_ACQUIRE);
    if (f <= 0) return be_alloc(size, flags);
    void *p = mallocx(size, f | flags);
    /* jemalloc's thread cache serves a bin before it asks the arena we named, and it may still
     * hold objects of this size from arena 0, cached before this arena existed.  NULL: the
     * class's range cannot grow (RLIMIT_AS, or the range is full). */
    if (__builtin_expect(!p || (((uintptr_t)p - be_zone_base) >> BE_ZONE_SHIFT) != c, 0))
        p = be_alloc_class_unstray(c, size, f | flags, p);
    return p;
}
static inline bool be_class_zoned(unsigned c)
{
    return __atomic_load_n(&be_class_flags[c], __ATOMIC_RELAXED) > 0;
}
void *be_alloc_class_after_oom(unsigned c, size_t size, int flags);

/* jemalloc 5.3's own malloc/free have fast paths that mallocx/dallocx lack (measured: ~80 vs
 * ~290 instructions per pair).  Our malloc/free shadow them, so they are looked up in
 * libjemalloc.so.2 itself at start-up (be_init); until then the *allocx calls serve. */
extern void *(*be_je_malloc)(size_t);
extern void (*be_je_free)(void *);

/* size 0 is undefined for the *allocx family: callers pass >= 1. */
static inline void *be_alloc(size_t n, int flags)
{
    if (flags == 0 && be_je_malloc) return be_je_malloc(n);
    return mallocx(n, flags);
}
static inline void *be_realloc(void *p, size_t n, int flags) { return rallocx(p, n, flags); }
static inline void be_free(void *p)
{
    if (be_je_free) be_je_free(p);
    else dallocx(p, 0);
}
/* Our own bookkeeping (generations, pblocks, rings, P chunks): never through the thread cache,
 * so its bins hold only objects of the zone (a fill from arena 0 would hand the next pool misses
 * objects outside the zone). */
static inline void *be_alloc_internal(size_t n, int flags) { return mallocx(n, flags | BE_NO_TCACHE); }
static inline void be_free_internal(void *p) { dallocx(p, BE_NO_TCACHE); }
/* sdallocx has a fast path when flags == 0. */
static inline void be_free_sized(void *p, size_t n, int flags) { sdallocx(p, n, flags); }
static inline size_t be_usable(const void *p) { return sallocx(p, 0); }
static inline size_t be_class_size(size_t n) { return nallocx(n, 0); }
/* What jemalloc hands out for n bytes at this alignment.  When that is a small class, every
 * object of the class is so aligned (its slabs are page-aligned and hold whole objects of that
 * size), so the pool of that class may serve the request. */
static inline size_t be_class_size_aligned(size_t n, size_t align)
{
    return nallocx(n, MALLOCX_ALIGN(align));
}
/* Initialises the backend (it registers its fork handlers then) and finds its fast paths. */
void be_init(void);
/* In a forked child: our own lock of the backend (arena creation) is fresh again. */
void be_fork_child(void);
/* Hands jemalloc's purging of unused dirty pages over to the caller (the rotation thread), which
 * then calls be_purge() on its own schedule.  Returns false if the user's MALLOC_CONF sets a
 * decay time (theirs wins) or jemalloc refused. */
bool be_take_over_purging(void);
void be_purge(void);
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
    void *p = a > 16 ? aligned_alloc(a, (n + a - 1) & ~(a - 1)) : malloc(n);
    if (p && (flags & BE_ZERO)) memset(p, 0, n);
    return p;
}
static inline void *be_realloc(void *p, size_t n, int flags) { (void)flags; return realloc(p, n); }
static inline void be_free(void *p) { free(p); }
static inline void be_free_sized(void *p, size_t n, int flags) { (void)n; (void)flags; free(p); }
static inline void *be_alloc_internal(size_t n, int flags) { return be_alloc(n, flags); }
static inline void be_free_internal(void *p) { free(p); }
static const uintptr_t be_zone_base = 0, be_zone_span = 0;
static inline bool be_zone_init(const uint32_t *size, unsigned n) { (void)size; (void)n; return false; }
static inline void *be_alloc_class(unsigned c, size_t size, int flags)
{
    (void)c;
    return be_alloc(size, flags);
}
static inline bool be_class_zoned(unsigned c) { (void)c; return false; }
static inline bool be_class_arena_create(unsigned c) { (void)c; return false; }
static inline void *be_alloc_class_after_oom(unsigned c, size_t size, int flags)
{
    (void)c; (void)size; (void)flags;
    return NULL;
}
static inline size_t be_usable(const void *p) { return malloc_usable_size((void *)p); }
static inline size_t be_class_size(size_t n) { return be_libc_class_size(n); }
static inline void be_init(void) {}  /* nothing to set up */
static inline void be_fork_child(void) {}
static inline bool be_take_over_purging(void) { return false; }
static inline void be_purge(void) {}
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
    int e = errno;
    if (size) be_free_sized(p, size, 0);
    else be_free(p);
    errno = e;
}

#endif
