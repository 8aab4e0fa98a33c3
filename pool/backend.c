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
/* The zone's dirty decay time while we purge (be_take_over_purging), -1 otherwise; read and
 * written under be_zone_arena_lock. */
static ssize_t be_zone_decay_ms = -1;
static void be_zone_set_decay(unsigned ind);
static int be_zone_arena_flags(void);

void be_init(void)
{
    /* Forces jemalloc's initialisation (and so its fork handlers).  Not through mallctl: its
     * first call allocates and clears jemalloc's statistics tables, 150 KB of resident memory.
     * With pools on, the zone and the purging settings need mallctl anyway; without them
     * (SYNCPOOL_DISABLE=1) the process now costs what jemalloc alone does. */
    void *p = mallocx(1, 0);
    if (p) dallocx(p, 0);
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
 * so in practice nothing else is ever mapped there.  Nothing is reserved up front: the range and
 * its map grow piecewise as the zone arena asks for memory, with MAP_FIXED_NOREPLACE, so
 * RLIMIT_AS keeps counting only what is used, and a range that someone else already occupies
 * makes the mapping fail (the arena then reports out of memory for that request, and the caller
 * falls back to jemalloc's usual arenas) instead of clobbering anything. */
#define BE_ZONE_END (BE_ZONE_BASE + (1ul << BE_ZONE_BITS))

_Atomic uintptr_t be_zone_used;        /* bytes of the range handed to the arenas (monotonic) */
/* Set once by be_zone_init (release: be_zone_hooks is complete), read by the binding calls. */
static _Atomic bool be_zone_on;
static uintptr_t be_zone_next = BE_ZONE_BASE;   /* bump pointer, under be_zone_grow_lock */
static uintptr_t be_map_mapped;                 /* bytes of the map mapped so far, same lock */
static pthread_mutex_t be_zone_grow_lock = PTHREAD_MUTEX_INITIALIZER;
/* The zone arena, made by be_zone_init (or, if that failed, a later miss's retry); a separate
 * lock, since making it calls the hooks. */
static _Atomic unsigned be_zone_arena;          /* arena index + 1; 0: not yet */
static pthread_mutex_t be_zone_arena_lock = PTHREAD_MUTEX_INITIALIZER;
static extent_hooks_t be_zone_hooks;

static void *be_map_fixed(uintptr_t start, size_t size)
{
    void *p = mmap((void *)start, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) return NULL;          /* taken by someone else, or RLIMIT_AS */
    if (p != (void *)start) {                  /* a kernel before 4.17 took it as a hint */
        munmap(p, size);
        return NULL;
    }
    return p;
}

static void *be_zone_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment,
                           bool *zero, bool *commit, unsigned arena)
{
    (void)h; (void)arena;
    if (new_addr) return NULL;                 /* growing in place: not offered */
    void *p = NULL;
    sp_assert(alignment != 0 && (alignment & (alignment - 1)) == 0);
    pthread_mutex_lock(&be_zone_grow_lock);
    uintptr_t start = (be_zone_next + alignment - 1) & ~(uintptr_t)(alignment - 1);
    if (start >= be_zone_next && start + size > start && start + size <= BE_ZONE_END) {
        /* The map first: a byte for each page up to the new end, whole pages of it. */
        uintptr_t used = start + size - BE_ZONE_BASE;
        size_t map_need = ((used >> BE_ZONE_LG_PAGE) + 4095) & ~(size_t)4095;
        if (map_need <= be_map_mapped ||
            be_map_fixed(BE_MAP_BASE + be_map_mapped, map_need - be_map_mapped)) {
            if (map_need > be_map_mapped) be_map_mapped = map_need;
            p = be_map_fixed(start, size);
        }
        if (p) {
            /* be_zone_used is monotonic, and the map covers every page below it. */
            sp_assert(p == (void *)start &&
                      used >= atomic_load_explicit(&be_zone_used, memory_order_relaxed) &&
                      be_map_mapped << BE_ZONE_LG_PAGE >= used);
            be_zone_next = start + size;
            /* Before jemalloc hands out anything from it: whoever gets an object of this extent
             * gets it through jemalloc's own synchronisation, after this store. */
            atomic_store_explicit(&be_zone_used, used, memory_order_release);
        }
    }
    pthread_mutex_unlock(&be_zone_grow_lock);
    if (!p) return NULL;
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
    (void)h; (void)a; (void)s; (void)c; (void)ai;   /* keep the range: be_zone_used never shrinks */
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
    return false;                              /* allowed: one range, one kind of memory */
}

bool be_zone_init(void)
{
    size_t page = 0, len = sizeof page;
    if (mallctl("arenas.page", &page, &len, NULL, 0) != 0 || page != (1u << BE_ZONE_LG_PAGE))
        return false;                          /* the map has a byte per 4 KiB page */
    be_zone_hooks = (extent_hooks_t){be_zone_alloc,      be_zone_dalloc,       be_zone_destroy,
                                     be_zone_commit,     be_zone_decommit,     be_zone_purge_lazy,
                                     be_zone_purge_forced, be_zone_split,      be_zone_merge};
    atomic_store_explicit(&be_zone_on, true, memory_order_release);
    /* The arena now, not on a thread's next miss: until it exists, free() keeps pooling the
     * objects from outside the zone, and a program whose Gets all hit would never miss. */
    return be_zone_arena_flags() != 0;
}

bool be_zone_serving(void) { return atomic_load_explicit(&be_zone_arena, memory_order_acquire); }

/* The zone arena (made now if need be): MALLOCX_ARENA flags, or 0 if it cannot be made.  One
 * arena, as jemalloc's own single-arena setting: its pages go from class to class and from thread
 * to thread (separate arenas keep their free extents to themselves, which under an
 * address-space limit leaves one unable to grow while another sits on free memory); the P
 * caches in front of it batch its bin locks.  It costs ~88 KiB of jemalloc metadata, taken from
 * the zone too through the hooks (never handed out, so never seen by free()). */
static _Atomic unsigned be_zone_arena_retry;   /* calls to skip after arenas.create failed */

static int be_zone_arena_flags(void)
{
    unsigned a = atomic_load_explicit(&be_zone_arena, memory_order_acquire);
    if (a == 0) {
        /* Making the arena failed (its range taken by someone else, or no memory): each try
         * costs a failing mmap, and the caller asks on every miss; try again every 4096th. */
        unsigned r = atomic_load_explicit(&be_zone_arena_retry, memory_order_relaxed);
        if (r != 0) {
            atomic_store_explicit(&be_zone_arena_retry, r - 1, memory_order_relaxed);  /* approximate */
            return 0;
        }
        pthread_mutex_lock(&be_zone_arena_lock);
        a = atomic_load_explicit(&be_zone_arena, memory_order_relaxed);
        if (a == 0) {
            unsigned ind;
            size_t len = sizeof ind;
            extent_hooks_t *hooks = &be_zone_hooks;
            if (mallctl("arenas.create", &ind, &len, &hooks, sizeof hooks) == 0) {
                be_zone_set_decay(ind);
                a = ind + 1;
                atomic_store_explicit(&be_zone_arena, a, memory_order_release);
            } else {
                atomic_store_explicit(&be_zone_arena_retry, 4096, memory_order_relaxed);
            }
        }
        pthread_mutex_unlock(&be_zone_arena_lock);
        if (a == 0) return 0;
    }
    return MALLOCX_ARENA(a - 1);
}

/* thread.arena's and thread.tcache.flush's MIBs, looked up once (under the arena lock). */
static size_t be_thread_arena_mib[2], be_thread_flush_mib[3];
static bool be_thread_mibs_ok;

int be_zone_bind(void)
{
    if (!atomic_load_explicit(&be_zone_on, memory_order_acquire)) return 0;
    int f = be_zone_arena_flags();
    if (!f) return 0;
    unsigned zone = (unsigned)(f >> 20) - 1, old = 0;    /* MALLOCX_ARENA(a) = (a + 1) << 20 */
    sp_assert(MALLOCX_ARENA(zone) == f);
    size_t len = sizeof old, miblen = 2, flushlen = 3;
    pthread_mutex_lock(&be_zone_arena_lock);
    if (!be_thread_mibs_ok)
        be_thread_mibs_ok =
            mallctlnametomib("thread.arena", be_thread_arena_mib, &miblen) == 0 &&
            mallctlnametomib("thread.tcache.flush", be_thread_flush_mib, &flushlen) == 0;
    pthread_mutex_unlock(&be_zone_arena_lock);
    /* Reads the thread's arena (jemalloc picks one now if it had none) and moves the thread to
     * the zone's. */
    if (!be_thread_mibs_ok ||
        mallctlbymib(be_thread_arena_mib, 2, &old, &len, &zone, sizeof zone) != 0)
        return f | MALLOCX_TCACHE_NONE;                 /* not bound: no cache for zone objects */
    /* The thread's cache still holds objects from its old arena, which its next misses would get
     * (outside the zone, they would then circulate in the pools as objects that free() must ask
     * jemalloc about): back to their arena with them, so the bins refill from the zone.  (This
     * flushes the thread's own cache in place; an explicit cache's "tcache.flush" is what
     * jemalloc 5.3 re-creates and can abort on, reliability.md.) */
    mallctlbymib(be_thread_flush_mib, 3, NULL, NULL, NULL, 0);
    /* (old == zone cannot happen: jemalloc gives threads only its automatic arenas.) */
    sp_assert(old != zone);
    return MALLOCX_ARENA(old == zone ? 0 : old) | BE_ZF_BOUND;
}

int be_zone_flags_shared(void)
{
    if (!atomic_load_explicit(&be_zone_on, memory_order_acquire)) return 0;
    int f = be_zone_arena_flags();
    return f ? f | MALLOCX_TCACHE_NONE : 0;
}

_Atomic unsigned be_zone_backoff;
#define BE_ZONE_BACKOFF 4096

/* p: what the zone gave (NULL: it could not grow, or it is in backoff), or an object from outside
 * the zone that a bound thread's cache still held from before it was bound.  The fallback comes
 * from jemalloc's usual arenas (the thread's previous one if it is bound), through the thread's
 * cache, which may hand out a zone object it holds: marked like any other.  Outside objects go
 * back to their arena when freed (pass.c), unless there is no zone arena. */
void *be_alloc_class_outside(unsigned c, size_t size, int flags, int zf, void *p)
{
    sp_assert(p == NULL || !be_in_zone(p));   /* be_zone_mark declined it */
    if (p) return p;
    unsigned b = atomic_load_explicit(&be_zone_backoff, memory_order_relaxed);
    if (b == 0)
        atomic_store_explicit(&be_zone_backoff, BE_ZONE_BACKOFF, memory_order_relaxed);
    else
        atomic_store_explicit(&be_zone_backoff, b - 1, memory_order_relaxed);   /* approximate */
    p = mallocx(size, flags | be_home_flags(zf));
    be_zone_mark(p, c);
    return p;
}

void be_fork_prepare(void) { pthread_mutex_lock(&be_zone_arena_lock); }
void be_fork_parent(void) { pthread_mutex_unlock(&be_zone_arena_lock); }

void be_fork_child(void)
{
    pthread_mutex_init(&be_zone_grow_lock, NULL);
    pthread_mutex_init(&be_zone_arena_lock, NULL);
}

/* Every arena's dirty pages back to the kernel at once, the zone's too: after an allocation
 * failed (freed memory at an address-space limit can sit in dirty extents jemalloc will not
 * split for the request). */
static void be_purge_all(void)
{
    char name[64];
    snprintf(name, sizeof name, "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
    mallctl(name, NULL, NULL, NULL, 0);
}

void *be_alloc_class_after_oom(unsigned c, size_t size, int flags, int zf)
{
    if (be_purging_ours) be_purge_all();
    /* The zone may have room again (frees since it last failed, or what the purge turned into
     * reusable extents): tried whatever the backoff says, which other threads may set meanwhile. */
    void *p = NULL;
    if (zf) p = zf & BE_ZF_BOUND ? mallocx(size, flags) : mallocx(size, zf | flags);
    if (p && be_zone_mark(p, c)) {
        atomic_store_explicit(&be_zone_backoff, 0, memory_order_relaxed);
        return p;
    }
    if (p) return p;
    p = mallocx(size, flags | be_home_flags(zf));
    be_zone_mark(p, c);
    return p;
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

/* The zone's dirty pages decay instead of being purged at each purge tick: a program that keeps
 * freeing and reallocating small objects (python's generations of records) would otherwise
 * fault the same pages in again after every purge (docs/design.md, "Purging").  Muzzy 0, as
 * jemalloc's default: what decays goes straight back to the kernel (MADV_FREE'd pages would
 * still count in RSS). */
static void be_zone_set_decay(unsigned ind)
{
    sp_assert_held(&be_zone_arena_lock);    /* be_zone_decay_ms is read under it */
    if (be_zone_decay_ms < 0) return;
    char name[64];
    ssize_t muzzy = 0;
    snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", ind);
    mallctl(name, NULL, NULL, &be_zone_decay_ms, sizeof be_zone_decay_ms);
    snprintf(name, sizeof name, "arena.%u.muzzy_decay_ms", ind);
    mallctl(name, NULL, NULL, &muzzy, sizeof muzzy);
}

bool be_take_over_purging(void)
{
    const char *user = secure_getenv("MALLOC_CONF");   /* as jemalloc reads it */
    if (user && strstr(user, "decay_ms")) return false;
    be_purging_ours = true;
    /* jemalloc's decay purges a freed extent at once when it was dirtied within the current decay
     * epoch (a block freed and reallocated in a loop faults in again every time).  -1 = never
     * purge on its own; the rotation thread purges instead (be_purge).  The zone holds no such
     * blocks (only pooled classes): it keeps jemalloc's own decay (10 s), so that while the
     * program allocates its pages come and go as under jemalloc alone (a shorter decay made
     * python fault its pages in again, docs/performance.md); the rotation thread advances that
     * decay when nothing allocates, and purges the zone at once when the program goes quiet
     * (be_purge). */
    if (!be_set_decay(-1, -1)) return false;
    pthread_mutex_lock(&be_zone_arena_lock);     /* be_zone_decay_ms is read under it */
    be_zone_decay_ms = BE_JEMALLOC_DIRTY_DECAY_MS;
    unsigned a = atomic_load_explicit(&be_zone_arena, memory_order_relaxed);
    if (a) be_zone_set_decay(a - 1);
    pthread_mutex_unlock(&be_zone_arena_lock);
    return true;
}

void be_give_back_purging(void)
{
    be_purging_ours = false;
    pthread_mutex_lock(&be_zone_arena_lock);
    be_zone_decay_ms = -1;                        /* a zone made later keeps jemalloc's */
    pthread_mutex_unlock(&be_zone_arena_lock);
    be_set_decay(BE_JEMALLOC_DIRTY_DECAY_MS, 0);   /* jemalloc 5.3's defaults */
}

void be_thread_init(void)
{
    unsigned zero = 0;
    mallctl("thread.arena", NULL, NULL, &zero, sizeof zero);
}

void be_purge(bool zone, bool arenas)
{
    /* MIBs of arena.<i>.purge and arena.<i>.decay, looked up on the first call (only the rotation
     * thread calls this). */
    static size_t purge_mib[3], decay_mib[3];
    static bool mibs_ok;
    size_t len = 3;
    if (!mibs_ok)
        mibs_ok = mallctlnametomib("arena.0.purge", purge_mib, &len) == 0 &&
                  (len = 3, mallctlnametomib("arena.0.decay", decay_mib, &len) == 0);
    unsigned zone_ind = atomic_load_explicit(&be_zone_arena, memory_order_acquire);   /* index + 1 */
    unsigned narenas = 0;
    size_t nlen = sizeof narenas;
    if (!mibs_ok || mallctl("arenas.narenas", &narenas, &nlen, NULL, 0) != 0) {
        if (zone || arenas) be_purge_all();
        return;
    }
    for (unsigned i = 0; i < narenas; i++) {
        bool is_zone = i + 1 == zone_ind;
        if (!is_zone && !arenas) continue;
        size_t *mib = is_zone && !zone ? decay_mib : purge_mib;
        mib[1] = i;
        mallctlbymib(mib, 3, NULL, NULL, NULL, 0);   /* uninitialised arenas are skipped */
    }
}

void *be_alloc_after_oom(size_t n, int flags)
{
    if (!be_purging_ours) return NULL;
    be_purge_all();
    return mallocx(n, flags);
}

void *be_realloc_after_oom(void *p, size_t n, int flags)
{
    if (!be_purging_ours) return NULL;
    be_purge_all();
    return rallocx(p, n, flags);
}
#endif
