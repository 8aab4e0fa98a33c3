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

#ifndef SYNCPOOL_BACKEND_LIBC
#include <jemalloc/jemalloc.h>

#define BE_ALIGN(a)   MALLOCX_ALIGN(a)
#define BE_ZERO       MALLOCX_ZERO
#define BE_NO_TCACHE  MALLOCX_TCACHE_NONE

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
/* sdallocx has a fast path when flags == 0. */
static inline void be_free_sized(void *p, size_t n, int flags) { sdallocx(p, n, flags); }
static inline size_t be_usable(const void *p) { return sallocx(p, 0); }
static inline size_t be_class_size(size_t n) { return nallocx(n, 0); }
/* Initialises the backend (it registers its fork handlers then) and finds its fast paths. */
void be_init(void);
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
static inline size_t be_usable(const void *p) { return malloc_usable_size((void *)p); }
static inline size_t be_class_size(size_t n) { return be_libc_class_size(n); }
static inline void be_init(void) {}  /* nothing to set up */
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
