/* backend.c — start-up of the backend (see backend.h). */
#include "backend.h"

#ifndef SYNCPOOL_BACKEND_LIBC
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* jemalloc reads this weak symbol at its initialisation (MALLOC_CONF still overrides it).
 * oversize_threshold:0 turns off the dedicated arena for requests of 8 MiB and more, which purges
 * every freed block at once (decay 0), so that a program that reuses large blocks page-faults
 * them in again on every allocation (measured: 8 MiB blocks, ~6 ms per malloc+touch+free against
 * 0.08 ms with glibc; docs/performance.md). */
__attribute__((visibility("default"))) const char *malloc_conf = "oversize_threshold:0";
void *(*be_je_malloc)(size_t);
void (*be_je_free)(void *);
static bool be_purging_ours;

void be_init(void)
{
    const char *v;
    size_t len = sizeof(v);
    mallctl("version", &v, &len, NULL, 0);     /* forces jemalloc's initialisation */
    /* RTLD_NOLOAD: the library is already mapped (we link it); this only returns its handle,
     * and dlsym on the handle finds jemalloc's own definitions, not ours. */
    void *h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
    if (!h) return;
    void *m = dlsym(h, "malloc"), *f = dlsym(h, "free");
    if (m && f) {
        be_je_free = (void (*)(void *))f;
        be_je_malloc = (void *(*)(size_t))m;
    }
}

/* ---- the zone ------------------------------------------------------------------------------
 * Where the zone goes: far below where the kernel places mappings (top-down from just under
 * 0x7fff_ffff_f000) and far above where brk heaps and PIE executables start (0x55..., 0x4000_00),
 * so in practice nothing else is ever mapped there.  Nothing is reserved up front: each class's
 * range is mapped piecewise as its arena grows, with MAP_FIXED_NOREPLACE, so RLIMIT_AS keeps
 * counting only what is used, and a range that someone else already occupies makes the mapping
 * fail (the arena then reports out of memory for that request, and jemalloc falls back) instead
 * of clobbering anything. */
#define BE_ZONE_BASE 0x200000000000ul        /* 32 TiB */

uintptr_t be_zone_base, be_zone_span;
int be_class_flags[BE_ZONE_MAX_CLASSES];
static uint32_t be_zone_size[BE_ZONE_MAX_CLASSES];
static unsigned be_zone_nclasses;
static _Atomic uintptr_t be_zone_next[BE_ZONE_MAX_CLASSES];   /* bump pointer per range */
static extent_hooks_t be_zone_hooks[BE_ZONE_MAX_CLASSES];      /* one per class: &hooks[c] says c */
static pthread_mutex_t be_zone_lock = PTHREAD_MUTEX_INITIALIZER;

static void *be_zone_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment,
                           bool *zero, bool *commit, unsigned arena)
{
    (void)arena;
    if (new_addr) return NULL;                 /* growing in place: not offered */
    unsigned c = (unsigned)(h - be_zone_hooks);
    uintptr_t end = be_zone_base + ((uintptr_t)(c + 1) << BE_ZONE_SHIFT);
    uintptr_t cur = atomic_load_explicit(&be_zone_next[c], memory_order_relaxed), start;
    do {
        start = (cur + alignment - 1) & ~(uintptr_t)(alignment - 1);
        if (start + size > end || start + size < start) return NULL;   /* the range is full */
    } while (!atomic_compare_exchange_weak_explicit(&be_zone_next[c], &cur, start + size,
                                                    memory_order_relaxed, memory_order_relaxed));
    void *p = mmap((void *)start, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) return NULL;          /* taken by someone else, or RLIMIT_AS */
    if (p != (void *)start) {                  /* a kernel before 4.17 took it as a hint */
        munmap(p, size);
        return NULL;
    }
    *zero = true;
    *commit = true;
    return p;
}

/* Extents are never unmapped (dalloc declines: jemalloc keeps them as "retained" and reuses
 * them); unused pages are purged in place. */
static bool be_zone_dalloc(extent_hooks_t *h, void *a, size_t s, bool c, unsigned ai)
{
    (void)h; (void)a; (void)s; (void)c; (void)ai;
    return true;
}
static void be_zone_destroy(extent_hooks_t *h, void *a, size_t s, bool c, unsigned ai)
{
    (void)h; (void)c; (void)ai;
    munmap(a, s);
}
static bool be_zone_commit(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l, unsigned ai)
{
    (void)h; (void)a; (void)s; (void)o; (void)l; (void)ai;
    return false;                              /* always committed */
}
static bool be_zone_decommit(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l, unsigned ai)
{
    (void)h; (void)a; (void)s; (void)o; (void)l; (void)ai;
    return true;                               /* declined: jemalloc purges instead */
}
static bool be_zone_purge_lazy(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l,
                               unsigned ai)
{
    (void)h; (void)s; (void)ai;
    return madvise((char *)a + o, l, MADV_FREE) != 0;
}
static bool be_zone_purge_forced(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l,
                                 unsigned ai)
{
    (void)h; (void)s; (void)ai;
    return madvise((char *)a + o, l, MADV_DONTNEED) != 0;
}
static bool be_zone_split(extent_hooks_t *h, void *a, size_t s, size_t sa, size_t sb, bool c,
                          unsigned ai)
{
    (void)h; (void)a; (void)s; (void)sa; (void)sb; (void)c; (void)ai;
    return false;                              /* allowed: all of it is plain anonymous memory */
}
static bool be_zone_merge(extent_hooks_t *h, void *a, size_t sa, void *b, size_t sb, bool c,
                          unsigned ai)
{
    (void)h; (void)a; (void)sa; (void)b; (void)sb; (void)c; (void)ai;
    return false;                              /* allowed: extents of one arena share a range */
}

bool be_zone_init(const uint32_t *size, unsigned n)
{
    if (n > BE_ZONE_MAX_CLASSES) return false;
    for (unsigned c = 0; c < n; c++) {
        be_zone_size[c] = size[c];
        atomic_store_explicit(&be_zone_next[c], BE_ZONE_BASE + ((uintptr_t)c << BE_ZONE_SHIFT),
                              memory_order_relaxed);
        be_zone_hooks[c] = (extent_hooks_t){be_zone_alloc,        be_zone_dalloc,
                                            be_zone_destroy,      be_zone_commit,
                                            be_zone_decommit,     be_zone_purge_lazy,
                                            be_zone_purge_forced, be_zone_split,
                                            be_zone_merge};
    }
    be_zone_nclasses = n;
    be_zone_base = BE_ZONE_BASE;
    be_zone_span = (uintptr_t)n << BE_ZONE_SHIFT;
    return true;
}

#define BE_ARENA_COST   (88u << 10)   /* measured: RSS per arenas.create */
#define BE_ARENAS_FREE  16            /* arenas allowed whatever the process's size */
static unsigned be_zone_narenas;      /* under be_zone_lock */

/* Beyond the first few, arenas (their metadata) must stay under 1/16 of what the application
 * has allocated: jemalloc's stats.resident would be the natural measure, but it counts dirty
 * pages that are not resident and overstates a small process several times (12 MB for a 10 MB
 * RSS), so the arenas' cost is weighed against live data instead. */
static bool be_zone_affordable(void)
{
    if (be_zone_narenas < BE_ARENAS_FREE) return true;
    uint64_t epoch = 1;
    size_t len = sizeof epoch;
    mallctl("epoch", &epoch, &len, &epoch, len);   /* refreshes the statistics */
    size_t allocated = 0;
    len = sizeof allocated;
    if (mallctl("stats.allocated", &allocated, &len, NULL, 0) != 0) return true;
    return (size_t)(be_zone_narenas + 1) * BE_ARENA_COST <= allocated / 16;
}

bool be_class_arena_create(unsigned c)
{
    if (c >= be_zone_nclasses) return false;
    if (__atomic_load_n(&be_class_flags[c], __ATOMIC_ACQUIRE) != 0) return true;
    pthread_mutex_lock(&be_zone_lock);
    int f = be_class_flags[c];
    if (f == 0 && !be_zone_affordable()) {
        pthread_mutex_unlock(&be_zone_lock);
        return false;
    }
    if (f == 0) {
        unsigned ind;
        size_t len = sizeof ind;
        extent_hooks_t *hooks = &be_zone_hooks[c];
        /* The arena's own metadata comes through the hooks too, so it lands in the range as
         * well; it is never handed out, so it never reaches free(). */
        f = mallctl("arenas.create", &ind, &len, &hooks, sizeof hooks) == 0 ? MALLOCX_ARENA(ind)
                                                                           : -1;
        if (f > 0) be_zone_narenas++;
        __atomic_store_n(&be_class_flags[c], f, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&be_zone_lock);
    return true;
}

/* Hands the thread cache's strays back to their arena, bypassing the cache, until the arena of
 * class c answers (a one-off per thread and class: the bin does not get strays again, see
 * be_alloc_internal and the shim's free of strays).  If the class's arena cannot grow, an object
 * from jemalloc's usual arenas will do (it is a stray too, and goes back the same way when it is
 * freed): under an address-space limit the memory freed there is what is left to reuse. */
void *be_alloc_class_unstray(unsigned c, size_t size, int flags, void *p)
{
    for (int i = 0; i < 4096 && p && (((uintptr_t)p - be_zone_base) >> BE_ZONE_SHIFT) != c; i++) {
        dallocx(p, MALLOCX_TCACHE_NONE);
        p = mallocx(size, flags);
    }
    if (!p) p = mallocx(size, (flags & ((1 << 20) - 1)) | MALLOCX_TCACHE_NONE);  /* no arena bits */
    return p;
}

void be_fork_child(void) { pthread_mutex_init(&be_zone_lock, NULL); }

void *be_alloc_class_after_oom(unsigned c, size_t size, int flags)
{
    if (!be_purging_ours) return NULL;
    be_purge();
    return be_alloc_class(c, size, flags);
}

/* Sets the dirty and muzzy decay times of all arenas, present and future. */
static bool be_set_decay(ssize_t dirty, ssize_t muzzy)
{
    if (mallctl("arenas.dirty_decay_ms", NULL, NULL, &dirty, sizeof dirty) != 0) return false;
    mallctl("arenas.muzzy_decay_ms", NULL, NULL, &muzzy, sizeof muzzy);
    unsigned narenas = 0;
    size_t len = sizeof narenas;
    mallctl("arenas.narenas", &narenas, &len, NULL, 0);
    for (unsigned i = 0; i < narenas; i++) {   /* arenas that exist already */
        char name[64];
        snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", i);
        mallctl(name, NULL, NULL, &dirty, sizeof dirty);
        snprintf(name, sizeof name, "arena.%u.muzzy_decay_ms", i);
        mallctl(name, NULL, NULL, &muzzy, sizeof muzzy);
    }
    return true;
}

bool be_take_over_purging(void)
{
    const char *user = getenv("MALLOC_CONF");
    if (user && strstr(user, "decay_ms")) return false;
    be_purging_ours = true;
    /* jemalloc's decay purges a freed extent at once when it was dirtied within the current decay
     * epoch (a block freed and reallocated in a loop faults in again every time).  -1 = never
     * purge on its own; the rotation thread purges instead (be_purge). */
    return be_set_decay(-1, -1);
}

void be_give_back_purging(void)
{
    be_purging_ours = false;
    be_set_decay(10000, 0);   /* jemalloc 5.3's defaults (opt.dirty_decay_ms, opt.muzzy_decay_ms) */
}

void be_thread_init(void)
{
    unsigned zero = 0;
    mallctl("thread.arena", NULL, NULL, &zero, sizeof zero);
}

void be_purge(void)
{
    char name[64];
    snprintf(name, sizeof name, "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
    mallctl(name, NULL, NULL, NULL, 0);
}

void *be_alloc_after_oom(size_t n, int flags)
{
    if (!be_purging_ours) return NULL;
    be_purge();
    return mallocx(n, flags);
}

void *be_realloc_after_oom(void *p, size_t n, int flags)
{
    if (!be_purging_ours) return NULL;
    be_purge();
    return rallocx(p, n, flags);
}
#endif
