/* gen.c — generations: a P's pblock in one, the rotation step (publish, then recycle after the
 * grace period), and the fast paths' pointers into the local one.  cleanup/ drives it. */
#include "gen.h"

#include <pthread.h>
#include <string.h>

#include "backend.h"

struct sp_gen *_Atomic sp_local_gen;
struct sp_gen *_Atomic sp_victim_gen;
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

struct sp_pblock *sp_gen_pblock(struct sp_gen *g, uint32_t pid)
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
    struct sp_pblock *pb = be_alloc_internal(sizeof(*pb), BE_ZERO | BE_ALIGN(_Alignof(struct sp_pblock)));
    if (!pb) return NULL;
    /* Empty private stacks of sp_priv_cap[c] objects (pool.h): slot[base - 1] stays NULL. */
    for (unsigned c = 0; c < SP_MAX_CLASSES; c++)
        pb->top[c] = &pb->priv[c].slot[SP_PRIV_SLOTS - (c < sp_nclasses ? sp_priv_cap[c] : 0)];
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

struct sp_pblock *sp_pblock_refresh(struct sp_thread *t, struct sp_gen *g, bool create)
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

