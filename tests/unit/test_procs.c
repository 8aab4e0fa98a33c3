/* The recycled P id table (procs.c) under contention: threads take and give back ids in a loop;
 * every id must be held by exactly one thread at a time, ids stay dense (below the number of
 * threads that can hold one at once), and the retire list of poolChain (a lock-free stack) gives
 * every pushed ring back exactly once.  CI runs it under ThreadSanitizer and ASan. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "chain.h"
#include "check.h"
#include "procs.h"

#define THREADS 6
static _Atomic int holder[SP_MAX_PROCS];    /* thread index + 1 holding each id, 0 = free */
static _Atomic long clashes, too_high;
static long rounds;

static void *churn_ids(void *arg)
{
    int me = (int)(intptr_t)arg + 1;
    for (long i = 0; i < rounds; i++) {
        struct sp_proc *p = sp_proc_acquire();
        if (!p) {
            atomic_fetch_add(&clashes, 1);
            continue;
        }
        if (p->id >= THREADS) atomic_fetch_add(&too_high, 1);
        int was = atomic_exchange(&holder[p->id], me);
        if (was != 0) atomic_fetch_add(&clashes, 1);    /* someone else holds it too */
        if ((i & 7) == 0) sched_yield();
        int now = atomic_exchange(&holder[p->id], 0);
        if (now != me) atomic_fetch_add(&clashes, 1);
        sp_proc_release(p);
    }
    return NULL;
}

/* Retire-list pushers: each pushes its own rings; the taker must see each exactly once. */
#define PUSHERS 4
#define PER_PUSHER 2000
static struct sp_dequeue *rings[PUSHERS][PER_PUSHER];
static _Atomic int seen[PUSHERS][PER_PUSHER];
static _Atomic bool pushing_done;

static void *push_rings(void *arg)
{
    int k = (int)(intptr_t)arg;
    for (int i = 0; i < PER_PUSHER; i++) sp_chain_retire(rings[k][i]);
    return NULL;
}

static void count_list(struct sp_dequeue *list, long *strangers)
{
    for (struct sp_dequeue *d = list; d; d = d->retired_next) {
        int found = 0;
        for (int k = 0; k < PUSHERS && !found; k++)
            for (int i = 0; i < PER_PUSHER && !found; i++)
                if (rings[k][i] == d) {
                    atomic_fetch_add(&seen[k][i], 1);
                    found = 1;
                }
        if (!found) (*strangers)++;
    }
}

static void *take_rings(void *arg)
{
    long *strangers = arg;
    while (!atomic_load(&pushing_done)) {
        struct sp_dequeue *l = sp_chain_retired_take();
        count_list(l, strangers);
        sp_chain_retired_free(l);
        sched_yield();
    }
    return NULL;
}

int main(void)
{
    rounds = check_scale(20000);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, churn_ids, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&clashes) == 0, "%ld times an id was held by two threads (or none left)",
          atomic_load(&clashes));
    CHECK(atomic_load(&too_high) == 0, "%ld ids handed out above %d: not dense",
          atomic_load(&too_high), THREADS);
    CHECK(atomic_load(&sp_nprocs) <= THREADS, "high-water mark %u > %d",
          atomic_load(&sp_nprocs), THREADS);

    for (int k = 0; k < PUSHERS; k++)
        for (int i = 0; i < PER_PUSHER; i++) rings[k][i] = sp_dequeue_new(8, 0);
    long strangers = 0;
    pthread_t taker, pushers[PUSHERS];
    pthread_create(&taker, NULL, take_rings, &strangers);
    for (int k = 0; k < PUSHERS; k++)
        pthread_create(&pushers[k], NULL, push_rings, (void *)(intptr_t)k);
    for (int k = 0; k < PUSHERS; k++) pthread_join(pushers[k], NULL);
    atomic_store(&pushing_done, true);
    pthread_join(taker, NULL);
    struct sp_dequeue *rest = sp_chain_retired_take();
    count_list(rest, &strangers);
    sp_chain_retired_free(rest);
    long wrong = 0;
    for (int k = 0; k < PUSHERS; k++)
        for (int i = 0; i < PER_PUSHER; i++) wrong += atomic_load(&seen[k][i]) != 1;
    CHECK(wrong == 0 && strangers == 0, "retire list: %ld rings not seen exactly once, %ld unknown",
          wrong, strangers);
    printf("procs: %d threads x %ld acquire/release; retire list: %d rings\n", THREADS, rounds,
           PUSHERS * PER_PUSHER);
    return check_done();
}
