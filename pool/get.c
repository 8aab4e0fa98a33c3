/* get.c — Get past the private stack: the own shared chain's head, stealing from the other Ps'
 * tails, the victim generation (Go's getSlow), and a miss to the backend (Go's New). */

#include "batch.h"
#include "gen.h"

/* The rest of a batch stolen from another P's tail becomes mine: my private stack as far as it has
 * room, then my shared chain (one head add for the lot), as far as the cap allows; the remainder
 * goes back to the backend (counted as overflow).  Not counted as Puts: each was put once, by
 * the P it came from.  Inside the section in which g was loaded; t->pb belongs to g. */
static void sp_keep_taken(struct sp_thread *t, struct sp_gen *g, size_t cls, void **v, uint32_t n)
{
    struct sp_pcache *pc = t->pc;
    uint32_t kept = 0;
    pc->miss_known &= ~(1ull << cls);
    while (kept < n && sp_priv_push(pc, cls, v[kept])) kept++;
    struct sp_pblock *pb = kept < n && !t->pb ? sp_pblock_refresh(t, g, true) : t->pb;
    if (pb && kept < n) {
        struct sp_own *o = &pb->own[cls];
        /* cap counts the private stack, which is full if anything is left. */
        uint32_t room = sp_cap_room(o, cls);
        uint32_t k = n - kept < room ? n - kept : room;
        k = sp_chain_push_head_n(&o->head, &pb->tail[cls], v + kept, k);
        o->count += k;
        kept += k;
    }
    if (kept < n) {
        be_free_class_n(v + kept, n - kept, sp_class_size[cls], t->zone_flags);
        sp_count_n(t->proc, (unsigned)cls, SP_C_OVERFLOW, n - kept);
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
        /* A batch with one CAS: where one thread frees what another allocates, each steal then
         * pays for many Gets. */
        if (pb && (k = sp_chain_pop_tail_n(&pb->tail[cls], got, SP_STEAL_MAX)) != 0) {
            sp_count(t->proc, (unsigned)cls, SP_C_STEAL);
            if (k > 1) sp_keep_taken(t, g, cls, got + 1, k - 1);
            return got[0];
        }
    }
    return NULL;
}

/* The victim v: every P's shared tail, starting with mine (where my private stacks went when I
 * saw the new generation).  One object, as Go's getSlow takes: victim objects are taken only
 * after all primaries and one at a time, so those nobody needs age out. */
static __attribute__((noinline)) void *sp_get_victim(struct sp_thread *t, struct sp_gen *v,
                                                     size_t cls, uint32_t n)
{
    uint32_t me = t->proc->id;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = me + i;
        if (p >= n) p -= n;
        struct sp_pblock *pb = sp_gen_pblock(v, p);
        void *x;
        if (pb && (x = sp_chain_pop_tail(&pb->tail[cls])) != NULL) {
            sp_count(t->proc, (unsigned)cls, SP_C_HIT_VICTIM);
            return x;
        }
    }
    /* Empty: later Gets skip it (Go stores victimSize = 0).  A Put that raced in through a
     * stale `local` is then found by nobody and released at the next rotation. */
    atomic_store_explicit(&v->victim_empty[cls], 1, memory_order_relaxed);
    return NULL;
}

/* Inside a section: my private stack (it may have objects if the fast path saw "off"), my shared
 * chain's head, then steal, then the victim.  NULL: a miss (counted).  off: my fast paths are
 * off, and I hold my pcache's claim. */
static void *sp_get_inside(struct sp_thread *t, size_t cls, bool off)
{
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_pblock *pb = t->pb;
    struct sp_pcache *pc = t->pc;
    void *x;
    if (off || g->seq != t->gen_seq) pb = sp_pblock_refresh(t, g, false);
    if ((x = sp_priv_pop(pc, cls)) != NULL) {
        sp_owner_inc(&pc->cnt[SP_PC_HIT_PRIVATE][cls]);
        return x;
    }
    /* count never undercounts (only steals go unseen), so 0 means the chain is empty: skip the
     * walk back through older rings. */
    if (pb && pb->own[cls].count) {
        if ((x = sp_priv_refill(pc, pb, cls)) != NULL) {
            sp_owner_inc(&pc->cnt[SP_PC_HIT_SHARED][cls]);
            return x;
        }
        pb->own[cls].count = 0;   /* a full walk found nothing, and only I push: empty */
    }
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
    if (n > 1 && (x = sp_steal(t, g, cls, n)) != NULL) return x;
    /* local, then victim: the order sp_pool_publish stores them in reverse (see there). */
    struct sp_gen *v = atomic_load_explicit(&sp_victim_gen, memory_order_acquire);
    if (sp_victim_worth_searching(v, g, cls) && (x = sp_get_victim(t, v, cls, n)) != NULL)
        return x;
    sp_count(t->proc, (unsigned)cls, SP_C_MISS);
    /* Everything searched; with one P, nothing comes back until I put or the generation changes
     * (pool.h, sp_pool_miss_known). */
    if (n == 1 && t->pb == pb) pc->miss_known |= 1ull << cls;
    return NULL;
}

void *sp_pool_get_more(struct sp_thread *t, size_t cls)
{
    sp_assert(t->state == SP_T_ACTIVE && sp_guard_held(&t->guard));
    bool off = sp_fast_paths_are_off(t);
    if (off && !sp_pcache_claim(t->pc)) {   /* the rotation is ageing my stacks (gen.c) */
        sp_count(t->proc, (unsigned)cls, SP_C_MISS);
        return NULL;
    }
    sp_rcu_read_lock();
    void *x = sp_get_inside(t, cls, off);
    sp_rcu_read_unlock();
    if (off) sp_pcache_unclaim(t->pc);
    return x;
}

void *sp_get_rest(struct sp_thread *t, size_t cls)
{
    void *x = SP_LIKELY(t->state == SP_T_ACTIVE) ? sp_pool_get_more(t, cls) : NULL;
    sp_guard_exit(&t->guard);
    return x;
}
