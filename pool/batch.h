/* batch.h — the private stack's batches (pool.h, sp_priv_batch): with the P's own shared chain
 * (refill, spill) and with the backend (flush at the cap), as jemalloc's thread cache fills and
 * flushes its bins.  Owner only, inside a section (the pblock's); for get.c and put.c. */
#ifndef SYNCPOOL_BATCH_H
#define SYNCPOOL_BATCH_H

#include "backend.h"
#include "pool.h"


/* My private stack of cls is empty (top[-1] == NULL): takes up to sp_priv_batch[cls] (at least 1)
 * of my shared chain's newest objects with one CAS, keeps all but the newest on the stack (oldest
 * at the bottom: the order of single pops) and returns the newest; NULL if the chain is empty. */
static inline __attribute__((always_inline)) void *sp_priv_refill(struct sp_pcache *pc,
                                                                   struct sp_pblock *pb, size_t cls)
{
    struct sp_own *o = &pb->own[cls];
    void **top = pc->top[cls];
    uint32_t m = sp_priv_batch[cls];
    /* The batch lands at top[0..k), inside the stack: it is empty and k <= its size. */
    uint32_t k = sp_chain_pop_head_n(o->head, top, m + (m == 0));
    if (k == 0) return NULL;
    o->count -= k;                       /* count never undercounts (only steals go unseen) */
    pc->top[cls] = top + k - 1;          /* top[k - 1], the newest, is handed out */
    return top[k - 1];
}

/* My private stack of cls is full: moves all of it, oldest first, to my shared chain (at most
 * `room` objects, what the cap allows; sp_cap_room), with one head add per ring used (a new ring
 * when the newest is full), then pushes x onto what is left of the stack.  false: no memory for
 * a ring, the stack is as it was and x not taken.
 *
 * The batch leaves the stack before it enters the chain.  A child forked while another thread
 * is in here reuses that thread's pcache and pblock as they were (the fork handler frees every P
 * id, and pools keep what a vanished P left), and it sees a prefix of this thread's stores: so at every store
 * each object must be in one place or in none (lost to the child, which is only a leak), never
 * on the stack and in the chain at once.  Hence: lower the top past the batch, slide what stays
 * down below the new top, and only then publish the batch with the ring's head add (its release
 * orders the stores before it).  The NULL below the stack is never written. */
static inline __attribute__((always_inline)) bool sp_priv_spill(struct sp_pcache *pc,
                                                                struct sp_pblock *pb, size_t cls,
                                                                void *x, uint32_t room)
{
    struct sp_own *o = &pb->own[cls];
    uint32_t cap = sp_priv_cap[cls];
    void **base = pc->top[cls] - cap;
    uint32_t want = cap < room ? cap : room, rest = cap - want;
    /* Normally the whole stack goes, and it is pushed from where it lies (above the lowered top,
     * nothing writes there before the push); when the cap keeps some of it, the batch is copied
     * out first, since what stays slides down over it. */
    void *copy[SP_PRIV_MAX], **batch = base;
    if (SP_UNLIKELY(rest != 0)) {
        for (uint32_t i = 0; i < want; i++) copy[i] = base[i];
        batch = copy;
    }
    pc->top[cls] = base + rest;
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
        pc->top[cls] = base;
        atomic_signal_fence(memory_order_seq_cst);
        for (uint32_t i = rest; i-- > 0;) base[want - k + i] = base[i];
        for (uint32_t i = k; i < want; i++) base[i - k] = batch[i];
        atomic_signal_fence(memory_order_seq_cst);
        pc->top[cls] = base + rest + want - k;
        if (k == 0) return false;           /* full again, as it was */
    }
    o->count += k;
    *pc->top[cls] = x;
    pc->top[cls]++;
    return true;
}

/* My private stack of cls is full and my pool holds its cap (sp_cap_room is 0): the oldest
 * sp_priv_batch[cls] objects (at least 1) go back to the backend, as jemalloc's thread cache
 * flushes a bin, and x is pushed onto what is left; so a program whose live set exceeds the cap
 * pays the slow path once per batch, not once per free.  The newest objects stay cached, as a
 * refusal of x alone would not do.  Counted as overflow (released).  The batch is copied out and
 * the top lowered before what stays slides down (as in sp_priv_spill, for a forked child). */
static inline void sp_priv_flush(struct sp_thread *t, struct sp_pcache *pc, size_t cls, void *x)
{
    uint32_t cap = sp_priv_cap[cls], m = sp_priv_batch[cls];
    m += m == 0;
    uint32_t rest = cap - m;             /* m = ceil(cap / 2) >= rest: the slide never overlaps */
    void **base = pc->top[cls] - cap, *out[SP_PRIV_MAX];
    for (uint32_t i = 0; i < m; i++) out[i] = base[i];
    pc->top[cls] = base + rest;
    atomic_signal_fence(memory_order_seq_cst);
    for (uint32_t i = 0; i < rest; i++) base[i] = base[m + i];
    base[rest] = x;
    atomic_signal_fence(memory_order_seq_cst);
    pc->top[cls] = base + rest + 1;
    be_free_class_n(out, m, sp_class_size[cls], t->zone_flags);
    sp_count_n(t->proc, (unsigned)cls, SP_C_OVERFLOW, m);
}

#endif
