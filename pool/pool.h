/* pool.h — sync.Pool in C: one pool per size class (Go's sync/pool.go).
 *
 * Each P owns, per class, a `private` slot and a `shared` poolChain.  The pools of all classes
 * live together in one generation: `local` (where Puts go) and `victim` (the previous local,
 * searched last).  Rotation (cleanup/) makes local the victim and publishes a fresh empty local,
 * exactly as Go's poolCleanup does at each GC.  A generation holds, per P, one sp_pblock.
 *
 *   Get: own private -> own shared head -> other Ps' shared tails (steal) -> victim -> miss.
 *   Put: own private if empty, else push to own shared head; a P caches at most sp_cap[c]
 *        objects of class c per generation, beyond that the caller frees to the backend.
 *
 * All of it runs inside an RCU read-side critical section, so a generation (and any ring
 * retired from one) is freed only after every Get/Put that could see it has finished. */
#ifndef SYNCPOOL_POOL_H
#define SYNCPOOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include "chain.h"
#include "procs.h"
#include "rcu.h"
#include "sizeclass.h"

#define SP_LIKELY(x)   __builtin_expect(!!(x), 1)
#define SP_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Fields of one (P, class) that only the owning P touches. */
struct sp_own {
    void *private_;
    struct sp_dequeue *head;     /* newest ring of the shared chain */
    uint32_t count;              /* objects in the shared chain: exact but for steals */
};

struct sp_pblock {
    struct sp_own own[SP_MAX_CLASSES];
    /* Oldest ring of each shared chain: read (and rarely swung) by thieves, so it is kept off
     * the cache lines the owner writes on every Get/Put (Go pads poolLocal for the same reason). */
    struct sp_dequeue *_Atomic tail[SP_MAX_CLASSES] __attribute__((aligned(128)));
};

struct sp_gen {
    uint64_t seq;                                   /* never reused: 1, 2, 3, ... */
    _Atomic uint8_t victim_empty[SP_MAX_CLASSES];   /* set once a victim search came back empty */
    /* pblock of P id i: dir[i >> 6][i & 63], both levels created on demand and published with
     * release; only P i's owner stores its own entry. */
    struct sp_pblock *_Atomic *_Atomic dir[SP_PROC_CHUNKS];
};

/* Thread states.  Only ACTIVE threads touch the pools; every other state goes straight to the
 * backend (NEW: not yet set up, or before the library is initialised; BUSY: inside our own slow
 * path, the re-entry guard; OFF: exiting, no P available, or pools disabled). */
enum { SP_T_NEW = 0, SP_T_ACTIVE, SP_T_BUSY, SP_T_OFF };

struct sp_thread {
    uint8_t state;
    uint8_t exit_hook;            /* the thread-exit hook is registered (shim/) */
    struct sp_proc *proc;         /* my P */
    uint64_t gen_seq;             /* generation that `pb` belongs to */
    struct sp_pblock *pb;         /* my pblock in it, or NULL if I have none there yet */
};
extern __thread struct sp_thread sp_self __attribute__((tls_model("initial-exec")));

extern struct sp_gen *_Atomic sp_local_gen;
extern struct sp_gen *_Atomic sp_victim_gen;
extern uint32_t sp_cap[SP_MAX_CLASSES];

/* Everything past the private slot (pool.c).  Called inside the read-side critical section
 * that the inline part opened; they close it. */
void *sp_get_rest(struct sp_thread *t, struct sp_gen *g, unsigned cls);
bool sp_put_rest(struct sp_thread *t, struct sp_gen *g, unsigned cls, void *x);
/* The same, with the backend behind them (pool -> jemalloc on a miss or a refused put): a miss
 * returns a fresh backend object of the class (NULL only if the backend has no memory); a
 * refused object is freed to the backend (errno preserved).  sp_put_rest_or_free returns true. */
void *sp_get_rest_or_alloc(struct sp_thread *t, struct sp_gen *g, unsigned cls);
bool sp_put_rest_or_free(struct sp_thread *t, struct sp_gen *g, unsigned cls, void *x);
typedef void *(*sp_get_rest_fn)(struct sp_thread *t, struct sp_gen *g, unsigned cls);
typedef bool (*sp_put_rest_fn)(struct sp_thread *t, struct sp_gen *g, unsigned cls, void *x);

/* The private-slot hit, inline; anything else is handed to rest (sp_get_rest, or a caller's
 * function that wraps it), as a tail call so the inline part needs no saved registers.
 * The calling thread must be ACTIVE. */
static inline __attribute__((always_inline)) void *sp_pool_get_or(unsigned cls,
                                                                   sp_get_rest_fn rest)
{
    struct sp_thread *t = &sp_self;
    sp_rcu_lock();
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_pblock *pb = t->pb;
    if (SP_LIKELY(g->seq == t->gen_seq) && SP_LIKELY(pb != NULL)) {
        struct sp_own *o = &pb->own[cls];
        void *x = o->private_;
        if (SP_LIKELY(x != NULL)) {
            o->private_ = NULL;
            sp_count(t->proc, cls, SP_C_HIT_PRIVATE);
            sp_rcu_unlock();
            return x;
        }
    }
    return rest(t, g, cls);
}

/* Get an object of class cls, or NULL (a miss: the caller goes to the backend). */
static inline __attribute__((always_inline)) void *sp_pool_get(unsigned cls)
{
    return sp_pool_get_or(cls, sp_get_rest);
}

/* The private-slot put, inline; anything else is handed to rest (see sp_pool_get_or). */
static inline __attribute__((always_inline)) bool sp_pool_put_or(unsigned cls, void *x,
                                                                  sp_put_rest_fn rest)
{
    struct sp_thread *t = &sp_self;
    sp_rcu_lock();
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_pblock *pb = t->pb;
    if (SP_LIKELY(g->seq == t->gen_seq) && SP_LIKELY(pb != NULL)) {
        struct sp_own *o = &pb->own[cls];
        if (SP_LIKELY(o->private_ == NULL)) {
            o->private_ = x;
            sp_count(t->proc, cls, SP_C_PUT);
            sp_rcu_unlock();
            return true;
        }
    }
    return rest(t, g, cls, x);
}

/* Put x (an object of exactly class cls) into the pool.  false: the pool does not take it (cap
 * reached, or no memory for a ring) and the caller must free it to the backend. */
static inline __attribute__((always_inline)) bool sp_pool_put(unsigned cls, void *x)
{
    return sp_pool_put_or(cls, x, sp_put_rest);
}

/* Set-up: class tables must be built.  cache_bytes bounds what one P caches per class
 * (sp_cap[c] = max(1, cache_bytes / size)).  false: no memory for the first generation. */
bool sp_pool_init(size_t cache_bytes);

/* Thread set-up, from the caller's re-entry-guarded slow path: takes a P id and registers the
 * thread with urcu-bp.  false: no P available (the thread should bypass the pools). */
bool sp_thread_attach(struct sp_thread *t);
void sp_thread_detach(struct sp_thread *t);

/* Rotation mechanism, driven by cleanup/ only. */
struct sp_gen *sp_gen_new(void);
/* victim <- local, local <- fresh.  Returns the old victim, which readers may still hold until
 * the next grace period. */
struct sp_gen *sp_pool_publish(struct sp_gen *fresh);
/* After a grace period: every object in g back to the backend, its pblocks and directory
 * freed, and g itself emptied under a fresh seq, ready to be published again (so rotation needs
 * no allocation of its own).  Returns the number of objects released (also added to
 * sp_released[class]). */
uint64_t sp_gen_recycle(struct sp_gen *g);

/* Objects handed back to the backend by rotation, per class (written under the rotation lock). */
extern _Atomic uint64_t sp_released[SP_MAX_CLASSES];

#endif
