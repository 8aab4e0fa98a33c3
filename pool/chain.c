/* chain.c — poolChain slow paths: growing, retiring and draining rings. */
#include "chain.h"

bool sp_chain_push_slow(struct sp_dequeue **head, struct sp_dequeue *_Atomic *tail, void *val)
{
    struct sp_dequeue *d = *head;
    uint32_t len = SP_CHAIN_FIRST;
    /* No ring yet: thieves have nothing to unlink, so the tail is empty too.  Else d is the
     * newest ring (its next is written only here, once). */
    sp_assert(d ? atomic_load_explicit(&d->next, memory_order_relaxed) == NULL
                : atomic_load_explicit(tail, memory_order_relaxed) == NULL);
    sp_assert(val != NULL);
    if (d) {
        len = (d->mask + 1) * 2;
        if (len > SP_DEQUEUE_LIMIT) len = SP_DEQUEUE_LIMIT;
    }
    sp_assert((len & (len - 1)) == 0 && len <= SP_DEQUEUE_LIMIT);
    struct sp_dequeue *n = sp_dequeue_new(len, 0);
    if (!n) return false;
    /* n is private until published below, so plain initialisation is enough here. */
    atomic_store_explicit(&n->prev, d, memory_order_relaxed);
    *head = n;
    if (d) {
        /* Publish the new ring to thieves walking next; release: they see it initialised. */
        atomic_store_explicit(&d->next, n, memory_order_release);
    } else {
        atomic_store_explicit(tail, n, memory_order_release);
    }
    /* A fresh ring is empty and nobody else pushes into it: this cannot fail. */
    bool pushed = sp_dequeue_push_head(n, val);
    sp_assert(pushed);
    return pushed;
}

/* Treiber stack of retired rings: pushed by thieves, taken whole by the rotation thread. */
static struct sp_dequeue *_Atomic sp_retired;

void sp_chain_retire(struct sp_dequeue *d)
{
    /* (Only a ring that is no longer the newest is unlinked, but tests/unit/test_procs.c retires
     * fresh rings to test the list alone.) */
    sp_assert(d != NULL);
    struct sp_dequeue *old = atomic_load_explicit(&sp_retired, memory_order_relaxed);
    do {
        d->retired_next = old;
        /* Release: the taker sees retired_next.  Push-only plus take-all has no ABA problem. */
    } while (!atomic_compare_exchange_weak_explicit(&sp_retired, &old, d, memory_order_release,
                                                    memory_order_relaxed));
}

struct sp_dequeue *sp_chain_retired_take(void)
{
    return atomic_exchange_explicit(&sp_retired, NULL, memory_order_acquire);
}

void sp_chain_retired_free(struct sp_dequeue *list)
{
    while (list) {
        struct sp_dequeue *next = list->retired_next;
        sp_dequeue_free(list);
        list = next;
    }
}

uint64_t sp_chain_drain(struct sp_dequeue *d, void (*release)(void *val, void *arg), void *arg)
{
    uint64_t n = 0;
    while (d) {
        void *val;
        while ((val = sp_dequeue_pop_tail(d)) != NULL) {
            if (release) release(val, arg);
            n++;
        }
        sp_assert(sp_dequeue_len(d) == 0);   /* no concurrent access left */
        struct sp_dequeue *next = atomic_load_explicit(&d->next, memory_order_relaxed);
        /* The list is doubly linked from the tail on (only the tail's prev is ever cleared). */
        sp_assert(!next || atomic_load_explicit(&next->prev, memory_order_relaxed) == d);
        sp_dequeue_free(d);
        d = next;
    }
    return n;
}
