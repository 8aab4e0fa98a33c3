/* upool.c — sync.Pool for the program's own objects (include/syncpool.h): Go's sync/pool.go on
 * the core the malloc classes use.
 *
 * A pool has, per P (procs.h), one `struct sp_uslot`, made by the P's first owner that uses the
 * pool and kept until the pool is destroyed (a thread that takes the P id later inherits it):
 *   - a private stack of up to priv_cap objects (Go's private slot, a few deep when objects are
 *     small), owner only, read and written with no section, no atomic, no lock;
 *   - a shared poolChain per generation slot (own[i].head, tail[i]: chain.h), pushed and popped
 *     at the head by the owner and at the tail by thieves, always inside a read-side section.
 *
 * Generations are numbers.  pool->seq is the local generation; its chains are the slots'
 * chains[seq & 3], the victim's chains[(seq - 1) & 3].  The rotation (sp_upools_publish, then
 * sp_upools_drain after a grace period) adds 1 to seq, and drains chains[(seq - 2) & 3] (the old
 * victim) and chains[(seq + 1) & 3] (the next local, empty unless a fork lost a drain) of every
 * slot: after the grace period no section can still use either, since a section that loaded
 * seq = S touches only chains S & 3 and (S - 1) & 3.  So nothing is allocated or freed per
 * generation: a rotation of a pool is one store, and the grace period is the malloc classes'.
 *
 * The private stack belongs to generation slot->seq.  The fast paths use it only while that is
 * pool->seq (one relaxed load; a stale one just uses the stack a little longer: only its owner
 * touches it); otherwise the slow path, inside its section, ages it first (sp_uslot_age): objects
 * of seq - 1 go to the owner's chain in the victim, older ones to drop_object, as Go's
 * poolCleanup would have moved and then dropped them.  The rotation never touches a private
 * stack, so a thread that stops calling the pool keeps at most priv_cap objects (bounded by
 * SP_UPRIV_BYTES when the size is known) until it runs again, exits or the pool is destroyed.
 *
 * Every object is, at any time, in exactly one place: a private stack, one ring slot of one
 * chain, the program's hands, or on its way to drop_object.  drop_object and new_object are the
 * program's code: they run outside every section and lock of ours, with the guard released. */
#include "upool.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "backend.h"
#include "pool.h"
#include "syncpool.h"

#define SP_API __attribute__((visibility("default")))

#define SP_UGENS 4                        /* generation slots: local, victim, two draining */
#define SP_UPRIV_SLOTS 32                 /* a private stack holds up to SLOTS - 1 objects ... */
#define SP_UPRIV_BYTES (64 * 1024)        /* ... and at most this many bytes of known size */
#define SP_UPOOL_CACHE_BYTES (1u << 20)   /* default max_cached_bytes_per_p */
#define SP_USEQ_FIRST 4                   /* seq 0 is the empty slot's, never a pool's */
#define SP_USEQ_DEAD UINT64_MAX           /* destroy started: every call takes the slow path */

/* Counters of one (pool, P), owner only (sp_owner_inc), read relaxed by statistics.  The fast
 * Get counts nothing: its hits are what entered the stack and left it otherwise than by a fast
 * Get, minus what is on it (sp_upools_each_stats). */
enum { SP_U_PUT_FAST, SP_U_PUT, SP_U_STACK_IN, SP_U_STACK_OUT, SP_U_HIT_SHARED, SP_U_STEAL,
       SP_U_HIT_VICTIM, SP_U_MISS, SP_U_DROPPED, SP_U_N };

/* The private stack, owner only, as the classes' (pool.h, struct sp_priv): slot[base - 1] is
 * NULL and never written (base = SLOTS - priv_cap >= 1), slots base .. top - 1 hold objects, so
 * top[-1] == NULL means empty and a top aligned to the stack's size means full. */
struct sp_upriv {
    void *slot[SP_UPRIV_SLOTS];
} __attribute__((aligned(SP_UPRIV_SLOTS * sizeof(void *))));

struct sp_uslot {
    /* The fast paths' line. */
    void **top;                           /* written by the owner, read by statistics */
    uint64_t seq;                         /* generation of the stack's objects */
    uint64_t cnt[SP_U_N];
    struct sp_own own[SP_UGENS];          /* head and count of my chain in each slot */
    struct sp_upriv priv;
    /* Read and swung by thieves: off the owner's lines. */
    struct sp_dequeue *_Atomic tail[SP_UGENS] __attribute__((aligned(64)));
};

/* What a P without a slot of its own finds (inline entries not made yet, and entry SP_UINLINE,
 * which threads without a P, or whose id is SP_UINLINE or more, look at): a stack both empty and
 * full, of generation 0.  The fast paths never write it. */
static const struct sp_uslot sp_uslot_none = {.top = (void **)&sp_uslot_none.priv.slot[SP_UPRIV_SLOTS]};
#define SP_USLOT_NONE ((struct sp_uslot *)&sp_uslot_none)

struct syncpool_pool {
    /* Read by every call. */
    _Atomic uint64_t seq;
    uint32_t priv_cap;                    /* 1 .. SP_UPRIV_SLOTS - 1 */
    uint32_t cap;                         /* objects one P keeps per generation */
    void *(*new_object)(void *arg);
    void (*drop_object)(void *obj, void *arg);
    void *arg;
    size_t size;                          /* object_size_hint, 0 if unknown */
    /* Go's victimSize == 0: a victim search came back empty (reset when the slot becomes the
     * victim, and by an owner that moves objects into it). */
    _Atomic uint8_t victim_empty[SP_UGENS];
    /* Slot of P id i < SP_UINLINE, for the fast paths (the empty slot until the owner makes its
     * own); entry SP_UINLINE stays the empty slot.  The slots themselves are in dir. */
    struct sp_uslot *_Atomic inline_slot[SP_UINLINE + 1] __attribute__((aligned(64)));
    /* Counters of calls that had no slot (a thread without a P, or a nested call), and the
     * objects dropped by the rotation and destroy. */
    _Atomic uint64_t extra[SP_U_N] __attribute__((aligned(64)));
    struct syncpool_pool *next;           /* sp_upools, under sp_upool_lock */
    struct syncpool_pool *rot_next;       /* the rotation's list, under sp_upool_drain_lock */
    char name[64];
    /* Slot of every P id i: dir[i >> 6][i & 63]; a chunk is published with a CAS, a slot by its
     * owner with a release store. */
    struct sp_uslot *_Atomic *_Atomic dir[SP_PROC_CHUNKS];
};

/* Every pool, for the rotation, thread exit and statistics.  sp_upool_lock guards the list and
 * is held only for bounded work of ours.  sp_upool_drain_lock is held by the rotation from publish
 * to the end of drain; destroy takes it (after unlinking its pool) to wait for that drain.
 * Order: sp_upool_drain_lock, then sp_upool_lock; neither is taken inside a section. */
static pthread_mutex_t sp_upool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sp_upool_drain_lock = PTHREAD_MUTEX_INITIALIZER;
static struct syncpool_pool *sp_upools;
static _Atomic uint32_t sp_upool_count;
static struct syncpool_pool *sp_upool_rot;    /* published by the rotation in flight */

/* ---- the private stack (owner only, no section) ---------------------------------------- */

/* An owner-only counter of the slow paths: a relaxed load and store (statistics read it). */
static inline void sp_owner_add(uint64_t *v, uint64_t n)
{
    __atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void **sp_upriv_base(const struct syncpool_pool *pool, struct sp_uslot *s)
{
    return &s->priv.slot[SP_UPRIV_SLOTS - pool->priv_cap];
}

static inline uint32_t sp_upriv_len(const struct syncpool_pool *pool, struct sp_uslot *s)
{
    return (uint32_t)(__atomic_load_n(&s->top, __ATOMIC_RELAXED) - sp_upriv_base(pool, s));
}

static inline void sp_upriv_set_top(struct sp_uslot *s, void **top)
{
    __atomic_store_n(&s->top, top, __ATOMIC_RELAXED);   /* statistics read it */
}

/* The newest object of my stack, if the stack is of the pool's generation (a stale seq only
 * keeps it a little longer: nobody else touches it); NULL otherwise. */
static inline __attribute__((always_inline)) void *sp_upriv_pop(struct syncpool_pool *pool,
                                                                struct sp_uslot *s)
{
    void **tp = s->top;
    void *x = tp[-1];                     /* NULL: the sentinel below the stack, so it is empty */
    if (SP_UNLIKELY(x == NULL || s->seq != atomic_load_explicit(&pool->seq, memory_order_relaxed)))
        return NULL;
    sp_upriv_set_top(s, tp - 1);
    return x;
}

/* x onto my stack if it has room and is of the pool's generation. */
static inline __attribute__((always_inline)) bool sp_upriv_push(struct syncpool_pool *pool,
                                                                struct sp_uslot *s, void *x)
{
    void **tp = s->top;
    if (SP_UNLIKELY(((uintptr_t)tp & (sizeof(struct sp_upriv) - 1)) == 0 ||
                    s->seq != atomic_load_explicit(&pool->seq, memory_order_relaxed)))
        return false;
    *tp = x;
    sp_upriv_set_top(s, tp + 1);
    sp_owner_inc(&s->cnt[SP_U_PUT_FAST]);
    return true;
}

/* ---- slots ----------------------------------------------------------------------------- */

static inline struct sp_uslot *sp_uslot_get(struct syncpool_pool *pool, uint32_t id)
{
    struct sp_uslot *_Atomic *chunk =
        atomic_load_explicit(&pool->dir[id >> SP_PROC_CHUNK_SHIFT], memory_order_acquire);
    if (!chunk) return NULL;
    /* Acquire pairs with the release of the slot's maker. */
    return atomic_load_explicit(&chunk[id & (SP_PROC_CHUNK - 1)], memory_order_acquire);
}

/* My slot (a P's owner), or NULL if I have no P or no slot yet. */
static inline struct sp_uslot *sp_uslot_mine(struct syncpool_pool *pool, struct sp_thread *t)
{
    return t->proc ? sp_uslot_get(pool, t->proc->id) : NULL;
}

/* Makes my slot (owner, guard held).  NULL: no memory. */
static struct sp_uslot *sp_uslot_make(struct syncpool_pool *pool, uint32_t id)
{
    struct sp_uslot *_Atomic *chunk = (struct sp_uslot *_Atomic *)sp_pdir_chunk(
        (void *_Atomic *_Atomic *)&pool->dir[id >> SP_PROC_CHUNK_SHIFT]);
    if (!chunk) return NULL;
    struct sp_uslot *s =
        be_alloc_internal(sizeof(*s), BE_ZERO | BE_ALIGN(_Alignof(struct sp_uslot)));
    if (!s) return NULL;
    s->top = sp_upriv_base(pool, s);      /* empty; the slot below stays NULL */
    /* The empty stack may belong to any generation: the current one spares an ageing. */
    s->seq = atomic_load_explicit(&pool->seq, memory_order_relaxed);
    /* Only P id's owner stores these entries; release publishes the slot to thieves. */
    atomic_store_explicit(&chunk[id & (SP_PROC_CHUNK - 1)], s, memory_order_release);
    if (id < SP_UINLINE) atomic_store_explicit(&pool->inline_slot[id], s, memory_order_release);
    return s;
}

/* ---- the program's callbacks ------------------------------------------------------------- */

static void *sp_upool_new(struct syncpool_pool *pool)
{
    return pool->new_object ? pool->new_object(pool->arg) : NULL;
}

static void sp_upool_drop(void *obj, void *arg)
{
    struct syncpool_pool *pool = arg;
    if (pool->drop_object) pool->drop_object(obj, pool->arg);
}

static void sp_upool_drop_n(struct syncpool_pool *pool, void **objs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) sp_upool_drop(objs[i], pool);
}

static void sp_upool_extra(struct syncpool_pool *pool, int c, uint64_t n)
{
    atomic_fetch_add_explicit(&pool->extra[c], n, memory_order_relaxed);
}

/* The backend from code that does not hold the guard (create, destroy, the rotation's drain,
 * statistics): a signal handler that interrupts the backend call must find the thread inside the
 * allocator, so that it does not enter the backend itself.  Not from a signal handler (the
 * header says so: these also take locks), so the guard is free here. */
static void *sp_upool_be_alloc(size_t n, int flags)
{
    struct sp_thread *t = &sp_self;
    if (sp_guard_enter(&t->guard)) return NULL;
    void *p = be_alloc_internal(n, flags);
    sp_guard_exit(&t->guard);
    sp_pool_drain_deferred(t);
    return p;
}

static void sp_upool_be_free(void *p, bool ring)
{
    struct sp_thread *t = &sp_self;
    bool nested = sp_guard_enter(&t->guard);
    sp_assert(!nested);
    if (ring)
        sp_dequeue_free(p);
    else
        be_free_internal(p);
    if (!nested) {
        sp_guard_exit(&t->guard);
        sp_pool_drain_deferred(t);
    }
}

/* ---- the slow paths, inside a section -------------------------------------------------- */

/* My stack's generation is not S (the local one, loaded in this section): its objects of the
 * victim (S - 1) go to my chain there, older ones (or those no ring could take) to drop[]
 * (returned count), for the caller to drop after the section.  The stack is then S's, empty. */
static uint32_t sp_uslot_age(struct syncpool_pool *pool, struct sp_uslot *s, uint64_t S,
                             void **drop)
{
    void **base = sp_upriv_base(pool, s);
    uint32_t n = sp_upriv_len(pool, s), k = 0;
    sp_assert(s->seq != S && n < SP_UPRIV_SLOTS);
    if (n && s->seq == S - 1) {
        unsigned v = (unsigned)(S - 1) & (SP_UGENS - 1);
        /* Only the slot's owner pushes into its chains; the drain of slot v waits for this
         * section (it comes after the grace period of the rotation that publishes S + 1). */
        k = sp_chain_push_head_n(&s->own[v].head, &s->tail[v], base, n);
        s->own[v].count += k;
        if (k) atomic_store_explicit(&pool->victim_empty[v], 0, memory_order_relaxed);
    }
    for (uint32_t i = k; i < n; i++) drop[i - k] = base[i];
    sp_upriv_set_top(s, base);
    s->seq = S;
    if (n) sp_owner_add(&s->cnt[SP_U_STACK_OUT], n);
    if (n > k) sp_owner_add(&s->cnt[SP_U_DROPPED], n - k);
    return n - k;
}

/* Keeps v[0 .. n - 1) on my (empty) stack, oldest first, and returns v[n - 1]: the rest of a
 * batch taken from a chain, so that the next Gets are private hits. */
static void *sp_upriv_keep(struct syncpool_pool *pool, struct sp_uslot *s, void **v, uint32_t n)
{
    void **tp = s->top;
    sp_assert(n >= 1 && n <= pool->priv_cap && tp == sp_upriv_base(pool, s));
    for (uint32_t i = 0; i + 1 < n; i++) *tp++ = v[i];
    sp_upriv_set_top(s, tp);
    sp_owner_add(&s->cnt[SP_U_STACK_IN], n - 1);
    return v[n - 1];
}

/* Go's getSlow past my private stack (empty, of generation S): my shared head (a batch of half a
 * stack), other Ps' local tails (a batch too, starting after me as Go does), then the victim's
 * chains (one object: mine at the head, as Go pops the victim's own shared head, then the
 * others' tails).  Inside a section that loaded S.  NULL: a miss. */
static void *sp_upool_search(struct syncpool_pool *pool, struct sp_uslot *s, uint32_t me,
                             uint64_t S)
{
    unsigned l = (unsigned)S & (SP_UGENS - 1), v = (unsigned)(S - 1) & (SP_UGENS - 1);
    uint32_t batch = (pool->priv_cap + 1) / 2;
    void *buf[SP_UPRIV_SLOTS], *x;
    uint32_t k = sp_chain_pop_head_n(s->own[l].head, buf, batch);
    if (k) {
        s->own[l].count -= k;
        sp_owner_inc(&s->cnt[SP_U_HIT_SHARED]);
        return sp_upriv_keep(pool, s, buf, k);
    }
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
    for (uint32_t j = 1; j < n; j++) {    /* me < n: my id is below the high-water mark */
        struct sp_uslot *o = sp_uslot_get(pool, me + j < n ? me + j : me + j - n);
        if (o && (k = sp_chain_pop_tail_n(&o->tail[l], buf, batch))) {
            sp_owner_inc(&s->cnt[SP_U_STEAL]);
            return sp_upriv_keep(pool, s, buf, k);
        }
    }
    if (atomic_load_explicit(&pool->victim_empty[v], memory_order_relaxed)) return NULL;
    if ((x = sp_chain_pop_head(s->own[v].head))) {
        s->own[v].count--;
        sp_owner_inc(&s->cnt[SP_U_HIT_VICTIM]);
        return x;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct sp_uslot *o = i == me ? NULL : sp_uslot_get(pool, i);
        if (o && (x = sp_chain_pop_tail(&o->tail[v]))) {
            sp_owner_inc(&s->cnt[SP_U_HIT_VICTIM]);
            return x;
        }
    }
    /* Nothing in the victim: later Gets skip it until it changes (an object pushed there
     * meanwhile is missed until then, and dropped with the victim). */
    atomic_store_explicit(&pool->victim_empty[v], 1, memory_order_relaxed);
    return NULL;
}

/* Go's Put past a full private stack (of generation S, inside a section that loaded S): the
 * whole stack to my shared head with one batch, within the cap (which counts the stack and x;
 * the chain's count may overcount, thieves' pops are not in it, so it is recounted before a
 * refusal), then x onto the emptied stack.  false: at the cap, or no memory for a ring; the
 * caller drops x. */
static bool sp_upool_spill(struct syncpool_pool *pool, struct sp_uslot *s, uint64_t S, void *x)
{
    unsigned l = (unsigned)S & (SP_UGENS - 1);
    struct sp_own *o = &s->own[l];
    uint32_t n = sp_upriv_len(pool, s);
    if (o->count + n + 1 > pool->cap) o->count = sp_chain_len(o->head);
    if (o->count + n + 1 > pool->cap) return false;
    void **base = sp_upriv_base(pool, s);
    uint32_t k = sp_chain_push_head_n(&o->head, &s->tail[l], base, n);
    o->count += k;
    sp_owner_add(&s->cnt[SP_U_STACK_OUT], k);
    if (k == 0) return false;
    /* What no ring took (no memory) slides down; the stack has room for x now. */
    memmove(base, base + k, (n - k) * sizeof(void *));
    base[n - k] = x;
    sp_upriv_set_top(s, base + (n - k) + 1);
    sp_owner_inc(&s->cnt[SP_U_STACK_IN]);
    return true;
}

/* A call that cannot use a slot: a thread that may not use the pools (no P, exiting, pools
 * disabled) or a call inside the allocator (a signal handler that interrupted it). */
static void *sp_upool_get_unslotted(struct syncpool_pool *pool)
{
    sp_upool_extra(pool, SP_U_MISS, 1);
    return sp_upool_new(pool);
}

static void sp_upool_put_unslotted(struct syncpool_pool *pool, void *x)
{
    sp_upool_extra(pool, SP_U_PUT, 1);
    sp_upool_extra(pool, SP_U_DROPPED, 1);
    sp_upool_drop(x, pool);
}

/* The owner's way to its slot when the fast path did not find it, guard held: NULL if the
 * thread may not use the pools now (the guard is then released). */
static struct sp_uslot *sp_uslot_slow(struct syncpool_pool *pool, struct sp_thread *t)
{
    if (t->state != SP_T_ACTIVE) return NULL;
    struct sp_uslot *s = sp_uslot_get(pool, t->proc->id);
    return s ? s : sp_uslot_make(pool, t->proc->id);
}

static __attribute__((noinline)) void *sp_upool_get_slow(struct syncpool_pool *pool)
{
    struct sp_thread *t = &sp_self;
    void *x;
    /* A P id of SP_UINLINE or more: the same private stack, found the long way. */
    struct sp_uslot *s = sp_uslot_mine(pool, t);
    if (s && (x = sp_upriv_pop(pool, s))) return x;
    if (SP_UNLIKELY(sp_guard_enter(&t->guard))) return sp_upool_get_unslotted(pool);
    if (!(s = sp_uslot_slow(pool, t))) {
        sp_guard_exit(&t->guard);
        if (sp_pool_setup_thread(t)) return syncpool_pool_get(pool);
        return sp_upool_get_unslotted(pool);
    }
    void *drop[SP_UPRIV_SLOTS];
    uint32_t ndrop = 0;
    x = NULL;
    sp_rcu_read_lock();
    uint64_t S = atomic_load_explicit(&pool->seq, memory_order_acquire);
    if (S != SP_USEQ_DEAD) {
        if (s->seq != S) ndrop = sp_uslot_age(pool, s, S, drop);
        void **tp = s->top;
        if (tp[-1] != NULL) {             /* a stack the fast path saw as stale */
            x = tp[-1];
            sp_upriv_set_top(s, tp - 1);
        } else {
            x = sp_upool_search(pool, s, t->proc->id, S);
        }
        if (!x) sp_owner_inc(&s->cnt[SP_U_MISS]);
    } else {
        sp_upool_extra(pool, SP_U_MISS, 1);   /* being destroyed: the header says so */
    }
    sp_rcu_read_unlock();
    sp_guard_exit(&t->guard);
    sp_upool_drop_n(pool, drop, ndrop);
    return x ? x : sp_upool_new(pool);
}

static __attribute__((noinline)) void sp_upool_put_slow(struct syncpool_pool *pool, void *x)
{
    struct sp_thread *t = &sp_self;
    struct sp_uslot *s = sp_uslot_mine(pool, t);
    if (s && sp_upriv_push(pool, s, x)) return;
    if (SP_UNLIKELY(sp_guard_enter(&t->guard))) {
        sp_upool_put_unslotted(pool, x);
        return;
    }
    if (!(s = sp_uslot_slow(pool, t))) {
        sp_guard_exit(&t->guard);
        if (sp_pool_setup_thread(t)) {
            syncpool_pool_put(pool, x);
            return;
        }
        sp_upool_put_unslotted(pool, x);
        return;
    }
    void *drop[SP_UPRIV_SLOTS + 1];
    uint32_t ndrop = 0;
    sp_rcu_read_lock();
    uint64_t S = atomic_load_explicit(&pool->seq, memory_order_acquire);
    if (S != SP_USEQ_DEAD) {
        if (s->seq != S) ndrop = sp_uslot_age(pool, s, S, drop);
        sp_owner_inc(&s->cnt[SP_U_PUT]);
        void **tp = s->top;
        if (((uintptr_t)tp & (sizeof(struct sp_upriv) - 1)) != 0) {   /* room (after ageing) */
            *tp = x;
            sp_upriv_set_top(s, tp + 1);
            sp_owner_inc(&s->cnt[SP_U_STACK_IN]);
        } else if (!sp_upool_spill(pool, s, S, x)) {
            drop[ndrop++] = x;
            sp_owner_inc(&s->cnt[SP_U_DROPPED]);
        }
    } else {
        drop[ndrop++] = x;                /* being destroyed: the header says so */
        sp_upool_extra(pool, SP_U_PUT, 1);
        sp_upool_extra(pool, SP_U_DROPPED, 1);
    }
    sp_rcu_read_unlock();
    sp_guard_exit(&t->guard);
    sp_upool_drop_n(pool, drop, ndrop);
}

/* ---- the API: the fast paths ----------------------------------------------------------- */

/* Owner only: no section (the stack is never freed while the pool lives, and no other thread
 * touches it), no guard (the header forbids a signal handler to use a pool the code it
 * interrupted may be using; the slow paths take the guard, as they use what a handler that
 * interrupted the allocator must not). */
SP_API void *syncpool_pool_get(syncpool_pool *pool)
{
    if (SP_UNLIKELY(pool == NULL)) return NULL;
    struct sp_uslot *s =
        atomic_load_explicit(&pool->inline_slot[sp_self.uidx], memory_order_relaxed);
    void *x = sp_upriv_pop(pool, s);
    return SP_LIKELY(x != NULL) ? x : sp_upool_get_slow(pool);
}

SP_API void syncpool_pool_put(syncpool_pool *pool, void *obj)
{
    if (SP_UNLIKELY(pool == NULL || obj == NULL)) return;   /* Go ignores a nil Put */
    struct sp_uslot *s =
        atomic_load_explicit(&pool->inline_slot[sp_self.uidx], memory_order_relaxed);
    if (SP_LIKELY(sp_upriv_push(pool, s, obj))) return;
    sp_upool_put_slow(pool, obj);
}

/* ---- create and destroy ------------------------------------------------------------------ */

SP_API syncpool_pool *syncpool_pool_create(const struct syncpool_pool_config *cfg)
{
    if (!cfg || (cfg->max_cached_bytes_per_p && cfg->object_size_hint &&
                 cfg->max_cached_bytes_per_p < cfg->object_size_hint)) {
        errno = EINVAL;
        return NULL;
    }
    struct syncpool_pool *pool =
        sp_upool_be_alloc(sizeof(*pool), BE_ZERO | BE_ALIGN(_Alignof(struct syncpool_pool)));
    if (!pool) {
        errno = ENOMEM;
        return NULL;
    }
    pool->new_object = cfg->new_object;
    pool->drop_object = cfg->drop_object;
    pool->arg = cfg->arg;
    pool->size = cfg->object_size_hint;
    /* The cap counts objects of known size; without a size, Go's pool: no cap but the
     * rotation. */
    size_t bytes = cfg->max_cached_bytes_per_p ? cfg->max_cached_bytes_per_p : SP_UPOOL_CACHE_BYTES;
    size_t cap = pool->size ? bytes / pool->size : SP_DEQUEUE_LIMIT;
    pool->cap = cap > SP_DEQUEUE_LIMIT ? SP_DEQUEUE_LIMIT : (uint32_t)cap;
    /* The private stack: what an idle thread may keep, so bounded by bytes; without a size,
     * Go's single private object. */
    size_t priv = pool->size ? SP_UPRIV_BYTES / pool->size : 1;
    if (priv > SP_UPRIV_SLOTS - 1) priv = SP_UPRIV_SLOTS - 1;
    if (priv > pool->cap) priv = pool->cap;
    pool->priv_cap = priv < 1 ? 1 : (uint32_t)priv;
    sp_assert(pool->cap >= 1 && pool->priv_cap >= 1 && pool->priv_cap < SP_UPRIV_SLOTS);
    for (uint32_t i = 0; i <= SP_UINLINE; i++)
        atomic_store_explicit(&pool->inline_slot[i], SP_USLOT_NONE, memory_order_relaxed);
    if (cfg->name) {
        strncpy(pool->name, cfg->name, sizeof pool->name - 1);
    } else {
        strcpy(pool->name, "pool");
    }
    atomic_store_explicit(&pool->seq, SP_USEQ_FIRST, memory_order_relaxed);
    pthread_mutex_lock(&sp_upool_lock);
    pool->next = sp_upools;
    sp_upools = pool;
    atomic_fetch_add_explicit(&sp_upool_count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sp_upool_lock);
    sp_pool_warm_now();   /* a program's pool rotates from the start (Go's victim semantics) */
    return pool;
}

/* Every object of generation slot g of s to drop_object, its rings freed, the chain empty.  No
 * section can use slot g (after a grace period, or the pool is being destroyed).  Returns how
 * many. */
static uint64_t sp_uslot_drain(struct syncpool_pool *pool, struct sp_uslot *s, unsigned g)
{
    /* Detached first: a fork in the middle leaves the child a clean chain (and leaks, in the
     * child only, what was not dropped yet). */
    struct sp_dequeue *tail = atomic_exchange_explicit(&s->tail[g], NULL, memory_order_acquire);
    s->own[g].head = NULL;
    s->own[g].count = 0;
    /* As sp_chain_drain, but the program's drop_object runs outside the guard and each ring is
     * freed inside it. */
    uint64_t n = 0;
    for (struct sp_dequeue *d = tail, *next; d; d = next) {
        void *x;
        while ((x = sp_dequeue_pop_tail(d)) != NULL) {
            sp_upool_drop(x, pool);
            n++;
        }
        next = atomic_load_explicit(&d->next, memory_order_relaxed);
        sp_upool_be_free(d, true);
    }
    return n;
}

SP_API void syncpool_pool_destroy(syncpool_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&sp_upool_lock);
    struct syncpool_pool **pp = &sp_upools;
    while (*pp && *pp != pool) pp = &(*pp)->next;
    bool found = *pp != NULL;
    if (found) {
        *pp = pool->next;
        atomic_fetch_sub_explicit(&sp_upool_count, 1, memory_order_relaxed);
        /* From here on every Get and Put takes the slow path, which sees DEAD. */
        atomic_store_explicit(&pool->seq, SP_USEQ_DEAD, memory_order_seq_cst);
    }
    pthread_mutex_unlock(&sp_upool_lock);
    if (!found) return;                   /* not a pool, or destroyed already */
    /* A rotation that published this pool drains it under this lock: wait for it. */
    pthread_mutex_lock(&sp_upool_drain_lock);
    pthread_mutex_unlock(&sp_upool_drain_lock);
    uint64_t n = 0;
    for (uint32_t ci = 0; ci < SP_PROC_CHUNKS; ci++) {
        struct sp_uslot *_Atomic *chunk = atomic_load_explicit(&pool->dir[ci], memory_order_acquire);
        if (!chunk) continue;
        for (uint32_t i = 0; i < SP_PROC_CHUNK; i++) {
            struct sp_uslot *s = atomic_load_explicit(&chunk[i], memory_order_acquire);
            if (!s) continue;
            uint32_t len = sp_upriv_len(pool, s);
            sp_upool_drop_n(pool, sp_upriv_base(pool, s), len);
            n += len;
            for (unsigned g = 0; g < SP_UGENS; g++) n += sp_uslot_drain(pool, s, g);
            sp_upool_be_free(s, false);
        }
        sp_upool_be_free((void *)chunk, false);
    }
    (void)n;
    sp_upool_be_free(pool, false);
}

/* ---- the rotation ------------------------------------------------------------------------ */

void sp_upools_publish(void)
{
    pthread_mutex_lock(&sp_upool_drain_lock);    /* until sp_upools_drain */
    sp_assert(sp_upool_rot == NULL);
    pthread_mutex_lock(&sp_upool_lock);
    for (struct syncpool_pool *pool = sp_upools; pool; pool = pool->next) {
        uint64_t S = atomic_load_explicit(&pool->seq, memory_order_relaxed) + 1;
        sp_assert(S != SP_USEQ_DEAD);            /* a dead pool is off the list */
        /* The new victim (S - 1) may hold objects; S's chains were drained by the rotation
         * before (sp_upools_drain).  Release: Gets that load S see that drain. */
        atomic_store_explicit(&pool->victim_empty[(S - 1) & (SP_UGENS - 1)], 0,
                              memory_order_relaxed);
        atomic_store_explicit(&pool->seq, S, memory_order_release);
        pool->rot_next = sp_upool_rot;
        sp_upool_rot = pool;
    }
    pthread_mutex_unlock(&sp_upool_lock);
}

uint64_t sp_upools_drain(void)
{
    sp_assert_held(&sp_upool_drain_lock);
    uint64_t total = 0;
    struct syncpool_pool *pool = sp_upool_rot;
    sp_upool_rot = NULL;
    for (; pool; pool = pool->rot_next) {
        /* Alive: its destroy waits for this lock.  seq is as publish left it. */
        uint64_t S = atomic_load_explicit(&pool->seq, memory_order_relaxed), n = 0;
        unsigned aged = (unsigned)(S - 2) & (SP_UGENS - 1), next = (unsigned)(S + 1) & (SP_UGENS - 1);
        uint32_t np = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
        for (uint32_t id = 0; id < np; id++) {
            struct sp_uslot *s = sp_uslot_get(pool, id);
            if (!s) continue;
            n += sp_uslot_drain(pool, s, aged);
            n += sp_uslot_drain(pool, s, next);
        }
        if (n) sp_upool_extra(pool, SP_U_DROPPED, n);
        total += n;
    }
    pthread_mutex_unlock(&sp_upool_drain_lock);
    return total;
}

/* ---- thread exit, fork ------------------------------------------------------------------- */

void sp_upools_retire(struct sp_thread *t)
{
    if (!t->proc || atomic_load_explicit(&sp_upool_count, memory_order_relaxed) == 0) return;
    uint32_t id = t->proc->id;
    pthread_mutex_lock(&sp_upool_lock);
    for (struct syncpool_pool *pool = sp_upools; pool; pool = pool->next) {
        struct sp_uslot *s = sp_uslot_get(pool, id);
        uint32_t n = s ? sp_upriv_len(pool, s) : 0;
        if (n == 0) continue;
        sp_rcu_read_lock();
        uint64_t S = atomic_load_explicit(&pool->seq, memory_order_acquire);
        /* Objects of the victim to my chain there, all others to my local chain (older ones
         * too: dropping them here would run the program's code under our lock, and the rotation
         * drops them two periods later).  What no ring takes stays for the P's next owner. */
        unsigned g = (unsigned)(s->seq == S - 1 ? S - 1 : S) & (SP_UGENS - 1);
        void **base = sp_upriv_base(pool, s);
        uint32_t k = sp_chain_push_head_n(&s->own[g].head, &s->tail[g], base, n);
        s->own[g].count += k;
        sp_owner_add(&s->cnt[SP_U_STACK_OUT], k);
        if (k && g != (S & (SP_UGENS - 1)))
            atomic_store_explicit(&pool->victim_empty[g], 0, memory_order_relaxed);
        memmove(base, base + k, (n - k) * sizeof(void *));
        sp_upriv_set_top(s, base + (n - k));
        if (k == n) s->seq = S;
        sp_rcu_read_unlock();
    }
    pthread_mutex_unlock(&sp_upool_lock);
}

void sp_upools_fork_prepare(void) { pthread_mutex_lock(&sp_upool_lock); }
void sp_upools_fork_parent(void) { pthread_mutex_unlock(&sp_upool_lock); }
void sp_upools_fork_child(void)
{
    pthread_mutex_init(&sp_upool_lock, NULL);
    /* A rotation of the parent held it between publish and drain: the child's rotations drain
     * those slots themselves (sp_upools_drain drains the next local too). */
    pthread_mutex_init(&sp_upool_drain_lock, NULL);
    sp_upool_rot = NULL;
}

/* ---- statistics -------------------------------------------------------------------------- */

void sp_upools_each_stats(void (*fn)(const char *name, const struct sp_class_stats *s, void *arg),
                          void *arg)
{
    /* Summed under the lock into memory taken before it (fn may allocate, and a thread's
     * first allocation takes the rotation's lock, which fork takes before ours), shown after. */
    struct sp_upool_row { char name[64]; struct sp_class_stats st; } *rows;
    uint32_t max = atomic_load_explicit(&sp_upool_count, memory_order_relaxed) + 8, k = 0;
    if (max == 8 || !(rows = sp_upool_be_alloc(sizeof(*rows) * max, 0))) return;
    pthread_mutex_lock(&sp_upool_lock);
    for (struct syncpool_pool *pool = sp_upools; pool && k < max; pool = pool->next, k++) {
        uint64_t c[SP_U_N];
        for (int j = 0; j < SP_U_N; j++)
            c[j] = atomic_load_explicit(&pool->extra[j], memory_order_relaxed);
        uint32_t np = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
        for (uint32_t id = 0; id < np; id++) {
            struct sp_uslot *s = sp_uslot_get(pool, id);
            if (!s) continue;
            for (int j = 0; j < SP_U_N; j++) c[j] += __atomic_load_n(&s->cnt[j], __ATOMIC_RELAXED);
        }
        /* A fast Get counts nothing: the private hits are what entered the stacks, less what
         * left them otherwise and what is on them. */
        uint64_t on_stacks = 0;
        for (uint32_t id = 0; id < np; id++) {
            struct sp_uslot *s = sp_uslot_get(pool, id);
            if (s) on_stacks += sp_upriv_len(pool, s);
        }
        uint64_t in = c[SP_U_PUT_FAST] + c[SP_U_STACK_IN], left = c[SP_U_STACK_OUT] + on_stacks;
        struct sp_class_stats *st = &rows[k].st;
        *st = (struct sp_class_stats){
            .size = pool->size, .hits_private = in > left ? in - left : 0,
            .hits_shared = c[SP_U_HIT_SHARED], .steals = c[SP_U_STEAL],
            .hits_victim = c[SP_U_HIT_VICTIM], .misses = c[SP_U_MISS],
            .puts = c[SP_U_PUT_FAST] + c[SP_U_PUT], .released = c[SP_U_DROPPED]};
        st->gets = st->hits_private + st->hits_shared + st->steals + st->hits_victim + st->misses;
        /* As for the classes: put in = cached + handed out again + dropped (clamped at 0). */
        uint64_t out = st->gets - st->misses + st->released;
        st->cached_objects = st->puts > out ? st->puts - out : 0;
        st->cached_bytes = st->cached_objects * st->size;
        memcpy(rows[k].name, pool->name, sizeof rows[k].name);
    }
    pthread_mutex_unlock(&sp_upool_lock);
    for (uint32_t i = 0; i < k; i++) fn(rows[i].name, &rows[i].st, arg);
    sp_upool_be_free(rows, false);
}
