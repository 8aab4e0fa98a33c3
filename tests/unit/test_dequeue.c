/* Go's TestPoolDequeue and TestPoolChain in C: one producer pushes 0..N-1 (with a popHead after
 * every 10th push, alternately of one value and of a batch of up to 4, and every 7th step a batch
 * of 1..8 values by pushHead_n), several consumers popTail; every value must be received exactly
 * once, and at least one popHead and one batch popHead must have succeeded.  Consumers 0 and 1
 * pop one value at a time (popTail), consumers 2 and 3 batches of up to 4 and 16 (the batch
 * steal).  The ring starts 500 below 2^32 so the 32-bit indices wrap during the test.  Built
 * against the pool core; CI runs it under ThreadSanitizer. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "chain.h"
#include "check.h"
#include "rcu.h"

#define NCONSUMERS 4

static long N;
static _Atomic uint8_t *have;          /* times value i was received */
static _Atomic bool done;
static _Atomic long head_pops;
static _Atomic long batch_head_pops;
static bool use_chain;

static struct sp_dequeue *ring;                       /* TestPoolDequeue */
static struct sp_dequeue *chain_head;                 /* TestPoolChain (head: producer only) */
static struct sp_dequeue *_Atomic chain_tail;

static void *val_of(long i) { return (void *)(uintptr_t)(i + 1); }   /* NULL means empty */
static long idx_of(void *v) { return (long)(uintptr_t)v - 1; }

static void record(void *v)
{
    long i = idx_of(v);
    if (i < 0 || i >= N) {
        CHECK(0, "value %ld out of range", i);
        return;
    }
    atomic_fetch_add(&have[i], 1);
    if (i == N - 1) atomic_store(&done, true);
}

static void *consumer(void *arg)
{
    static const uint32_t batch[NCONSUMERS] = {1, 1, 4, 16};
    uint32_t max = batch[(intptr_t)arg];
    long fails = 0;
    while (!atomic_load(&done)) {
        void *v[16];
        uint32_t n;
        if (use_chain) {
            sp_rcu_read_lock();       /* popTail may look at rings being retired */
            n = sp_chain_pop_tail_n(&chain_tail, v, max);
            sp_rcu_read_unlock();
        } else {
            n = sp_dequeue_pop_tail_n(ring, v, max);
        }
        for (uint32_t i = 0; i < n; i++) record(v[i]);
        if (n) {
            fails = 0;
        } else if (++fails % 64 == 0) {
            sched_yield();
        }
    }
    return NULL;
}

/* Pushes values [i, i + n) with the batch push; yields while the plain ring is full. */
static void push_batch(long i, uint32_t n)
{
    void *v[8];
    for (uint32_t k = 0; k < n; k++) v[k] = val_of(i + k);
    uint32_t pushed = 0;
    while (pushed < n) {
        uint32_t left = n - pushed;
        uint32_t k = use_chain ? sp_chain_push_head_n(&chain_head, &chain_tail, v + pushed, left)
                               : sp_dequeue_push_head_n(ring, v + pushed, left);
        CHECK(k <= left, "batch push claims %u of %u values", k, left);
        pushed += k;
        if (pushed < n) sched_yield();     /* ring full (only the plain ring can be) */
    }
}

static void *producer(void *arg)
{
    (void)arg;
    for (long i = 0; i < N;) {
        /* Every 7th step pushes a batch of 1..8 values (the rest of a batch steal, as kept). */
        if (i % 7 == 3) {
            uint32_t n = (uint32_t)(i % 8) + 1;
            if (n > N - i) n = (uint32_t)(N - i);
            push_batch(i, n);
            i += n;
            continue;
        }
        for (;;) {
            bool ok = use_chain ? sp_chain_push_head(&chain_head, &chain_tail, val_of(i))
                                : sp_dequeue_push_head(ring, val_of(i));
            if (ok) break;
            sched_yield();               /* ring full (only the plain ring can be) */
        }
        if (i % 20 == 10) {
            void *v = use_chain ? sp_chain_pop_head(chain_head) : sp_dequeue_pop_head(ring);
            if (v) {
                atomic_fetch_add(&head_pops, 1);
                record(v);
            }
        } else if (i % 20 == 0) {
            /* popHead for a batch of up to 4 (a private stack's refill) */
            void *v[4] = {0};
            uint32_t n = use_chain ? sp_chain_pop_head_n(chain_head, v, 4)
                                   : sp_dequeue_pop_head_n(ring, v, 4);
            CHECK(n <= 4, "batch popHead claims %u of at most 4 values", n);
            for (uint32_t k = 0; k < n && k < 4; k++) {
                /* oldest first: the values the producer pushed last, in push order */
                if (k > 0) CHECK(idx_of(v[k]) > idx_of(v[k - 1]), "batch popHead out of order");
                atomic_fetch_add(&batch_head_pops, 1);
                record(v[k]);
            }
        }
        i++;
    }
    return NULL;
}

/* Frees retired rings after grace periods while the test runs, as the rotation thread would. */
static void *reclaimer(void *arg)
{
    (void)arg;
    while (!atomic_load(&done)) {
        struct sp_dequeue *r = sp_chain_retired_take();
        sp_rcu_synchronize();
        sp_chain_retired_free(r);
        sched_yield();
    }
    return NULL;
}

static void run(bool chain)
{
    use_chain = chain;
    atomic_store(&done, false);
    atomic_store(&head_pops, 0);
    atomic_store(&batch_head_pops, 0);
    have = calloc((size_t)N, sizeof *have);
    if (chain) {
        chain_head = NULL;
        atomic_store(&chain_tail, NULL);
    } else {
        ring = sp_dequeue_new(16, (uint32_t)(UINT32_MAX - 500 + 1));
    }
    pthread_t c[NCONSUMERS], p, r;
    for (int i = 0; i < NCONSUMERS; i++) pthread_create(&c[i], NULL, consumer, (void *)(intptr_t)i);
    if (chain) pthread_create(&r, NULL, reclaimer, NULL);
    pthread_create(&p, NULL, producer, NULL);
    pthread_join(p, NULL);
    /* Consumers stop when they see N-1.  If it was lost (a defect), stop them after 10 s. */
    time_t deadline = time(NULL) + 10;
    while (!atomic_load(&done) && time(NULL) < deadline) sched_yield();
    atomic_store(&done, true);
    for (int i = 0; i < NCONSUMERS; i++) pthread_join(c[i], NULL);
    if (chain) pthread_join(r, NULL);
    /* Whatever is left (the consumers stop at N-1) is drained single-threaded. */
    void *v;
    if (chain) {
        while ((v = sp_chain_pop_tail(&chain_tail))) record(v);
        sp_chain_retired_free(sp_chain_retired_take());
        sp_chain_drain(atomic_load(&chain_tail), NULL, NULL);
    } else {
        while ((v = sp_dequeue_pop_tail(ring))) record(v);
        sp_dequeue_free(ring);
    }
    long missing = 0, dup = 0;
    for (long i = 0; i < N; i++) {
        uint8_t h = atomic_load(&have[i]);
        if (h == 0) missing++;
        if (h > 1) dup++;
    }
    CHECK(missing == 0 && dup == 0, "%s: %ld values never received, %ld received twice",
          chain ? "chain" : "dequeue", missing, dup);
    CHECK(atomic_load(&head_pops) > 0, "%s: no popHead succeeded", chain ? "chain" : "dequeue");
    CHECK(atomic_load(&batch_head_pops) > 0, "%s: no batch popHead succeeded",
          chain ? "chain" : "dequeue");
    printf("%s: %ld values, %ld via popHead, %ld via batch popHead\n",
           chain ? "poolChain" : "poolDequeue", N, atomic_load(&head_pops),
           atomic_load(&batch_head_pops));
    free(have);
}

int main(void)
{
    N = check_scale(200000);
    run(false);
    run(true);
    return check_done();
}
