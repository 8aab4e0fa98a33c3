/* gen.c — generations: a P's pblock in one, the rotation step (publish, then recycle after the
 * grace period), the owner's side of a new generation (its private stacks age, its fast paths
 * are turned back on), and the P's private stacks themselves.  cleanup/ drives the rotation. */
#include "gen.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"
#include "upool.h"

struct sp_gen *_Atomic sp_local_gen;
struct sp_gen *_Atomic sp_victim_gen;
_Atomic uint64_t sp_released[SP_MAX_CLASSES];
/* Held while a generation is recycled and while statistics read live pblocks: bounded work, never
 * a wait for a grace period.  The fork handlers take it (sp_pool_fork_prepare). */
static pthread_mutex_t sp_recycle_lock = PTHREAD_MUTEX_INITIALIZER;

static _Atomic uint64_t sp_gen_seq;
/* sys_membarrier for the idle Ps' handshake ("Idle Ps"), the rotation's (under its lock): 0 not
 * asked yet (again in a forked child, a process of its own), 1 works, -1 not available. */
static int sp_fence_mode;

/* ---- generations ---------------------------------------------------------------------- */

struct sp_gen *sp_gen_new(void)
{
    struct sp_gen *g = be_alloc_internal(sizeof(*g), BE_ZERO);
    if (g) g->seq = atomic_fetch_add_explicit(&sp_gen_seq, 1, memory_order_relaxed) + 1;
    return g;
}

void sp_gen_free(struct sp_gen *g) { be_free_internal(g); }

void sp_pool_fork_prepare(void)
{
    sp_upools_fork_prepare();
    pthread_mutex_lock(&sp_recycle_lock);
    sp_proc_fork_prepare();
}
void sp_pool_fork_parent(void)
{
    sp_proc_fork_parent();
    pthread_mutex_unlock(&sp_recycle_lock);
    sp_upools_fork_parent();
}
void sp_pool_fork_child(void)
{
    sp_proc_fork_child();
    pthread_mutex_init(&sp_recycle_lock, NULL);
    sp_upools_fork_child();
    sp_fence_mode = 0;                    /* register with membarrier for this process */
    /* A thread that held its pcache's claim (a slow path in a new generation) is gone: its P's
     * next owner must be able to take it.  The stacks themselves are as that thread left them,
     * every object in one place or in none (batch.h, sp_priv_spill). */
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_relaxed);
    for (uint32_t id = 0; id < n; id++) {
        struct sp_proc *p = sp_proc_get(id);
        if (p && p->pc) atomic_store_explicit(&p->pc->claim, 0, memory_order_relaxed);
    }
}

struct sp_pblock *sp_gen_pblock(struct sp_gen *g, uint32_t pid)
{
    struct sp_pblock *_Atomic *chunk =
        atomic_load_explicit(&g->dir[pid >> SP_PROC_CHUNK_SHIFT], memory_order_acquire);
    if (!chunk) return NULL;
    /* Acquire pairs with the owner's release when it published its pblock. */
    return atomic_load_explicit(&chunk[pid & (SP_PROC_CHUNK - 1)], memory_order_acquire);
}

/* Creates P pid's pblock in g: its owner, or the rotation while it holds the P's claim
 * (sp_age_idle). */
static struct sp_pblock *sp_gen_pblock_create(struct sp_gen *g, uint32_t pid)
{
    /* (The directory's entries are pblock pointers; sp_pdir_chunk deals in void pointers.) */
    struct sp_pblock *_Atomic *chunk = (struct sp_pblock *_Atomic *)sp_pdir_chunk(
        (void *_Atomic *_Atomic *)&g->dir[pid >> SP_PROC_CHUNK_SHIFT]);
    if (!chunk) return NULL;
    struct sp_pblock *pb =
        be_alloc_internal(sizeof(*pb), BE_ZERO | BE_ALIGN(_Alignof(struct sp_pblock)));
    if (!pb) return NULL;
    /* Only P pid's owner writes this entry; release publishes the zeroed pblock to thieves. */
    atomic_store_explicit(&chunk[pid & (SP_PROC_CHUNK - 1)], pb, memory_order_release);
    return pb;
}

static void sp_release_obj(void *obj, void *arg)
{
    be_free_sized(obj, *(const uint32_t *)arg, BE_NO_TCACHE);
}

/* ---- the P's private stacks ------------------------------------------------------------- */

struct sp_pcache *sp_pcache_new(void)
{
    struct sp_pcache *pc =
        be_alloc_internal(sizeof(*pc), BE_ZERO | BE_ALIGN(_Alignof(struct sp_pcache)));
    if (!pc) return NULL;
    /* Empty private stacks of sp_priv_cap[c] objects (pool.h): slot[base - 1] stays NULL. */
    for (unsigned c = 0; c < SP_MAX_CLASSES; c++)
        pc->top[c] = &pc->priv[c].slot[SP_PRIV_SLOTS - (c < sp_nclasses ? sp_priv_cap[c] : 0)];
    return pc;
}

/* Moves every object of my private stack of cls to dst (my pblock in some generation: its shared
 * chain, newest last, so my Gets from it see the newest first), or to the backend if dst is NULL
 * or has no memory for a ring.  Owner only, inside a section that keeps dst alive.  The stack is
 * emptied before its objects are pushed (for a forked child, see batch.h, sp_priv_spill).  The
 * cap is not looked at: these objects were counted when they were put.  Returns how many went
 * to the backend. */
static uint32_t sp_priv_move(struct sp_thread *t, struct sp_pcache *pc, size_t cls,
                             struct sp_pblock *dst)
{
    uint32_t n = sp_priv_len(pc, cls), k = 0;
    if (n == 0) return 0;
    void *batch[SP_PRIV_MAX], **base = pc->top[cls] - n;
    for (uint32_t i = 0; i < n; i++) batch[i] = base[i];
    pc->top[cls] = base;
    atomic_signal_fence(memory_order_seq_cst);
    if (dst) {
        struct sp_own *o = &dst->own[cls];
        k = sp_chain_push_head_n(&o->head, &dst->tail[cls], batch, n);
        o->count += k;
    }
    if (k < n) be_free_class_n(batch + k, n - k, sp_class_size[cls], t->zone_flags);
    return n - k;
}

/* My private stacks hold objects of generation pc->gen_seq; g (local) is newer.  Objects of the
 * generation that is now the victim go to my pblock there (found by the victim search, mine
 * first, and released at the next rotation if nobody takes them: Go moves local.private to
 * victim.private); older ones, or all of them if I have no pblock there, go back to the backend
 * (counted as released).  Inside a section in which g and v were loaded. */
static void sp_pcache_age(struct sp_thread *t, struct sp_gen *g, struct sp_gen *v)
{
    struct sp_pcache *pc = t->pc;
    sp_assert(pc->gen_seq != g->seq);
    struct sp_pblock *dst = NULL;
    if (v && v != g && pc->gen_seq == v->seq && !(dst = sp_gen_pblock(v, t->proc->id)))
        dst = sp_gen_pblock_create(v, t->proc->id);   /* v is alive until our section ends */
    for (unsigned c = 0; c < sp_nclasses; c++) {
        uint32_t freed = sp_priv_move(t, pc, c, dst);
        if (freed) atomic_fetch_add_explicit(&sp_released[c], freed, memory_order_relaxed);
        /* The victim has objects of c again (a search may have marked it empty before). */
        if (dst && dst->own[c].count)
            atomic_store_explicit(&v->victim_empty[c], 0, memory_order_relaxed);
    }
    pc->gen_seq = g->seq;
}

void sp_pcache_retire(struct sp_thread *t)
{
    /* My fast paths are off: the rotation may be ageing my stacks ("Idle Ps"), briefly. */
    while (!sp_pcache_claim(t->pc)) sched_yield();
    sp_rcu_read_lock();
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_gen *v = atomic_load_explicit(&sp_victim_gen, memory_order_acquire);
    if (t->pc->gen_seq != g->seq) sp_pcache_age(t, g, v);
    /* My pblock in g, made if need be (a previous owner of my P id may have left one). */
    struct sp_pblock *pb = sp_gen_pblock(g, t->proc->id);
    if (!pb) pb = sp_gen_pblock_create(g, t->proc->id);
    for (unsigned c = 0; c < sp_nclasses; c++) {
        uint32_t freed = sp_priv_move(t, t->pc, c, pb);
        if (freed) sp_count_n(t->proc, c, SP_C_OVERFLOW, freed);
    }
    sp_rcu_read_unlock();
    sp_pcache_unclaim(t->pc);
}

/* ---- the fast paths' pointers ---------------------------------------------------------- */

/* Points my fast paths at my private stacks, or at "off".
 *
 * The rotation also stores "off" here, after publishing a new local (sp_pool_publish).  If I
 * stored pc for a g that is no longer local, one of the two must win: after my stores I load
 * local again.  All of these are seq_cst, so they have one order: if my load still sees g, my
 * stores came before the rotation's store of the new local, hence before its "off" stores, which
 * win; if it sees a newer local, I store "off" myself.  (get_pc's store is ordered before
 * put_pc's.)  Either way my fast paths never keep running on private stacks whose generation
 * has aged without my next slow path hearing of it.  (Losing this race would cost no memory
 * safety, since a pcache is never freed: only a late ageing.) */
static void sp_fast_paths_set(struct sp_thread *t, struct sp_gen *g, struct sp_pcache *pc)
{
    atomic_store_explicit(&t->get_pc, pc ? pc : SP_PC_OFF, memory_order_seq_cst);
    atomic_store_explicit(&t->put_pc, pc ? pc : SP_PC_OFF, memory_order_seq_cst);
    if (!pc) return;
    if (atomic_load_explicit(&sp_local_gen, memory_order_seq_cst) != g) {
        atomic_store_explicit(&t->get_pc, SP_PC_OFF, memory_order_seq_cst);
        atomic_store_explicit(&t->put_pc, SP_PC_OFF, memory_order_seq_cst);
    }
}

struct sp_pblock *sp_pblock_refresh(struct sp_thread *t, struct sp_gen *g, bool create)
{
    /* The generation changed since this thread last looked (or it has no pblock there yet).  A
     * previous owner of my P id may have left one: reuse it, with whatever it caches. */
    if (t->pc->gen_seq != g->seq)
        sp_pcache_age(t, g, atomic_load_explicit(&sp_victim_gen, memory_order_acquire));
    struct sp_pblock *pb = sp_gen_pblock(g, t->proc->id);
    if (!pb && create) pb = sp_gen_pblock_create(g, t->proc->id);
    t->pc->miss_known = 0;                /* a new generation, or a pblock I had not seen */
    t->gen_seq = g->seq;
    t->pb = pb;
    sp_fast_paths_set(t, g, t->pc);
    return pb;
}

static void sp_fast_paths_off(struct sp_proc *p, void *arg)
{
    (void)arg;
    struct sp_thread *t = p->owner;
    if (!t) return;
    atomic_store_explicit(&t->get_pc, SP_PC_OFF, memory_order_seq_cst);
    atomic_store_explicit(&t->put_pc, SP_PC_OFF, memory_order_seq_cst);
}

/* ---- Idle Ps ----------------------------------------------------------------------------
 *
 * An owner ages its private stacks at its first slow path in a new generation.  One that stays
 * idle (blocked, sleeping, or only ever computing) would keep them for good, so the rotation ages
 * them itself, without a section or any other cost on the fast paths, by this handshake:
 *
 *  1. The rotation stores "off" to every owner's fast-path pointers (sp_fast_paths_off), then
 *     issues a process-wide fence (sys_membarrier: every running thread of the process executes
 *     a full fence).  After it, an owner either had its guard (guard.h) odd and visible, or loads
 *     "off" in every Get and Put it starts: a fast path that loaded its pcache before the fence
 *     stored its odd guard before that load, and the fence makes that store visible.
 *  2. For each owner whose guard it then reads even (outside the allocator), the rotation takes
 *     the pcache's claim (a CAS 0 -> 1), ages the stacks as the owner would, and releases it.
 *     An owner it finds inside is left alone: it ages its own stacks at its next slow path.
 *  3. The owner's side: a slow path that finds either fast-path pointer "off" takes the claim
 *     before it touches its stacks (sp_pcache_claim), and if the rotation holds it, serves this
 *     Get or Put from the backend and tries again next time.  A slow path that finds them on
 *     needs no claim: it loaded them before the rotation's fence (step 1), with its guard odd,
 *     so the rotation leaves it alone.
 * Without sys_membarrier (an old kernel, a seccomp filter) step 2 is skipped: idle owners keep
 * their stacks until they run or exit. */

bool sp_pcache_claim(struct sp_pcache *pc)
{
    uint32_t free_ = 0;
    return atomic_compare_exchange_strong_explicit(&pc->claim, &free_, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

void sp_pcache_unclaim(struct sp_pcache *pc)
{
    sp_assert(atomic_load_explicit(&pc->claim, memory_order_relaxed) == 1);   /* held */
    atomic_store_explicit(&pc->claim, 0, memory_order_release);
}

/* Step 1's fence; false if the kernel does not give it. */
static bool sp_process_fence(void)
{
    int mode = sp_fence_mode;
    if (mode == 0) {
        long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        mode = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                       syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
                   ? 1
                   : -1;
    }
    if (mode == 1 && syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
        mode = -1;                    /* refused after all (a seccomp filter added later) */
    sp_fence_mode = mode;
    return mode == 1;
}

#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
#endif

struct sp_age_ctx { struct sp_gen *g, *v; };

/* Step 2 for one P (its owner, if it has one, may not detach meanwhile: sp_proc_each).  A P
 * without an owner is aged the same way: its last owner vanished in a fork (one that exits
 * retires its stacks itself), and a thread that takes the P meanwhile starts with its fast paths
 * off, so it claims before it touches them (step 3). */
static void sp_age_idle(struct sp_proc *p, void *arg)
{
    const struct sp_age_ctx *a = arg;
    struct sp_thread *t = p->owner;
    struct sp_pcache *pc = __atomic_load_n(&p->pc, __ATOMIC_ACQUIRE);
    /* The rotating thread itself holds its guard (cleanup/, sp_rotate_once) but is in none of
     * its own Gets or Puts: its stacks are aged like an idle owner's. */
    if (!pc || (t && t != &sp_self && sp_guard_held(&t->guard)) || !sp_pcache_claim(pc)) return;
#if defined(__SANITIZE_THREAD__)
    if (t) __tsan_acquire(&t->guard);
#endif
    if (pc->gen_seq != a->g->seq) {
        /* Objects of the new victim go to the owner's pblock there, as the owner would move them
         * (made if need be: while the rotation holds the claim, the owner makes no pblock, since
         * its slow paths either hold the claim or were found inside, step 2), others back. */
        struct sp_pblock *dst = NULL;
        if (pc->gen_seq == a->v->seq && !(dst = sp_gen_pblock(a->v, p->id)))
            dst = sp_gen_pblock_create(a->v, p->id);
        for (unsigned c = 0; c < sp_nclasses; c++) {
            uint32_t n = sp_priv_len(pc, c), k = 0;
            if (n == 0) continue;
            void **base = pc->top[c] - n;
            if (dst) {
                struct sp_own *o = &dst->own[c];
                k = sp_chain_push_head_n(&o->head, &dst->tail[c], base, n);
                o->count += k;
            }
            for (uint32_t i = k; i < n; i++) sp_release_obj(base[i], &sp_class_size[c]);
            if (n > k) atomic_fetch_add_explicit(&sp_released[c], n - k, memory_order_relaxed);
            pc->top[c] = base;
        }
        pc->gen_seq = a->g->seq;
    }
    sp_pcache_unclaim(pc);
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
    /* Every thread's fast paths still run on private stacks of `local`: turn them "off" (see
     * sp_fast_paths_set), so that their next Get/Put takes the slow path, which finds the fresh
     * local and ages the private stacks. */
    sp_proc_each(sp_fast_paths_off, NULL);
    /* The idle owners' stacks ("Idle Ps"). */
    struct sp_age_ctx a = {fresh, local};
    if (local && sp_process_fence()) sp_proc_each(sp_age_idle, &a);
    return old;
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
            for (unsigned c = 0; c < sp_nclasses; c++) {
                struct sp_dequeue *tail = atomic_load_explicit(&pb->tail[c], memory_order_acquire);
                uint64_t n = sp_chain_drain(tail, sp_release_obj, &sp_class_size[c]);
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
    /* pcaches are never freed, and a P's pc is set once, before its owner's first Get or Put. */
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
    for (uint32_t id = 0; id < n; id++) {
        struct sp_proc *p = sp_proc_get(id);
        struct sp_pcache *pc = p ? __atomic_load_n(&p->pc, __ATOMIC_ACQUIRE) : NULL;
        if (!pc) continue;
        for (int j = 0; j < SP_PC_NCOUNTERS; j++)
            for (unsigned c = 0; c < sp_nclasses; c++)
                out[sp_pc_counter[j]][c] += __atomic_load_n(&pc->cnt[j][c], __ATOMIC_RELAXED);
    }
}
