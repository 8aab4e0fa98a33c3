/* pass.h — the backend's pass-through for the shim (pass.c): what no pool serves, each call
 * inside a section so that a signal handler interrupting it is served from nested.h's region. */
#ifndef SYNCPOOL_PASS_H
#define SYNCPOOL_PASS_H

#include <stdbool.h>
#include <stddef.h>

/* n bytes (0 counts as 1) aligned to align (0: the backend's default), zeroed if zero; not from
 * the zone.  NULL with errno ENOMEM. */
void *sp_pool_pass_alloc(size_t n, size_t align, bool zero);
/* An object of class c for a thread that does not use the pools (no P: no cache of its own). */
void *sp_pool_alloc_unpooled(size_t c, bool zero);
/* Frees an object of class c for such a thread (errno preserved). */
void sp_pool_free_unpooled(size_t c, void *p);
/* Frees a pointer from outside the zone (or NULL): large, over-aligned, a pooled-size object
 * allocated outside the zone (pooled by its size), or a block of the nested region. */
void sp_pool_pass_free(void *p);
/* Usable size of any live pointer. */
size_t sp_pool_usable(const void *p);
/* realloc of a pointer from outside the zone to n > sp_max_size bytes (errno ENOMEM and p
 * intact on failure). */
void *sp_pool_pass_realloc(void *p, size_t n);

#endif
