/* dequeue.h — poolDequeue: a lock-free single-producer / multi-consumer ring (Go's poolqueue.go).
 *
 * One producer (the P that owns it) pushes and pops at the head; any thread pops at the tail.
 *
 *   head_tail: one 64-bit word, head in the high 32 bits, tail in the low 32 bits.  tail is the
 *   oldest element, head the next slot to fill; slots [tail, head) belong to consumers.  Both
 *   indices wrap modulo 2^32 (harmless: only differences and `& mask` are used).
 *
 *   vals[i]: NULL = free.  Cached objects are never NULL, so no nil sentinel is needed.  A slot
 *   goes back to the producer only when a consumer stores NULL into it *after* reading it; the
 *   producer treats a non-NULL slot as "ring full".  That hand-over order is what makes the ring
 *   safe: the producer can never overwrite a value a consumer has claimed but not yet read.
 *
 * The ring length is a power of two, at most SP_DEQUEUE_LIMIT (= 2^30): fullness is detected by
 * tail + len == head, which needs len to be at most half the 32-bit index space. */
#ifndef SYNCPOOL_DEQUEUE_H
#define SYNCPOOL_DEQUEUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_assert.h"

#define SP_DEQUEUE_LIMIT (1u << 30)
_Static_assert((SP_DEQUEUE_LIMIT & (SP_DEQUEUE_LIMIT - 1)) == 0 &&
                   SP_DEQUEUE_LIMIT <= (1u << 31),
               "a power of two, at most half the 32-bit index space");

struct sp_dequeue {
    _Atomic uint64_t head_tail;
    uint32_t mask;                          /* length - 1 */
    /* poolChain links.  next: the newer ring; written once (NULL -> ring) by the producer.
     * prev: the older ring; written once (ring -> NULL) by the consumer that unlinks it. */
    struct sp_dequeue *_Atomic next;
    struct sp_dequeue *_Atomic prev;
    struct sp_dequeue *retired_next;        /* link on the retire list (see chain.h) */
    void *_Atomic vals[];
};

static inline uint64_t sp_dq_pack(uint32_t head, uint32_t tail)
{
    return ((uint64_t)head << 32) | tail;
}

/* Debug builds: the ring's length is a power of two <= SP_DEQUEUE_LIMIT (mask = length - 1), and
 * a snapshot of head_tail never has more than length values in [tail, head). */
#define sp_dq_assert_ring(d)                                                                     \
    sp_assert(((d)->mask & ((d)->mask + 1)) == 0 && (d)->mask < SP_DEQUEUE_LIMIT)
#define sp_dq_assert_ht(d, head, tail) sp_assert((uint32_t)((head) - (tail)) <= (d)->mask + 1)

/* Producer only.  Returns false if the ring is full. */
static inline bool sp_dequeue_push_head(struct sp_dequeue *d, void *val)
{
    uint64_t ht = atomic_load_explicit(&d->head_tail, memory_order_relaxed);
    uint32_t head = (uint32_t)(ht >> 32), tail = (uint32_t)ht;
    sp_assert(val != NULL);                 /* NULL means "free slot" */
    sp_dq_assert_ring(d);
    sp_dq_assert_ht(d, head, tail);
    /* A stale tail only makes us report "full" early; the slot test below is what guards. */
    if ((uint32_t)(tail + d->mask + 1) == head) return false;
    void *_Atomic *slot = &d->vals[head & d->mask];
    /* Non-NULL: a popTail won this slot but has not finished reading it.  It is still the
     * consumer's.  Acquire pairs with its release store of NULL, so its read is complete. */
    if (atomic_load_explicit(slot, memory_order_acquire) != NULL) return false;
    atomic_store_explicit(slot, val, memory_order_relaxed);
    /* Hands the slot to consumers.  Release orders the value store before the new head; an RMW
     * (not a store) because consumers CAS the same word to advance tail. */
    atomic_fetch_add_explicit(&d->head_tail, (uint64_t)1 << 32, memory_order_release);
    return true;
}

/* Producer only: pushHead for a batch, with one release add for all of it.  Pushes vals[0..k)
 * for the largest k <= n that fits, and returns k (0: full). */
static inline uint32_t sp_dequeue_push_head_n(struct sp_dequeue *d, void *const *vals, uint32_t n)
{
    uint64_t ht = atomic_load_explicit(&d->head_tail, memory_order_relaxed);
    uint32_t head = (uint32_t)(ht >> 32), tail = (uint32_t)ht;
    sp_dq_assert_ring(d);
    sp_dq_assert_ht(d, head, tail);
    /* Free slots by this (possibly stale) tail: a stale tail only undercounts them. */
    uint32_t room = d->mask + 1 - (head - tail);
    if (n > room) n = room;
    uint32_t k = 0;
    for (; k < n; k++) {
        void *_Atomic *slot = &d->vals[(head + k) & d->mask];
        /* Each slot as in pushHead: non-NULL is still a consumer's (its batch may clear slots
         * out of order with another consumer's); acquire pairs with its release of NULL.  Stop
         * there: the slots handed over must be contiguous from head. */
        if (atomic_load_explicit(slot, memory_order_acquire) != NULL) break;
        sp_assert(vals[k] != NULL);
        atomic_store_explicit(slot, vals[k], memory_order_relaxed);
    }
    /* One head add hands all k slots to consumers; release orders every value store before it. */
    if (k) atomic_fetch_add_explicit(&d->head_tail, (uint64_t)k << 32, memory_order_release);
    return k;
}

/* Producer only: popHead for a batch, with one CAS for all of it.  Takes the newest k <= max
 * values (k = what the ring holds, if less) into out[0..k), oldest first, so out[k - 1] is what k
 * popHeads would have returned first.  Returns k (0: empty).  max = 1 is exactly popHead. */
static inline uint32_t sp_dequeue_pop_head_n(struct sp_dequeue *d, void **out, uint32_t max)
{
    uint64_t ht = atomic_load_explicit(&d->head_tail, memory_order_relaxed);
    uint32_t head, n;
    sp_assert(max >= 1);                    /* 0 returned must mean "empty" */
    sp_dq_assert_ring(d);
    for (;;) {
        uint32_t tail = (uint32_t)ht;
        head = (uint32_t)(ht >> 32);
        sp_dq_assert_ht(d, head, tail);
        if (tail == head) return 0;
        n = head - tail;
        if (n > max) n = max;
        head -= n;
        /* Winning this CAS takes slots [head, head + n) back: consumers only claim slots below
         * the head they observe, and tail <= head held at the CAS. */
        if (atomic_compare_exchange_weak_explicit(&d->head_tail, &ht, sp_dq_pack(head, tail),
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }
    for (uint32_t i = 0; i < n; i++) {
        void *_Atomic *slot = &d->vals[(head + i) & d->mask];
        /* We wrote these values ourselves, and no consumer can claim the slots any more. */
        void *v = atomic_load_explicit(slot, memory_order_relaxed);
        sp_assert(v != NULL);
        out[i] = v;
        atomic_store_explicit(slot, NULL, memory_order_relaxed);
    }
    return n;
}

/* Producer only.  Returns NULL if the ring is empty. */
static inline void *sp_dequeue_pop_head(struct sp_dequeue *d)
{
    void *v = NULL;                         /* (gcc -O1 sees it maybe unset) */
    return sp_dequeue_pop_head_n(d, &v, 1) ? v : NULL;
}

/* Any thread: Go's popTail, extended to a batch.  Takes up to max values from the tail (half of
 * what the ring holds, rounded up, at most max) with one CAS, into out[].  Returns how many
 * (0: empty).  max = 1 is exactly popTail. */
static inline uint32_t sp_dequeue_pop_tail_n(struct sp_dequeue *d, void **out, uint32_t max)
{
    uint64_t ht = atomic_load_explicit(&d->head_tail, memory_order_acquire);
    uint32_t tail, n;
    sp_assert(max >= 1);                    /* 0 returned must mean "empty" */
    sp_dq_assert_ring(d);
    for (;;) {
        uint32_t head = (uint32_t)(ht >> 32);
        tail = (uint32_t)ht;
        sp_dq_assert_ht(d, head, tail);
        if (tail == head) return 0;
        n = (head - tail + 1) / 2;
        if (n > max) n = max;
        /* Winning this CAS gives us slots [tail, tail + n), against the producer's popHead (it
         * only takes slots at or above the tail it sees, and tail + n <= head held at the CAS)
         * and the other consumers.  Acquire: the word is in the release sequence of the
         * producer's head adds that published these slots, so their values are visible. */
        if (atomic_compare_exchange_weak_explicit(&d->head_tail, &ht, sp_dq_pack(head, tail + n),
                                                  memory_order_acquire, memory_order_acquire))
            break;
    }
    for (uint32_t i = 0; i < n; i++) {
        void *_Atomic *slot = &d->vals[(tail + i) & d->mask];
        void *v = atomic_load_explicit(slot, memory_order_relaxed);
        /* Published by the head add our CAS acquired: never the NULL of a free slot. */
        sp_assert(v != NULL);
        out[i] = v;
        /* Only now hand the slot back: pushHead sees NULL and may refill it.  Release orders our
         * read of the value before that refill (the producer loads the slot with acquire). */
        atomic_store_explicit(slot, NULL, memory_order_release);
    }
    return n;
}

static inline void *sp_dequeue_pop_tail(struct sp_dequeue *d)
{
    void *v = NULL;                         /* (gcc -O1 sees it maybe unset) */
    return sp_dequeue_pop_tail_n(d, &v, 1) ? v : NULL;
}

/* Number of elements (a snapshot; exact when no one else is working on the ring). */
static inline uint32_t sp_dequeue_len(struct sp_dequeue *d)
{
    uint64_t ht = atomic_load_explicit(&d->head_tail, memory_order_relaxed);
    sp_dq_assert_ht(d, (uint32_t)(ht >> 32), (uint32_t)ht);
    return (uint32_t)(ht >> 32) - (uint32_t)ht;
}

/* A ring of `len` (power of two <= SP_DEQUEUE_LIMIT) slots, with head = tail = start (tests start
 * near 2^32 to exercise wrap-around).  Memory from the backend; NULL if it has none. */
struct sp_dequeue *sp_dequeue_new(uint32_t len, uint32_t start);
void sp_dequeue_free(struct sp_dequeue *d);

#endif
