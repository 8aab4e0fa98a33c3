/* chain.h — poolChain: an unbounded SPMC queue made of poolDequeue rings (Go's poolqueue.go).
 *
 * The rings form a doubly linked list, oldest at `tail`, newest at `head`, sizes SP_CHAIN_FIRST,
 * twice that, ... up to SP_DEQUEUE_LIMIT.  The owner pushes into and pops from the newest ring (walking back to
 * older ones when it is empty); thieves pop from the oldest ring and unlink it once it is
 * permanently empty.
 *
 * The head pointer and the tail pointer live in different cache lines of the owner's block (see
 * pool.h), so the chain is passed as the two pointers. */
#ifndef SYNCPOOL_CHAIN_H
#define SYNCPOOL_CHAIN_H

#include "dequeue.h"

/* The first ring holds a whole private stack's spill (pool.h, SP_PRIV_SLOTS): a refill or a
 * steal takes its batch from one ring, so a spill split across small rings would cut batches
 * short. */
#define SP_CHAIN_FIRST 128
_Static_assert((SP_CHAIN_FIRST & (SP_CHAIN_FIRST - 1)) == 0 && SP_CHAIN_FIRST <= SP_DEQUEUE_LIMIT,
               "ring sizes are powers of two up to SP_DEQUEUE_LIMIT");

/* Owner only.  Out of line: allocates the first ring, or a ring twice the size when the newest
 * one is full.  Returns false if no ring could be allocated (the caller keeps the object). */
bool sp_chain_push_slow(struct sp_dequeue **head, struct sp_dequeue *_Atomic *tail, void *val);

/* Owner only.  false: no memory for a ring. */
static inline bool sp_chain_push_head(struct sp_dequeue **head, struct sp_dequeue *_Atomic *tail,
                                      void *val)
{
    struct sp_dequeue *d = *head;
    sp_assert(val != NULL);
    if (d && sp_dequeue_push_head(d, val)) return true;
    return sp_chain_push_slow(head, tail, val);
}

/* Owner only: pushes vals[0..n) in order, as n pushHeads would, with one head add per ring
 * used.  Returns how many were pushed (fewer than n only when no ring could be allocated). */
static inline uint32_t sp_chain_push_head_n(struct sp_dequeue **head,
                                            struct sp_dequeue *_Atomic *tail, void *const *vals,
                                            uint32_t n)
{
    uint32_t done = 0;
    while (done < n) {
        if (*head) done += sp_dequeue_push_head_n(*head, vals + done, n - done);
        if (done == n) break;
        /* The newest ring is full (or there is none): a new, larger ring takes the next one. */
        if (!sp_chain_push_slow(head, tail, vals[done])) break;
        done++;
    }
    sp_assert(done <= n);
    return done;
}

/* Owner only: up to max of the newest values, from the newest ring that is not empty (as
 * sp_dequeue_pop_head_n: out[0..k), oldest first).  Returns k (0: the chain is empty). */
static inline uint32_t sp_chain_pop_head_n(struct sp_dequeue *head, void **out, uint32_t max)
{
    for (struct sp_dequeue *d = head; d; d = atomic_load_explicit(&d->prev, memory_order_acquire)) {
        uint32_t n = sp_dequeue_pop_head_n(d, out, max);
        if (n) return n;
        /* d is empty: older rings may still hold values (prev is cleared once a thief unlinks). */
    }
    return 0;
}

/* Owner only. */
static inline void *sp_chain_pop_head(struct sp_dequeue *head)
{
    void *v;
    return sp_chain_pop_head_n(head, &v, 1) ? v : NULL;
}

/* Puts a ring that a thief unlinked on the retire list.  It is freed only after a grace period:
 * other thieves, and the owner's popHead walk, may still be looking at it. */
void sp_chain_retire(struct sp_dequeue *d);

/* Any thread, inside an RCU read-side critical section (which keeps rings from being freed). */
/* Go's poolChain.popTail, for a batch: up to max values from the oldest non-empty ring (see
 * sp_dequeue_pop_tail_n).  Returns how many. */
static inline uint32_t sp_chain_pop_tail_n(struct sp_dequeue *_Atomic *tail, void **out,
                                           uint32_t max)
{
    struct sp_dequeue *d = atomic_load_explicit(tail, memory_order_acquire);
    if (!d) return 0;
    for (;;) {
        /* Load next *before* popping.  If d turns out empty and next was already set, d is empty
         * for good: the producer only ever pushes into the newest ring, and next != NULL means d
         * is no longer the newest. */
        struct sp_dequeue *next = atomic_load_explicit(&d->next, memory_order_acquire);
        uint32_t n = sp_dequeue_pop_tail_n(d, out, max);
        if (n) return n;
        if (!next) return 0;             /* d is the newest ring: empty now, but not for good */
        /* Unlink d.  Only the CAS winner retires it and clears next->prev (after which the owner's
         * popHead no longer walks into d); a loser simply moves on, as in Go. */
        if (atomic_compare_exchange_strong_explicit(tail, &d, next, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            /* next->prev was d since next was made, and only d's unlinker (us) clears it. */
            sp_assert(atomic_load_explicit(&next->prev, memory_order_relaxed) == d);
            atomic_store_explicit(&next->prev, NULL, memory_order_release);
            sp_chain_retire(d);
        }
        d = next;
    }
}

static inline void *sp_chain_pop_tail(struct sp_dequeue *_Atomic *tail)
{
    void *v;
    return sp_chain_pop_tail_n(tail, &v, 1) ? v : NULL;
}

static inline uint32_t sp_chain_len(struct sp_dequeue *head)
{
    uint32_t n = 0;
    for (struct sp_dequeue *d = head; d; d = atomic_load_explicit(&d->prev, memory_order_acquire))
        n += sp_dequeue_len(d);
    return n;
}

/* Takes the whole retire list (for freeing after a grace period), and frees such a list. */
struct sp_dequeue *sp_chain_retired_take(void);
void sp_chain_retired_free(struct sp_dequeue *list);

/* No concurrent access left (after a grace period): hands every value to release(), frees the
 * rings.  Returns the number of values. */
uint64_t sp_chain_drain(struct sp_dequeue *tail, void (*release)(void *val, void *arg), void *arg);

#endif
