/* procs.h — "P": a dense, recycled per-thread slot id (design decision 3), and the per-P state
 * that outlives a generation: the statistics counters and the P's backend cache.
 *
 * A thread takes a free id on its first allocation and gives it back when it exits; the next
 * thread to take the id inherits that P's cached objects (they stay in the pools) and continues
 * its counters.  Only the thread that holds an id writes its counters, so they need no atomic
 * read-modify-write; readers (stats) load them relaxed.  The ones the fast paths keep (private
 * hits, puts, shared hits) live in the P's pcache instead (pool.h), beside the stacks. */
#ifndef SYNCPOOL_PROCS_H
#define SYNCPOOL_PROCS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "sizeclass.h"
#include "sp_assert.h"

/* Counters per (P, class).  gets = the four hits + misses, so it is not stored. */
enum sp_counter {
    SP_C_HIT_PRIVATE, SP_C_HIT_SHARED, SP_C_STEAL, SP_C_HIT_VICTIM, SP_C_MISS,
    SP_C_PUT, SP_C_OVERFLOW,
    SP_NCOUNTERS
};

struct sp_pcache;
struct sp_proc {
    _Atomic uint32_t in_use;
    uint32_t id;
    /* The P's private stacks (pool.h), made by its first owner and kept for good. */
    struct sp_pcache *pc;
    /* The thread that holds the P, while it uses the pools (NULL otherwise): what the rotation
     * tells about a new generation.  Under sp_proc_owner_lock, so the rotation never writes to a
     * thread that has exited (sp_proc_each). */
    void *owner;
    uint64_t cnt[SP_NCOUNTERS][SP_MAX_CLASSES];   /* [counter][class]: index = class * 8 + const */
} __attribute__((aligned(128)));

/* Ids are handed out in chunks of 64, up to SP_MAX_PROCS; chunks are never freed or moved, so
 * growing the table loses nothing. */
#define SP_PROC_CHUNK_SHIFT 6
#define SP_PROC_CHUNK       (1u << SP_PROC_CHUNK_SHIFT)
#define SP_PROC_CHUNKS      1024u
#define SP_MAX_PROCS        (SP_PROC_CHUNK * SP_PROC_CHUNKS)
_Static_assert(SP_MAX_PROCS == 65536, "docs/design.md: all 65 536 ids");

/* Ids in [0, sp_nprocs) may be in use (a high-water mark; it never shrinks). */
extern _Atomic uint32_t sp_nprocs;

/* A per-P directory (a generation's pblocks, a program pool's slots): P id i's entry is
 * dir[i >> SP_PROC_CHUNK_SHIFT][i & (SP_PROC_CHUNK - 1)], chunks made on demand and kept until
 * the directory goes.  Returns the chunk at *top, made zeroed if there is none yet (Ps of one
 * chunk race to make it: one CAS wins, the others use the winner's); NULL: no memory.  Any
 * thread that may call the backend (guard held). */
void *_Atomic *sp_pdir_chunk(void *_Atomic *_Atomic *top);

/* Takes the lowest free id; NULL if all SP_MAX_PROCS are taken or no memory. */
struct sp_proc *sp_proc_acquire(void);
void sp_proc_release(struct sp_proc *p);
/* The P with this id, or NULL if its chunk was never allocated. */
struct sp_proc *sp_proc_get(uint32_t id);
/* In a forked child: every id but `keep` (may be NULL) belongs to a thread that no longer exists.
 * Their backend caches are dropped too (a thread may have been inside one when it vanished);
 * what they held stays allocated in the child, as jemalloc's own dead threads' caches do. */
void sp_proc_release_all_but(struct sp_proc *keep);

/* The owner of p (a thread that holds it), or NULL before the thread stops using the pools. */
void sp_proc_set_owner(struct sp_proc *p, void *owner);
/* Calls fn(p, arg) for every P that exists, under the owners' lock (p->owner is stable). */
void sp_proc_each(void (*fn)(struct sp_proc *p, void *arg), void *arg);
/* Fork: the owners' lock, taken in prepare, released in the parent and made anew in the child. */
void sp_proc_fork_prepare(void);
void sp_proc_fork_parent(void);
void sp_proc_fork_child(void);

/* Debug builds: a counter of a P that is held (only its holder counts) and below the high-water
 * mark, of a class that exists. */
#define sp_count_assert(p, cls, c)                                                                \
    sp_assert((p) != NULL && atomic_load_explicit(&(p)->in_use, memory_order_relaxed) != 0 &&   \
              (p)->id < atomic_load_explicit(&sp_nprocs, memory_order_relaxed) &&              \
              (cls) < sp_nclasses && (unsigned)(c) < SP_NCOUNTERS)

static inline void sp_count(struct sp_proc *p, unsigned cls, enum sp_counter c)
{
    sp_count_assert(p, cls, c);
    /* Owner-only: a relaxed load and store, no locked instruction. */
    uint64_t *v = &p->cnt[c][cls];
    __atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}
static inline void sp_count_n(struct sp_proc *p, unsigned cls, enum sp_counter c, uint64_t n)
{
    sp_count_assert(p, cls, c);
    uint64_t *v = &p->cnt[c][cls];
    __atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

#endif
