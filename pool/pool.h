/* pool.h — sync.Pool in C: one pool per size class (Go's sync/pool.go).
 *
 * Each P owns, per class, a `private` stack (Go's private slot, holding up to SP_PRIV_MAX
 * objects instead of one, see below) and a `shared` poolChain.  The shared chains of all classes
 * live together in one generation: `local` (where Puts go) and `victim` (the previous local,
 * searched last).  Rotation (cleanup/) makes local the victim and publishes a fresh empty local,
 * exactly as Go's poolCleanup does at each GC.  A generation holds, per P, one sp_pblock.
 *
 *   Get: own private -> own shared head -> other Ps' shared tails (steal) -> victim -> miss.
 *   Put: own private if not full, else push to own shared head; a P caches at most sp_cap[c]
 *        objects of class c per generation, beyond that the caller frees to the backend.
 *   (A private stack of several objects trades with its shared head in batches, see
 *   sp_priv_batch: the order of a P's Gets is the same.)
 *
 * Who may free what (rcu.h): the generations, their pblocks and the chains' rings are read by
 * other threads and freed by the rotation after a grace period, so they are used only inside a
 * read-side section, which the slow paths open and close.  The private stacks are not in a
 * generation: they live in the P's sp_pcache, which the process keeps for good and only the
 * P's owner touches, so the fast paths (a private hit, a Put onto a private stack that is not
 * full) open no section.  The rotation never touches a private stack; it tells each owner that
 * the generation changed (sp_thread.get_pc/put_pc), and the owner moves its private objects to
 * its pblock in the victim at its next Get or Put (gen.c, sp_pcache_age): Go's poolCleanup, done
 * by the owner.  An owner that exits moves them to its shared chains first (sp_thread_detach),
 * and the stacks of an owner that is idle (outside the allocator) are aged by the rotation, after
 * a handshake that needs nothing from the fast paths (gen.c, "Idle Ps"). */
#ifndef SYNCPOOL_POOL_H
#define SYNCPOOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include "chain.h"
#include "guard.h"
#include "procs.h"
#include "rcu.h"
#include "sizeclass.h"

#define SP_LIKELY(x)   __builtin_expect(!!(x), 1)
#define SP_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The private stack of one (P, class): owner-only, so plain loads and stores.  Go's single
 * private slot makes "is it taken?" a coin toss when a program mixes classes at random, and a
 * few objects per class make a program whose live set is a few hundred objects trade with the
 * shared chain every few calls (a locked add or a CAS each time: docs/performance.md, bulk); a
 * stack sized like jemalloc's thread cache bins makes both rare.  A stack is SP_PRIV_SLOTS
 * pointers, aligned to its own size, and `top` (in the pcache) points at the next free slot:
 *   - slot[base - 1] is NULL and never written (base = SP_PRIV_SLOTS - sp_priv_cap[class], >= 1),
 *     and every slot from base to top - 1 holds an object: so top[-1] == NULL means "empty" (Get
 *     needs no count: the load it does anyway tells it);
 *   - the stack is full when top reaches the slot after the last, the next stack: top is then
 *     aligned to sizeof(struct sp_priv), and only then (Put needs no count either).
 * sp_priv_cap[c] = min(SP_PRIV_MAX, SP_PRIV_BYTES / size, sp_cap[c]), at least 1: the cap
 * still bounds what a P caches, and the largest classes keep Go's single private object, so
 * what no other P can steal stays under SP_PRIV_BYTES per class. */
#define SP_PRIV_SLOTS 128
#define SP_PRIV_MAX (SP_PRIV_SLOTS - 1)
#define SP_PRIV_BYTES 8192
struct sp_priv {
    void *slot[SP_PRIV_SLOTS];
} __attribute__((aligned(SP_PRIV_SLOTS * sizeof(void *))));

/* A steal takes up to half of the victim P's oldest ring, at most this many, with one CAS:
 * where one thread frees what another allocates, each steal then pays for many Gets. */
#define SP_STEAL_MAX 32

/* Fields of one (P, class) of the shared chain that only the owning P touches. */
struct sp_own {
    struct sp_dequeue *head;     /* newest ring of the shared chain */
    uint32_t count;              /* objects in the shared chain: exact but for steals */
};

/* Counters the fast paths keep in the pcache (one unlocked add), and the P counters they are. */
enum { SP_PC_HIT_PRIVATE, SP_PC_PUT, SP_PC_HIT_SHARED, SP_PC_NCOUNTERS };
static const enum sp_counter sp_pc_counter[SP_PC_NCOUNTERS] = {SP_C_HIT_PRIVATE, SP_C_PUT,
                                                               SP_C_HIT_SHARED};

/* One P's private stacks, for every class (Go's poolLocal.private).  Made with the P (procs.h,
 * sp_proc.pc) and kept for the life of the process: a thread that takes the P id later inherits
 * it.  Owner-only: plain loads and stores, no section.  gen_seq is the generation its objects
 * belong to: the owner moves them to the victim when it sees a newer one (gen.c). */
struct sp_pcache {
    void **top[SP_MAX_CLASSES];
    uint64_t cnt[SP_PC_NCOUNTERS][SP_MAX_CLASSES];   /* read (relaxed) by statistics */
    uint64_t gen_seq;
    /* Who may age the stacks (gen.c, "Idle Ps"): 0, or 1 while the owner's slow path or the
     * rotation does.  The fast paths never look at it. */
    _Atomic uint32_t claim;
    /* Bit c: a Get of class c searched everything in the current generation and found nothing,
     * with no other P in the process, and nothing of c has entered my shared chain since.  While
     * it holds (and my fast paths are on, and there is still one P), a miss of c needs no search
     * and no section (sp_pool_miss_known).  Owner only: set at the end of a search that came
     * back empty, cleared by every slow Put of c and by a new generation (sp_pblock_refresh). */
    uint64_t miss_known;
    struct sp_priv priv[SP_MAX_CLASSES];
};

/* One P's shared chains in one generation (the rest of Go's poolLocal, for every class at once).
 * Read by thieves and freed by the rotation: inside sections only. */
struct sp_pblock {
    struct sp_own own[SP_MAX_CLASSES];
    /* Oldest ring of each shared chain: read (and rarely swung) by thieves, so it is kept off
     * the cache lines the owner writes (Go pads poolLocal for the same reason). */
    struct sp_dequeue *_Atomic tail[SP_MAX_CLASSES] __attribute__((aligned(128)));
};

/* What the fast paths see instead of a pcache when they must not use one: every private stack
 * both empty and full (its tops point at an aligned address after a NULL), so Gets and Puts
 * alike go to the slow path.  Read-only: the fast paths never write it. */
extern const struct sp_pcache sp_pcache_off;
#define SP_PC_OFF ((struct sp_pcache *)&sp_pcache_off)

/* Objects per private stack, per class (see struct sp_priv). */
extern uint8_t sp_priv_cap[SP_MAX_CLASSES];
/* A private stack of several objects trades with its own shared chain in batches, as jemalloc's
 * thread cache bins fill and flush: a Put that finds the stack full moves all of it to the shared
 * head with one head add (batch.h, sp_priv_spill) and pushes x onto the emptied stack; a Get that
 * finds it empty takes up to sp_priv_batch[c] of the newest back with one CAS, half a stack
 * rounded up (4 of 7), keeps all but the newest on the stack and returns that one.  Either way a
 * P's cache keeps its order: its Gets see, over the private stack and the shared chain together,
 * the newest object first.  The refill takes half, not all, so that a P whose Gets and Puts then
 * alternate finds objects and room on its stack; the spill takes all, so that no objects are slid
 * down the stack.  sp_priv_batch[c] is 0 for a stack of one object: Go's private slot, where a
 * Put that finds it taken pushes x itself to the shared head. */
extern uint8_t sp_priv_batch[SP_MAX_CLASSES];

/* An owner-only counter: one unlocked add (see guard.h for why a plain add is enough);
 * ThreadSanitizer builds use an atomic add so the stats reader is not reported. */
static inline void sp_owner_inc(uint64_t *v)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
    __asm__ __volatile__("addq $1, %0" : "+m"(*v));
#else
    __atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
#endif
}

/* Moves the owner-only stack top pc->top[cls] by one slot (dir: +1 or -1), as one add to memory
 * (the compiler would load, add and store: the fast paths' instruction count is a target,
 * docs/performance.md).  The address is given as base and index registers, and the store as a
 * memory clobber: with a memory operand gcc 12 computes cls * 8 into a register of its own. */
static inline __attribute__((always_inline)) void sp_owner_step(struct sp_pcache *pc, size_t cls,
                                                                long dir)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
    __asm__ __volatile__("addq %2, (%0,%1,8)" : : "r"(pc->top), "r"(cls), "er"(dir * 8) : "memory");
#else
    pc->top[cls] += dir;
#endif
}

/* Private stack operations (owner only).  pop: the newest object, or NULL if empty; push: false
 * if full. */
static inline __attribute__((always_inline)) void *sp_priv_pop(struct sp_pcache *pc, size_t cls)
{
    void **tp = pc->top[cls];
    void *x = tp[-1];                     /* NULL: the sentinel below the stack, so it is empty */
    if (SP_LIKELY(x != NULL)) sp_owner_step(pc, cls, -1);
    return x;
}

static inline __attribute__((always_inline)) bool sp_priv_push(struct sp_pcache *pc, size_t cls,
                                                                void *x)
{
    void **tp = pc->top[cls];
    /* At the next stack's slot[0]: full. */
    if (SP_UNLIKELY(((uintptr_t)tp & (sizeof(struct sp_priv) - 1)) == 0)) return false;
    *tp = x;
    sp_owner_step(pc, cls, 1);
    return true;
}

/* Objects on a private stack (owner only). */
static inline uint32_t sp_priv_len(const struct sp_pcache *pc, size_t cls)
{
    return (uint32_t)(pc->top[cls] - &pc->priv[cls].slot[SP_PRIV_SLOTS - sp_priv_cap[cls]]);
}

struct sp_gen {
    uint64_t seq;                                   /* never reused: 1, 2, 3, ... */
    _Atomic uint8_t victim_empty[SP_MAX_CLASSES];   /* set once a victim search came back empty */
    /* pblock of P id i: dir[i >> 6][i & 63], both levels created on demand and published with
     * release; only P i's owner stores its own entry (or the rotation for an idle owner, gen.c). */
    struct sp_pblock *_Atomic *_Atomic dir[SP_PROC_CHUNKS];
};

/* Thread states.  Only ACTIVE threads use the pools; every other state goes straight to the
 * backend (NEW: not yet set up, or before the library is initialised; BUSY: inside our own slow
 * path, the re-entry guard; OFF: exiting, no P available, or pools disabled). */
enum { SP_T_NEW = 0, SP_T_ACTIVE, SP_T_BUSY, SP_T_OFF };

struct sp_thread {
    uint64_t guard;               /* first: guard.h; odd while inside the allocator */
    /* The fast paths' private stacks: my P's pcache, or sp_pcache_off (not set up, or the
     * generation changed since I last looked).  Written by me (slow path) and by the rotation,
     * which stores "off" here when it publishes a new generation (gen.c, sp_fast_paths_set, has
     * the ordering argument): so the fast paths need no generation check, and my next slow path
     * ages my private stacks. */
    struct sp_pcache *_Atomic get_pc;
    struct sp_pcache *_Atomic put_pc;
    uint8_t state;
    /* My P id if it is below SP_UINLINE, else SP_UINLINE: the index of my slot in every program
     * pool's inline table (upool.c), whose entry SP_UINLINE is always the empty slot. */
    uint32_t uidx;
    struct sp_proc *proc;         /* my P */
    struct sp_pcache *pc;         /* my P's private stacks (proc->pc) */
    /* My pblock, valid only inside a section that found sp_local_gen->seq == gen_seq. */
    uint64_t gen_seq;             /* generation that `pb` belongs to (0: none yet) */
    struct sp_pblock *pb;         /* my pblock in it, or NULL if I have none there yet */
    uint32_t pb_retry;            /* Puts to refuse before trying again to make pb (no memory) */
    /* The backend's zone flags for this thread (backend.h), set on its first miss as a thread
     * with a P once the zone exists (0: not yet, or no zone).  Once bound, for the thread's life,
     * forks included. */
    int zone_flags;
    /* Objects a signal handler freed while this thread was inside the allocator (sp_put_nested),
     * linked through their first word; pushed with a CAS (a handler may interrupt a handler),
     * taken whole with an exchange by sp_pool_drain_deferred. */
    void *_Atomic deferred;
};
/* Program pools (upool.c): P ids below this find their slot of a pool with one load. */
#define SP_UINLINE 256u
extern __thread struct sp_thread sp_self __attribute__((tls_model("initial-exec")));

extern struct sp_gen *_Atomic sp_local_gen;
extern struct sp_gen *_Atomic sp_victim_gen;
extern uint32_t sp_cap[SP_MAX_CLASSES];

/* Either of my fast paths is off (gen.c, "Idle Ps", step 3). */
static inline bool sp_fast_paths_are_off(struct sp_thread *t)
{
    return atomic_load_explicit(&t->get_pc, memory_order_relaxed) == SP_PC_OFF ||
           atomic_load_explicit(&t->put_pc, memory_order_relaxed) == SP_PC_OFF;
}

_Static_assert(SP_MAX_CLASSES <= 64, "sp_pcache.miss_known has a bit per class");

/* A Get of class cls whose private stack is empty can only miss (sp_pcache.miss_known): then
 * counts the miss.  Guard held, thread ACTIVE; no section (it reads only my pcache and the P
 * count).  Nothing else can have brought objects of cls: only I push into my shared chain, there
 * is no other P to steal from, and the victim gains objects only from my own chain and stacks,
 * through a new generation, which turns my fast paths off first. */
static inline bool sp_pool_miss_known(struct sp_thread *t, size_t cls)
{
    if (!((t->pc->miss_known >> cls) & 1) || sp_fast_paths_are_off(t) ||
        atomic_load_explicit(&sp_nprocs, memory_order_acquire) != 1)
        return false;
    sp_count(t->proc, (unsigned)cls, SP_C_MISS);
    return true;
}

/* A Put of class cls that the pool gave back to the backend at once (counted as a Put and as
 * released).  Guard held, thread ACTIVE. */
static inline void sp_count_put_released(struct sp_thread *t, size_t cls)
{
    sp_owner_inc(&t->pc->cnt[SP_PC_PUT][cls]);
    sp_count(t->proc, (unsigned)cls, SP_C_OVERFLOW);
}

/* Everything past the private stack (get.c, put.c), with the guard held; they leave it held.
 * Each opens and closes its own read-side section.  The thread must be ACTIVE.
 *   sp_pool_get_more: an object from my shared chain, a steal or the victim; NULL: a miss
 *     (counted), the caller goes to the backend.
 *   sp_pool_put_more: takes x: onto my private stack, which spills to my shared chain, or (at
 *     the cap, or with no memory for a ring) flushes its oldest half to the backend. */
void *sp_pool_get_more(struct sp_thread *t, size_t cls);
void sp_pool_put_more(struct sp_thread *t, size_t cls, void *x);

typedef void *(*sp_get_rest_fn)(struct sp_thread *t, size_t cls);
typedef bool (*sp_put_rest_fn)(struct sp_thread *t, size_t cls, void *x);
/* A Get or Put that found the guard held already (sp_guard_enter): a signal handler
 * interrupted the allocator.  It uses neither the thread's pools nor the backend (nested.h).
 * Get: a fresh object of the class's size (or NULL, errno ENOMEM), which the caller treats as
 * a hit.  Put: x is freed later, by the thread outside the allocator (sp_pool_drain_deferred);
 * returns true. */
void *sp_get_nested(size_t cls);
bool sp_put_nested(struct sp_thread *t, void *x);
/* Frees what signal handlers put while the thread was inside the allocator.  Guard not held;
 * cheap when there is nothing. */
void sp_pool_drain_deferred_slow(struct sp_thread *t);
static inline void sp_pool_drain_deferred(struct sp_thread *t)
{
    if (SP_UNLIKELY(atomic_load_explicit(&t->deferred, memory_order_relaxed) != NULL))
        sp_pool_drain_deferred_slow(t);
}

/* The private-stack hit, inline; anything else is handed to rest, as a tail call so the inline
 * part needs no saved registers; rest releases the guard.  No state test: a thread that may not
 * use the pools sees sp_pcache_off here. */
static inline __attribute__((always_inline)) void *sp_pool_get_or(size_t cls, sp_get_rest_fn rest)
{
    struct sp_thread *t = &sp_self;
    if (SP_UNLIKELY(sp_guard_enter(&t->guard))) return sp_get_nested(cls);
    struct sp_pcache *pc = atomic_load_explicit(&t->get_pc, memory_order_relaxed);
    void *x = sp_priv_pop(pc, cls);
    if (SP_LIKELY(x != NULL)) {
        sp_owner_inc(&pc->cnt[SP_PC_HIT_PRIVATE][cls]);
        sp_guard_exit(&t->guard);
        return x;
    }
    return rest(t, cls);
}

/* The private-stack put, inline; anything else is handed to rest (see sp_pool_get_or). */
static inline __attribute__((always_inline)) bool sp_pool_put_or(size_t cls, void *x,
                                                                  sp_put_rest_fn rest)
{
    struct sp_thread *t = &sp_self;
    if (SP_UNLIKELY(sp_guard_enter(&t->guard))) return sp_put_nested(t, x);
    struct sp_pcache *pc = atomic_load_explicit(&t->put_pc, memory_order_relaxed);
    if (SP_LIKELY(sp_priv_push(pc, cls, x))) {
        sp_owner_inc(&pc->cnt[SP_PC_PUT][cls]);
        sp_guard_exit(&t->guard);
        return true;
    }
    return rest(t, cls, x);
}

/* Get and Put without the backend behind them (Go's Get without New, and a Put the caller
 * completes): the tests' view of the pools. */
void *sp_get_rest(struct sp_thread *t, size_t cls);
bool sp_put_rest(struct sp_thread *t, size_t cls, void *x);
/* Get an object of class cls, or NULL (a miss, or this thread does not use the pools: the
 * caller goes to the backend). */
static inline __attribute__((always_inline)) void *sp_pool_get(size_t cls)
{
    return sp_pool_get_or(cls, sp_get_rest);
}
/* Put x (an object of exactly class cls) into the pool.  false: this thread does not use the
 * pools, and the caller must free x to the backend. */
static inline __attribute__((always_inline)) bool sp_pool_put(size_t cls, void *x)
{
    return sp_pool_put_or(cls, x, sp_put_rest);
}

/* The victim generation v may hold objects of class cls (g: the local generation; a victim
 * search that came back empty marks the class, Go's victimSize = 0).  Inside a section. */
static inline bool sp_victim_worth_searching(struct sp_gen *v, struct sp_gen *g, size_t cls)
{
    return v && v != g && !atomic_load_explicit(&v->victim_empty[cls], memory_order_relaxed);
}

/* How many objects my full private stack of class cls may still hand to my shared chain: the
 * cap must hold once the stack has filled up again, which its Puts do without looking at the cap
 * (so the cap counts the stack as full).  0: my pool may hold the cap.  count may overcount (it
 * does not see what thieves took), so a 0 is checked by a recount before the stack is flushed to
 * the backend (sp_pool_put_more): a recount walks the rings, a few per flush of half a stack,
 * where trusting a stale count would send to the backend what a thief's P needs (a
 * producer/consumer pair then runs through jemalloc). */
static inline __attribute__((always_inline)) uint32_t sp_cap_room(const struct sp_own *o,
                                                                  size_t cls)
{
    uint32_t used = o->count + sp_priv_cap[cls];
    return used < sp_cap[cls] ? sp_cap[cls] - used : 0;
}

/* ---- The pools' API for the malloc front end (shim/) ------------------------------------------
 * Get and Put with the backend behind them: a miss allocates from it and a Put the pools do not
 * keep frees to it, and a thread that does not use the pools (not yet set up, exiting, or no P)
 * is served by the backend directly.  The caller opens and closes nothing. */
void *sp_alloc_rest(struct sp_thread *t, size_t cls);
bool sp_free_rest(struct sp_thread *t, size_t cls, void *x);
/* An object of class cls; NULL only if the backend has no memory (errno ENOMEM). */
static inline __attribute__((always_inline)) void *sp_pool_alloc(size_t cls)
{
    return sp_pool_get_or(cls, sp_alloc_rest);
}
/* x, an object of class cls (sp_pool_class_of), into its pool or back to the backend. */
static inline __attribute__((always_inline)) void sp_pool_free(size_t cls, void *x)
{
    (void)sp_pool_put_or(cls, x, sp_free_rest);
}
/* The client's thread set-up: called by a thread's first Get or Put; true if the thread may
 * now use the pools (it is ACTIVE: sp_thread_attach).  Without one, threads that are not
 * ACTIVE are served by the backend. */
void sp_pool_set_thread_setup(bool (*setup)(void));
/* A NEW thread, guard not held: runs the client's set-up; true if the thread is now ACTIVE. */
bool sp_pool_setup_thread(struct sp_thread *t);
/* The pools are "warm" once their misses have handed out SP_WARM_BYTES, or the backend's
 * pass-through (pass.h: large and unpooled requests) 2^SP_WARM_LARGE_SHIFT times that (8 MiB), or
 * a mix, or the program made a pool of its own (upool.h).  Before that, everything the pools
 * cache (objects that came from those misses) is under SP_WARM_BYTES in all, and rotating it is
 * not worth a thread.  Large requests count because the rotation thread also takes over the
 * backend's purging, without which a program that reuses large blocks faults them in again on
 * every malloc (backend.h, be_take_over_purging); 8 MiB of them so faulted are at most 2048
 * faults.  Only ACTIVE threads count (a NEW one is set up first: the hook's pthread_create would
 * set it up inside the rotation's lock), so what the process allocates before the pools are on
 * (libstdc++'s emergency pool) does not.  The client's hook runs once, on the thread that warms
 * them, outside the allocator (guard not held), errno kept; the cleanup starts the rotation
 * thread there. */
#define SP_WARM_BYTES (64 * 1024)
#define SP_WARM_LARGE_SHIFT 7
extern _Atomic bool sp_pool_warm;
void sp_pool_set_warm_hook(void (*fn)(void));
/* Warm now (a program pool).  Guard not held; a NEW thread is set up first. */
void sp_pool_warm_now(void);
/* Counts n weighted bytes handed out toward warmth.  Guard not held. */
void sp_pool_warm_by(struct sp_thread *t, size_t n);
static inline void sp_pool_note_handed_out(struct sp_thread *t, size_t n)
{
    if (SP_UNLIKELY(!atomic_load_explicit(&sp_pool_warm, memory_order_relaxed)))
        sp_pool_warm_by(t, n);
}

/* The zone (backend.h) is made when the pools get warm, not at start-up: its jemalloc arena and
 * the mallctl tables it needs are ~300 KB resident, more than a small program's pools ever hold.
 * Until then misses take objects from the backend's usual arenas, and free() pools them by the
 * size the backend reports (pass.c), which costs a backend lookup per free.  So SP_WARM_BYTES of
 * such frees also make the zone (without starting the rotation: a program whose Gets all hit
 * holds little): a program that reuses a few objects in a loop moves to the zone's free path.
 * Once the zone's arena exists, those outside objects are freed to the backend instead, and
 * each thread binds to the zone on its next miss. */
extern _Atomic bool sp_pool_zoned;
void sp_pool_zone_by(size_t n);
static inline void sp_pool_note_freed_outside(size_t n)
{
    if (SP_UNLIKELY(!atomic_load_explicit(&sp_pool_zoned, memory_order_relaxed)))
        sp_pool_zone_by(n);
}

/* Set-up: class tables must be built.  cache_bytes bounds what one P caches per class
 * (sp_cap[c] = max(1, cache_bytes / size), private stack included).  false: no memory for the
 * first generation. */
bool sp_pool_init(size_t cache_bytes);

/* Thread set-up, from the caller's re-entry-guarded slow path: takes a P id (and its pcache).
 * false: no P available, or no memory (the thread should bypass the pools).  detach moves what
 * my private stacks hold to my shared chains, where other Ps can steal it and the rotation ages
 * it out, and gives the P id back; the thread must not use the pools afterwards. */
bool sp_thread_attach(struct sp_thread *t);
void sp_thread_detach(struct sp_thread *t);
/* Drops the thread's P and pblock and turns its fast paths off, without releasing anything: in
 * a forked child, where the P table was reset (the pcache it used may become another thread's). */
void sp_pool_forget(struct sp_thread *t);

/* Rotation mechanism, driven by cleanup/ only. */
struct sp_gen *sp_gen_new(void);
/* Frees an empty generation (one sp_gen_recycle has emptied, or never published). */
void sp_gen_free(struct sp_gen *g);
/* Fork: the pools' own locks (recycling, the P table's owners), taken in prepare after
 * cleanup/'s, released in the parent and made anew in the child. */
void sp_pool_fork_prepare(void);
void sp_pool_fork_parent(void);
void sp_pool_fork_child(void);
/* victim <- local, local <- fresh, and every thread's fast paths turned off (their next Get or
 * Put finds the fresh local through the slow path, and ages their private stacks).  Returns the
 * old victim, which readers may still hold until the caller's sp_rcu_synchronize. */
struct sp_gen *sp_pool_publish(struct sp_gen *fresh);
/* After a grace period: every object in g's shared chains back to the backend, its pblocks and
 * directory freed, and g itself emptied under a fresh seq, ready to be published again (so
 * rotation needs no allocation of its own).  Returns the number of objects released (also added
 * to sp_released[class]). */
uint64_t sp_gen_recycle(struct sp_gen *g);

/* Adds the pcache counters of every P (the fast paths' counts) to out[counter][class]. */
void sp_pool_fast_counts(uint64_t out[SP_NCOUNTERS][SP_MAX_CLASSES]);

/* Objects handed back to the backend by rotation and by owners ageing their private stacks, per
 * class. */
extern _Atomic uint64_t sp_released[SP_MAX_CLASSES];

#endif
