/* gen.h — inside the pool: a P's pblock in a generation, for the slow paths (gen.c). */
#ifndef SYNCPOOL_GEN_H
#define SYNCPOOL_GEN_H

#include "pool.h"

/* P pid's pblock in g, or NULL if it has none there (any thread, inside a section). */
struct sp_pblock *sp_gen_pblock(struct sp_gen *g, uint32_t pid);
/* The generation changed since this thread last looked (or it has no pblock there yet): my
 * private stacks age (their objects go to my pblock in the victim, or back to the backend), and
 * my pblock in g (created if `create`; NULL if none, or no memory) is cached in t; my fast paths
 * run on my private stacks again.  Inside a section in which g was loaded. */
struct sp_pblock *sp_pblock_refresh(struct sp_thread *t, struct sp_gen *g, bool create);

/* The owner's side of the handshake with the rotation over its private stacks (gen.c, "Idle
 * Ps"): a slow path that found its fast paths "off" claims its pcache before it touches it.
 * false: the rotation is ageing them right now; leave them alone this time. */
bool sp_pcache_claim(struct sp_pcache *pc);
void sp_pcache_unclaim(struct sp_pcache *pc);
/* A fresh P's private stacks, all empty (NULL: no memory). */
struct sp_pcache *sp_pcache_new(void);
/* My private stacks' objects to my shared chains in the local generation (ageing them first if
 * it is newer), or to the backend where no ring can be had: a thread that stops using the pools
 * leaves nothing that only it could reach.  Opens and closes its own section. */
void sp_pcache_retire(struct sp_thread *t);

#endif
