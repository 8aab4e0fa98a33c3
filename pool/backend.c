/* backend.c — start-up of the backend (see backend.h). */
#include "backend.h"

#ifndef SYNCPOOL_BACKEND_LIBC
#include <dlfcn.h>
#include <stdio.h>
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

static bool be_purging_ours;

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
