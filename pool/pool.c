/* pool.c — the slow paths of Get and Put, generations, and thread attach/detach. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "backend.h"
#include "nested.h"
#include "pass.h"

/* sp_pblock_off's stacks: every top at sp_off_stack[1].slot[0], which is 64-aligned (full) and has
 * NULL below it (empty). */
static const struct sp_priv sp_off_stack[2];
const struct sp_pblock sp_pblock_off = {
    .top = {[0 ... SP_MAX_CLASSES - 1] = (void **)&sp_off_stack[1].slot[0]}};

__thread struct sp_thread sp_self __attribute__((tls_model("initial-exec"))) = {
    .get_pb = SP_PB_OFF, .put_pb = SP_PB_OFF};
struct sp_gen *_Atomic sp_local_gen;
struct sp_gen *_Atomic sp_victim_gen;
uint32_t sp_cap[SP_MAX_CLASSES];
uint8_t sp_priv_cap[SP_MAX_CLASSES];
uint8_t sp_priv_batch[SP_MAX_CLASSES];
_Atomic uint64_t sp_released[SP_MAX_CLASSES];
/* Held while a generation is recycled and while statistics read live pblocks: bounded work, never
 * a wait for a grace period.  The fork handlers take it (sp_pool_fork_prepare). */
static pthread_mutex_t sp_recycle_lock = PTHREAD_MUTEX_INITIALIZER;

static _Atomic uint64_t sp_gen_seq;

/* ---- generations ---------------------------------------------------------------------- */

struct sp_gen *sp_gen_new(void)
{
    struct sp_gen *g = be_alloc_internal(sizeof(*g), BE_ZERO);
    if (g) g->seq = atomic_fetch_add_explicit(&sp_gen_seq, 1, memory_order_relaxed) + 1;
    return g;
}

void sp_gen_free(struct sp_gen *g) { be_free_internal(g); }

void sp_pool_fork_prepare(void) { pthread_mutex_lock(&sp_recycle_lock); }
void sp_pool_fork_parent(void) { pthread_mutex_unlock(&sp_recycle_lock); }
void sp_pool_fork_child(void) { pthread_mutex_init(&sp_recycle_lock, NULL); }

static struct sp_pblock *sp_gen_pblock(struct sp_gen *g, uint32_t pid)
{
    struct sp_pblock *_Atomic *chunk =
        atomic_load_explicit(&g->dir[pid >> SP_PROC_CHUNK_SHIFT], memory_order_acquire);
    if (!chunk) return NULL;
    /* Acquire pairs with the owner's release when it published its pblock. */
    return atomic_load_explicit(&chunk[pid & (SP_PROC_CHUNK - 1)], memory_order_acquire);
}

/* Owner only: creates my pblock in g. */
static struct sp_pblock *sp_gen_pblock_create(struct sp_gen *g, uint32_t pid)
{
    struct sp_pblock *_Atomic *_Atomic *slot = &g->dir[pid >> SP_PROC_CHUNK_SHIFT];
    struct sp_pblock *_Atomic *chunk = atomic_load_explicit(slot, memory_order_acquire);
    if (!chunk) {
        struct sp_pblock *_Atomic *fresh =
            be_alloc_internal(sizeof(struct sp_pblock *) * SP_PROC_CHUNK, BE_ZERO);
        if (!fresh) return NULL;
        /* Ps of the same chunk race to create it: one CAS wins, the others use the winner's. */
        if (atomic_compare_exchange_strong_explicit(slot, &chunk, fresh, memory_order_acq_rel,
                                                    memory_order_acquire))
            chunk = fresh;
        else
            be_free_internal(fresh);
    }
    struct sp_pblock *pb = be_alloc_internal(sizeof(*pb), BE_ZERO | BE_ALIGN(128));
    if (!pb) return NULL;
    /* Empty private stacks of sp_priv_cap[c] objects (pool.h): slot[base - 1] stays NULL. */
    for (unsigned c = 0; c < SP_MAX_CLASSES; c++)
        pb->top[c] = &pb->priv[c].slot[SP_PRIV_MAX + 1 - (c < sp_nclasses ? sp_priv_cap[c] : 0)];
    /* Only P pid's owner writes this entry; release publishes the zeroed pblock to thieves. */
    atomic_store_explicit(&chunk[pid & (SP_PROC_CHUNK - 1)], pb, memory_order_release);
    return pb;
}

/* Points my fast paths at pb (my pblock in generation g), or at "off".  Inside a section.
 *
 * The rotation also stores "off" here, after publishing a new local and after sp_rcu_barrier
 * (sp_pool_publish).  If I stored pb for a g that is no longer local, one of the two must win:
 * after my stores I fence and load local again.  If that load still sees g, the rotation's
 * barrier came after my stores (or it would have shown me the new local), so its "off" stores
 * come after mine and win.  (get_pb's store is ordered before put_pb's.)  If it sees a newer
 * local, I store "off" myself.  Either way the fast paths never use a pblock of a generation that
 * is not local outside a section that started while it was. */
static void sp_fast_paths_set(struct sp_thread *t, struct sp_gen *g, struct sp_pblock *pb)
{
    atomic_store_explicit(&t->get_pb, pb ? pb : SP_PB_OFF, memory_order_relaxed);
    /* seq_cst store then seq_cst load: the store-load order the re-check needs (an xchg). */
    atomic_store_explicit(&t->put_pb, pb ? pb : SP_PB_OFF, memory_order_seq_cst);
    if (!pb) return;
    if (atomic_load_explicit(&sp_local_gen, memory_order_seq_cst) != g) {
        atomic_store_explicit(&t->get_pb, SP_PB_OFF, memory_order_relaxed);
        atomic_store_explicit(&t->put_pb, SP_PB_OFF, memory_order_relaxed);
    }
}

static struct sp_pblock *sp_pblock_refresh(struct sp_thread *t, struct sp_gen *g, bool create)
{
    /* The generation changed since this thread last looked (or it has no pblock there yet).  A
     * previous owner of my P id may have left one: reuse it, with whatever it caches. */
    struct sp_pblock *pb = sp_gen_pblock(g, t->proc->id);
    if (!pb && create) pb = sp_gen_pblock_create(g, t->proc->id);
    t->gen_seq = g->seq;
    t->pb = pb;
    sp_fast_paths_set(t, g, pb);
    return pb;
}

static void sp_fast_paths_off(void *owner, void *arg)
{
    (void)arg;
    struct sp_thread *t = owner;
    if (!t) return;                       /* a reader that is not a pool thread (tests) */
    atomic_store_explicit(&t->get_pb, SP_PB_OFF, memory_order_relaxed);
    atomic_store_explicit(&t->put_pb, SP_PB_OFF, memory_order_relaxed);
}

struct sp_gen *sp_pool_publish(struct sp_gen *fresh)
{
    struct sp_gen *local = atomic_load_explicit(&sp_local_gen, memory_order_relaxed);
    struct sp_gen *old = atomic_load_explicit(&sp_victim_gen, memory_order_relaxed);
    /* Readers load local, then victim.  Storing victim first means a reader that sees the fresh
     * local also sees local as victim; in between, a reader may see the same generation as both
     * (harmless: it searches it twice).  `old` stays readable until the caller's grace period. */
    atomic_store_explicit(&sp_victim_gen, local, memory_order_release);
    atomic_store_explicit(&sp_local_gen, fresh, memory_order_seq_cst);
    /* Every thread's fast paths still point into `local`: after the barrier, turn them to
     * "off" (see sp_fast_paths_set), so their next Get/Put takes the slow path, which finds
     * the fresh local. */
    sp_rcu_barrier();
    sp_rcu_each_reader(sp_fast_paths_off, NULL);
    return old;
}

static void sp_release_obj(void *obj, void *arg)
{
    be_free_sized(obj, *(const uint32_t *)arg, BE_NO_TCACHE);
}

uint64_t sp_gen_recycle(struct sp_gen *g)
{
    uint64_t total = 0;
    pthread_mutex_lock(&sp_recycle_lock);
    for (uint32_t ci = 0; ci < SP_PROC_CHUNKS; ci++) {
        struct sp_pblock *_Atomic *chunk = atomic_load_explicit(&g->dir[ci], memory_order_acquire);
        if (!chunk) continue;
        for (uint32_t i = 0; i < SP_PROC_CHUNK; i++) {
            struct sp_pblock *pb = atomic_load_explicit(&chunk[i], memory_order_acquire);
            if (!pb) continue;
            struct sp_proc *proc = sp_proc_get(ci * SP_PROC_CHUNK + i);
            for (unsigned c = 0; c < sp_nclasses; c++) {
                uint64_t n = 0;
                /* The fast paths' counters go to the P's totals (only this fold writes those). */
                for (int k = 0; k < SP_PB_NCOUNTERS; k++)
                    __atomic_fetch_add(&proc->cnt[sp_pb_counter[k]][c], pb->cnt[k][c],
                                       __ATOMIC_RELAXED);
                for (void *x; (x = sp_priv_pop(pb, c)) != NULL; n++)
                    sp_release_obj(x, &sp_class_size[c]);
                n += sp_chain_drain(atomic_load_explicit(&pb->tail[c], memory_order_acquire),
                                    sp_release_obj, &sp_class_size[c]);
                if (n) atomic_fetch_add_explicit(&sp_released[c], n, memory_order_relaxed);
                total += n;
            }
            be_free_internal(pb);
        }
        be_free_internal((void *)chunk);
    }
    /* Empty again, under a seq never used before (threads' cached pblocks compare seqs). */
    memset(g, 0, sizeof *g);
    g->seq = atomic_fetch_add_explicit(&sp_gen_seq, 1, memory_order_relaxed) + 1;
    pthread_mutex_unlock(&sp_recycle_lock);
    return total;
}

void sp_pool_fast_counts(uint64_t out[SP_NCOUNTERS][SP_MAX_CLASSES])
{
    pthread_mutex_lock(&sp_recycle_lock);   /* no pblock is freed meanwhile */
    struct sp_gen *gens[2] = {atomic_load_explicit(&sp_local_gen, memory_order_acquire),
                              atomic_load_explicit(&sp_victim_gen, memory_order_acquire)};
    for (int k = 0; k < 2; k++) {
        struct sp_gen *g = gens[k];
        if (!g || (k == 1 && g == gens[0])) continue;
        for (uint32_t ci = 0; ci < SP_PROC_CHUNKS; ci++) {
            struct sp_pblock *_Atomic *chunk =
                atomic_load_explicit(&g->dir[ci], memory_order_acquire);
            if (!chunk) continue;
            for (uint32_t i = 0; i < SP_PROC_CHUNK; i++) {
                struct sp_pblock *pb = atomic_load_explicit(&chunk[i], memory_order_acquire);
                if (!pb) continue;
                for (int j = 0; j < SP_PB_NCOUNTERS; j++)
                    for (unsigned c = 0; c < sp_nclasses; c++)
                        out[sp_pb_counter[j]][c] += __atomic_load_n(&pb->cnt[j][c], __ATOMIC_RELAXED);
            }
        }
    }
    pthread_mutex_unlock(&sp_recycle_lock);
}

/* ---- the private stack's batches (pool.h, sp_priv_batch) ------------------------------------ */

/* My private stack of cls is empty (top[-1] == NULL): takes up to sp_priv_batch[cls] (at least 1)
 * of my shared chain's newest objects with one CAS, keeps all but the newest on the stack (oldest
 * at the bottom: the order of single pops) and returns the newest; NULL if the chain is empty. */
static inline __attribute__((always_inline)) void *sp_priv_refill(struct sp_pblock *pb,
                                                                   size_t cls)
{
    struct sp_own *o = &pb->own[cls];
    void **top = pb->top[cls];
    uint32_t m = sp_priv_batch[cls];
    /* The batch lands at top[0..k), inside the stack: it is empty and k <= its size. */
    uint32_t k = sp_chain_pop_head_n(o->head, top, m + (m == 0));
    if (k == 0) return NULL;
    o->count -= k;                       /* count never undercounts (only steals go unseen) */
    pb->top[cls] = top + k - 1;          /* top[k - 1], the newest, is handed out */
    return top[k - 1];
}

/* My private stack of cls is full: moves all of it, oldest first, to my shared chain (at most
 * `room` objects, what the cap allows; sp_cap_room), with one head add per ring used (a new ring
 * when the newest is full), then pushes x onto what is left of the stack.  false: no memory for
 * a ring, the stack is as it was and x not taken.
 *
 * The batch leaves the stack before it enters the chain.  A child forked while another thread
 * is in here reuses that thread's pblock as it was (the fork handler frees every P id, and pools
 * keep what a vanished P left), and it sees a prefix of this thread's stores: so at every store
 * each object must be in one place or in none (lost to the child, which is only a leak), never
 * on the stack and in the chain at once.  Hence: lower the top past the batch, slide what stays
 * down below the new top, and only then publish the batch with the ring's head add (its release
 * orders the stores before it).  The NULL below the stack is never written. */
static inline __attribute__((always_inline)) bool sp_priv_spill(struct sp_pblock *pb, size_t cls,
                                                              void *x, uint32_t room)
{
    struct sp_own *o = &pb->own[cls];
    uint32_t cap = sp_priv_cap[cls];
    void **base = pb->top[cls] - cap;
    uint32_t want = cap < room ? cap : room, rest = cap - want;
    /* Normally the whole stack goes, and it is pushed from where it lies (above the lowered top,
     * nothing writes there before the push); when the cap keeps some of it, the batch is copied
     * out first, since what stays slides down over it. */
    void *copy[SP_PRIV_MAX], **batch = base;
    if (SP_UNLIKELY(rest != 0)) {
        for (uint32_t i = 0; i < want; i++) copy[i] = base[i];
        batch = copy;
    }
    pb->top[cls] = base + rest;
    /* The compiler must not sink the top's store below the slide or the head add. */
    atomic_signal_fence(memory_order_seq_cst);
    for (uint32_t i = 0; i < rest; i++) base[i] = base[want + i];
    atomic_signal_fence(memory_order_seq_cst);
    /* The newest ring first (the common case), then new rings for what it could not take. */
    uint32_t k = o->head ? sp_dequeue_push_head_n(o->head, batch, want) : 0;
    if (SP_UNLIKELY(k < want)) k += sp_chain_push_head_n(&o->head, &pb->tail[cls], batch + k,
                                                          want - k);
    if (SP_UNLIKELY(k < want)) {
        /* No memory for a ring: what was not pushed goes back under what stayed (older), with
         * the top at the bottom meanwhile, so that no object shows twice below it. */
        pb->top[cls] = base;
        atomic_signal_fence(memory_order_seq_cst);
        for (uint32_t i = rest; i-- > 0;) base[want - k + i] = base[i];
        for (uint32_t i = k; i < want; i++) base[i - k] = batch[i];
        atomic_signal_fence(memory_order_seq_cst);
        pb->top[cls] = base + rest + want - k;
        if (k == 0) return false;           /* full again, as it was */
    }
    o->count += k;
    *pb->top[cls] = x;
    pb->top[cls]++;
    return true;
}

/* ---- Get / Put slow paths ---------------------------------------------------------------- */

/* A steal takes up to half of the victim P's oldest ring, at most this many, with one CAS:
 * where one thread frees what another allocates, each steal then pays for many Gets. */
#define SP_STEAL_MAX 32

/* The rest of a batch steal becomes mine: my private stack as far as it has room, then my shared
 * chain (one head add for the lot), as far as the cap allows; the remainder goes back to the
 * backend (counted as overflow).  Not counted as Puts: each was put once, by the P it was stolen
 * from.  t->pb belongs to g. */
static void sp_keep_stolen(struct sp_thread *t, struct sp_gen *g, size_t cls, void **v,
                           uint32_t n)
{
    struct sp_pblock *pb = t->pb ? t->pb : sp_pblock_refresh(t, g, true);
    uint32_t kept = 0;
    if (pb) {
        while (kept < n && sp_priv_push(pb, cls, v[kept])) kept++;
        struct sp_own *o = &pb->own[cls];
        /* cap counts the private stack, which is full if anything is left. */
        uint32_t used = o->count + sp_priv_cap[cls];
        uint32_t room = used < sp_cap[cls] ? sp_cap[cls] - used : 0;
        uint32_t k = n - kept < room ? n - kept : room;
        k = sp_chain_push_head_n(&o->head, &pb->tail[cls], v + kept, k);
        o->count += k;
        kept += k;
    }
    for (uint32_t i = kept; i < n; i++) {
        be_free_class(v[i], sp_class_size[cls], t->zone_flags);
        sp_count(t->proc, cls, SP_C_OVERFLOW);
    }
}

/* Steal from the other Ps' shared tails, starting after me (Go's order); n > 1 Ps.  Out of
 * line, with its batch buffer, so that a miss with nobody to steal from stays cheap. */
static __attribute__((noinline)) void *sp_steal(struct sp_thread *t, struct sp_gen *g, size_t cls,
                                                uint32_t n)
{
    uint32_t me = t->proc->id;
    for (uint32_t i = 1; i < n; i++) {
        uint32_t p = me + i;
        if (p >= n) p -= n;
        struct sp_pblock *pb = sp_gen_pblock(g, p);
        void *got[SP_STEAL_MAX];
        uint32_t k;
        if (pb && (k = sp_chain_pop_tail_n(&pb->tail[cls], got, SP_STEAL_MAX)) != 0) {
            sp_count(t->proc, cls, SP_C_STEAL);
            if (k > 1) sp_keep_stolen(t, g, cls, got + 1, k - 1);
            return got[0];
        }
    }
    return NULL;
}

/* The victim v: my private stack, then every P's shared tail starting with mine.  Victim objects
 * are taken only after all primaries, so unused ones age out. */
static __attribute__((noinline)) void *sp_get_victim(struct sp_thread *t, struct sp_gen *v,
                                                     size_t cls, uint32_t n)
{
    uint32_t me = t->proc->id;
    void *x;
    struct sp_pblock *pb = sp_gen_pblock(v, me);
    if (pb && (x = sp_priv_pop(pb, cls)) != NULL) {   /* my own P's: owner-only, as in local */
        sp_count(t->proc, cls, SP_C_HIT_VICTIM);
        return x;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = me + i;
        if (p >= n) p -= n;
        pb = sp_gen_pblock(v, p);
        if (pb && (x = sp_chain_pop_tail(&pb->tail[cls])) != NULL) {
            sp_count(t->proc, cls, SP_C_HIT_VICTIM);
            return x;
        }
    }
    /* Empty: later Gets skip it (Go stores victimSize = 0).  A Put that raced in through a
     * stale `local` is then found by nobody and released at the next rotation. */
    atomic_store_explicit(&v->victim_empty[cls], 1, memory_order_relaxed);
    return NULL;
}

/* Steal, then the victim, then a miss (Go's getSlow). */
static void *sp_get_slow(struct sp_thread *t, struct sp_gen *g, size_t cls)
{
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
    void *x;
    if (n > 1 && (x = sp_steal(t, g, cls, n)) != NULL) return x;
    struct sp_gen *v = atomic_load_explicit(&sp_victim_gen, memory_order_acquire);
    if (sp_victim_worth_searching(v, g, cls) && (x = sp_get_victim(t, v, cls, n)) != NULL)
        return x;
    sp_count(t->proc, cls, SP_C_MISS);
    return NULL;
}

/* Past the private stack: own shared head, then steal and victim.  Inside a section; the
 * thread is ACTIVE. */
static void *sp_get_more(struct sp_thread *t, size_t cls)
{
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_pblock *pb = t->pb;
    void *x;
    if (g->seq != t->gen_seq) pb = sp_pblock_refresh(t, g, false);
    /* My private stack: empty if the fast path just looked at it, but it saw "off" (a new
     * generation, or none of mine yet), and the refill below must find it empty. */
    if (pb && (x = sp_priv_pop(pb, cls)) != NULL) {
        sp_owner_inc(&pb->cnt[SP_PB_HIT_PRIVATE][cls]);
        return x;
    }
    /* count never undercounts (only steals go unseen), so 0 means the chain is empty: skip the
     * walk back through older rings, which nobody unlinks while no thief runs. */
    if (pb && pb->own[cls].count) {
        if ((x = sp_priv_refill(pb, cls)) != NULL) {
            sp_owner_inc(&pb->cnt[SP_PB_HIT_SHARED][cls]);
            return x;
        }
        pb->own[cls].count = 0;   /* a full walk found nothing, and only I push: empty */
    }
    return sp_get_slow(t, g, cls);
}

void *sp_get_rest(struct sp_thread *t, size_t cls)
{
    void *x = SP_LIKELY(t->state == SP_T_ACTIVE) ? sp_get_more(t, cls) : NULL;
    sp_rcu_exit(&t->rcu);
    return x;
}

/* The rare parts of a miss, out of line: the backend had no memory (purge and retry, backend.h),
 * and the thread's first miss, which binds it to the zone. */
static __attribute__((noinline)) void *sp_pool_alloc_class_after_oom(struct sp_thread *t,
                                                                     size_t cls, int flags)
{
    void *x = be_alloc_class_after_oom((unsigned)cls, sp_class_size[cls], flags, t->zone_flags);
    if (!x) errno = ENOMEM;
    return x;
}

static __attribute__((noinline)) int sp_zone_flags_first(struct sp_thread *t)
{
    return t->zone_flags = be_zone_bind();
}

void *sp_pool_alloc_class(struct sp_thread *t, size_t cls, int flags)
{
    int zf = t->zone_flags;
    if (SP_UNLIKELY(zf == 0)) zf = sp_zone_flags_first(t);
    void *x = be_alloc_class((unsigned)cls, sp_class_size[cls], flags, zf);
    if (SP_UNLIKELY(x == NULL)) x = sp_pool_alloc_class_after_oom(t, cls, flags);
    /* The backend call was inside the section: a signal handler interrupting it is nested. */
    sp_rcu_exit(&t->rcu);
    sp_pool_drain_deferred(t);
    return x;
}

__attribute__((noinline)) void *sp_get_rest_or_alloc(struct sp_thread *t, size_t cls)
{
    void *x = sp_get_more(t, cls);
    if (x) {
        sp_rcu_exit(&t->rcu);
        return x;
    }
    return sp_pool_alloc_class(t, cls, 0);   /* a miss */
}

/* ---- a signal handler inside the allocator (pool.h, sp_get_nested) ------------------------- */

void *sp_get_nested(size_t cls)
{
    return sp_nested_alloc(sp_class_size[cls], 0);
}

bool sp_put_nested(struct sp_thread *t, void *x)
{
    if (sp_nested_owns(x)) {              /* the region is lock-free: give it back now */
        sp_nested_free(x);
        return true;
    }
    void *old = atomic_load_explicit(&t->deferred, memory_order_relaxed);
    do {
        *(void **)x = old;
    } while (!atomic_compare_exchange_weak_explicit(&t->deferred, &old, x, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

void sp_pool_drain_deferred_slow(struct sp_thread *t)
{
    /* Taken whole: a handler that interrupts the loop below pushes onto a fresh list. */
    void *x = atomic_exchange_explicit(&t->deferred, NULL, memory_order_relaxed);
    while (x) {
        void *next = *(void **)x;
        unsigned c;
        if (be_zone_lookup(x, &c)) {
            if (!sp_pool_put(c, x)) sp_pool_free_unpooled(c, x);
        } else {
            sp_pool_pass_free(x);
        }
        x = next;
    }
}

void *sp_get_shared_or_alloc(struct sp_thread *t, size_t cls)
{
    struct sp_pblock *pb = t->pb;
    void *x = sp_priv_refill(pb, cls);
    if (SP_UNLIKELY(x == NULL)) {
        pb->own[cls].count = 0;   /* a full walk found nothing, and only I push: empty */
        return sp_get_rest_or_alloc(t, cls);
    }
    sp_owner_inc(&pb->cnt[SP_PB_HIT_SHARED][cls]);
    sp_rcu_exit(&t->rcu);
    return x;
}

/* Past the private stack (or a Put that must refresh first).  Inside a section; ACTIVE. */
static bool sp_put_more(struct sp_thread *t, size_t cls, void *x)
{
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_pblock *pb = t->pb;
    if (g->seq != t->gen_seq || pb == NULL) {
        /* No memory for my pblock in this generation: try again only every 64th Put (each try
         * may cost a failing mmap); meanwhile the caller frees to the backend. */
        if (g->seq == t->gen_seq && t->pb_retry != 0) {
            t->pb_retry--;
            return false;
        }
        pb = sp_pblock_refresh(t, g, true);
        if (pb == NULL) {
            t->pb_retry = 63;
            return false;
        }
    }
    struct sp_own *o = &pb->own[cls];
    sp_owner_inc(&pb->cnt[SP_PB_PUT][cls]);
    if (sp_priv_push(pb, cls, x)) return true;
    /* The private stack is full here. */
    uint32_t room = sp_cap_room(o, cls);
    if (room == 0) {
        if (!sp_recount_due(t, cls)) goto overflow;
        o->count = sp_chain_len(o->head);
        if ((room = sp_cap_room(o, cls)) == 0) goto overflow;
    }
    if (sp_priv_batch[cls] == 0) {        /* Go's single private slot: x to the shared head */
        if (sp_chain_push_head(&o->head, &pb->tail[cls], x)) {
            o->count++;
            return true;
        }
    } else if (sp_priv_spill(pb, cls, x, room)) {   /* the whole stack to the shared head */
        return true;
    }
    /* No memory for a new ring: count the chain as full, so that only every 64th refusal tries
     * again (the recount above), not every Put (each try may cost a failing mmap). */
    o->count = sp_cap[cls];
overflow:
    sp_count(t->proc, cls, SP_C_OVERFLOW);
    return false;
}

bool sp_put_rest(struct sp_thread *t, size_t cls, void *x)
{
    bool ok = SP_LIKELY(t->state == SP_T_ACTIVE) && sp_put_more(t, cls, x);
    sp_rcu_exit(&t->rcu);
    return ok;
}

__attribute__((noinline)) bool sp_put_rest_or_free(struct sp_thread *t, size_t cls, void *x)
{
    bool ok = sp_put_more(t, cls, x);
    if (!ok) be_free_class(x, sp_class_size[cls], t->zone_flags);   /* inside the section */
    sp_rcu_exit(&t->rcu);
    sp_pool_drain_deferred(t);
    return true;
}

bool sp_put_refused_free(struct sp_thread *t, size_t cls, void *x)
{
    be_free_class(x, sp_class_size[cls], t->zone_flags);   /* inside the section */
    sp_rcu_exit(&t->rcu);
    return true;
}

bool sp_put_spill_or_free(struct sp_thread *t, size_t cls, void *x)
{
    struct sp_pblock *pb = t->pb;
    if (SP_UNLIKELY(!sp_priv_spill(pb, cls, x, sp_cap_room(&pb->own[cls], cls))))
        return sp_put_rest_or_free(t, cls, x);
    sp_owner_inc(&pb->cnt[SP_PB_PUT][cls]);
    sp_rcu_exit(&t->rcu);
    return true;
}

/* ---- set-up ------------------------------------------------------------------------------ */

bool sp_pool_init(size_t cache_bytes)
{
    for (unsigned c = 0; c < sp_nclasses; c++) {
        size_t cap = cache_bytes / sp_class_size[c];
        sp_cap[c] = cap < 1 ? 1 : cap > SP_DEQUEUE_LIMIT ? SP_DEQUEUE_LIMIT : (uint32_t)cap;
        uint32_t priv = SP_PRIV_BYTES / sp_class_size[c];
        if (priv > SP_PRIV_MAX) priv = SP_PRIV_MAX;
        if (priv > sp_cap[c]) priv = sp_cap[c];
        sp_priv_cap[c] = (uint8_t)(priv < 1 ? 1 : priv);
        sp_priv_batch[c] = sp_priv_cap[c] > 1 ? (uint8_t)((sp_priv_cap[c] + 1) / 2) : 0;
    }
    if (atomic_load_explicit(&sp_local_gen, memory_order_relaxed)) return true;
    struct sp_gen *g = sp_gen_new();
    if (!g) return false;
    atomic_store_explicit(&sp_local_gen, g, memory_order_release);
    return true;
}

void sp_pool_forget(struct sp_thread *t)
{
    atomic_store_explicit(&t->get_pb, SP_PB_OFF, memory_order_relaxed);
    atomic_store_explicit(&t->put_pb, SP_PB_OFF, memory_order_relaxed);
    t->proc = NULL;
    t->pb = NULL;
    t->gen_seq = 0;
}

bool sp_thread_attach(struct sp_thread *t)
{
    t->proc = sp_proc_acquire();
    if (!t->proc) return false;
    t->gen_seq = 0;            /* no generation has seq 0: the first Get/Put looks its pblock up */
    t->pb = NULL;
    /* The fast paths stay "off" until the first slow path points them at a pblock. */
    sp_rcu_register(&t->rcu, t);
    return true;
}

void sp_thread_detach(struct sp_thread *t)
{
    /* From here on the rotation no longer writes my fast paths (my TLS may go away). */
    sp_rcu_unregister(&t->rcu);
    struct sp_proc *p = t->proc;
    sp_pool_forget(t);
    /* Release: all I did as this P happens-before what its next owner does. */
    if (p) sp_proc_release(p);
}
