/* upool.h — the program's own pools (include/syncpool.h, syncpool_pool_*): Go's sync.Pool for
 * objects the program makes and drops itself, on the same core as the malloc classes (P ids,
 * poolChains, urcu-bp sections, the re-entry guard, the rotation).  What the rest of the
 * library calls; upool.c has the protocol. */
#ifndef SYNCPOOL_UPOOL_H
#define SYNCPOOL_UPOOL_H

#include <stdint.h>

#include "stats.h"

struct sp_thread;

/* The rotation (cleanup/ only), once per period and serialised by its caller:
 *   publish: every pool's local generation becomes its victim and a fresh one its local; takes
 *     the pools' drain lock and leaves it held until drain (a pool being destroyed waits there,
 *     so what drain will hand to its drop_object is still its own).  Outside any section.
 *   drain: after the caller's grace period, what the aged generations held goes to the pools'
 *     drop_object; returns how many objects.  No lock of the caller's but its serialising one
 *     may be held: drop_object is the program's code. */
void sp_upools_publish(void);
uint64_t sp_upools_drain(void);

/* A thread that stops using the pools (sp_thread_detach, guard held, outside any section): its
 * private objects of every program pool go to its shared chains, where other Ps can reach them
 * and the rotation ages them out.  Cheap when the program made no pool. */
void sp_upools_retire(struct sp_thread *t);

/* Fork (from sp_pool_fork_*): the pools' list lock, taken in prepare, released in the parent and
 * made anew in the child, with the drain lock, which a rotation of the parent may have held. */
void sp_upools_fork_prepare(void);
void sp_upools_fork_parent(void);
void sp_upools_fork_child(void);

/* Statistics: fn(name, stats, arg) for every pool that exists, under the list lock (fn must not
 * create or destroy a pool).  size is the pool's object_size_hint (0 if none, and then
 * cached_bytes is 0 too). */
void sp_upools_each_stats(void (*fn)(const char *name, const struct sp_class_stats *s, void *arg),
                          void *arg);

#endif
