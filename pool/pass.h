/* pass.h — the backend's pass-through for the shim (pass.c): what no pool serves, each call
 * inside a section so that a signal handler interrupting it is served from nested.h's region. */
#ifndef SYNCPOOL_PASS_H
#define SYNCPOOL_PASS_H

#include <stdbool.h>
#include <stddef.h>
#include "backend.h"
#include "pool.h"

/* p is a pooled object (it lies in the zone): true, and *cls is its class (no backend call). */
static inline bool sp_pool_class_of(const void *p, unsigned *cls) { return be_zone_lookup(p, cls); }
/* What the backend hands out for n bytes at this alignment (a power of two); when that is a
 * pooled size, every object of that class is so aligned (backend.h, be_class_size_aligned). */
static inline size_t sp_pool_size_aligned(size_t n, size_t align)
{
    return be_class_size_aligned(n, align);
}

/* Start-up: the backend first (it registers its fork handlers then, and finds its fast paths);
 * then, once the classes are built, sp_pool_start: the pools (sp_pool_init).  The zone their
 * objects come from is made once they are warm (pool.h, sp_pool_warm_now); until then, and
 * without one, free() asks the backend for the size.  false: no memory for the pools (they stay
 * off). */
static inline void sp_pool_backend_init(void) { be_init(); }
static inline bool sp_pool_start(size_t cache_bytes) { return sp_pool_init(cache_bytes); }

/* n bytes (0 counts as 1) aligned to align (0: the backend's default), zeroed if zero; not from
 * the zone.  NULL with errno ENOMEM. */
void *sp_pool_pass_alloc(size_t n, size_t align, bool zero);
/* An object of class c for a thread that does not use the pools (no P: no cache of its own). */
void *sp_pool_alloc_unpooled(size_t c, bool zero);
/* Frees an object of class c for such a thread (errno preserved). */
void sp_pool_free_unpooled(size_t c, void *p);
/* Frees a pointer from outside the zone (or NULL): large, over-aligned, a pooled-size object
 * allocated outside the zone (pooled by its size while there is no zone arena, freed to the
 * backend once there is one), or a block of the nested region. */
void sp_pool_pass_free(void *p);
/* Usable size of any live pointer. */
size_t sp_pool_usable(const void *p);
/* realloc of a pointer from outside the zone to n > sp_max_size bytes (errno ENOMEM and p
 * intact on failure). */
void *sp_pool_pass_realloc(void *p, size_t n);

#endif
