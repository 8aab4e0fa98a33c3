/* gen.h — inside the pool: a P's pblock in a generation, for the slow paths (gen.c). */
#ifndef SYNCPOOL_GEN_H
#define SYNCPOOL_GEN_H

#include "pool.h"

/* P pid's pblock in g, or NULL if it has none there (any thread, inside a section). */
struct sp_pblock *sp_gen_pblock(struct sp_gen *g, uint32_t pid);
/* The generation changed since this thread last looked (or it has no pblock there yet): my
 * pblock in g (created if `create`; NULL if none, or no memory), cached in t and given to the
 * fast paths.  Inside a section. */
struct sp_pblock *sp_pblock_refresh(struct sp_thread *t, struct sp_gen *g, bool create);

#endif
