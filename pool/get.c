/* get.c — Get past the private stack: the own shared chain's head, stealing from the other Ps'
 * tails, the victim generation, and a miss to the backend (Go's getSlow, then New). */
#include <errno.h>

#include "batch.h"
#include "gen.h"

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

void *sp_pool_miss(struct sp_thread *t, size_t cls)
{
    int zf = t->zone_flags;
    if (SP_UNLIKELY(zf == 0)) zf = sp_zone_flags_first(t);
    void *x = be_alloc_class((unsigned)cls, sp_class_size[cls], 0, zf);
    if (SP_UNLIKELY(x == NULL)) x = sp_pool_alloc_class_after_oom(t, cls, 0);
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
    return sp_pool_miss(t, cls);
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

