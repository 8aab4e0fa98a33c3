/* test_rcu — the read side (pool/rcu.h) under contention.
 *
 * Readers repeatedly enter a section, load the published object, check it is alive, check
 * again after a short delay, and leave.  The writer publishes a fresh object, waits for a grace
 * period, marks the old one dead and frees it (under ASan a late reader is a use-after-free;
 * elsewhere it sees the dead mark).  Every object is published exactly once and retired exactly
 * once; no reader may ever see a dead one.  Extra threads register, read and unregister in a loop
 * (thread churn during grace periods).  Runs with sys_membarrier and with the mprotect fallback.
 * Without the grace period the test fails at once (checked when it was written). */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "rcu.h"

enum { LIVE = 0x11ce, DEAD = 0xdead };
struct obj { _Atomic int magic; long id; };

static struct obj *_Atomic cur;
static _Atomic bool stop;
static _Atomic long dead_seen, sections, published, retired;
static __thread struct sp_rcu_reader me;

static void read_once(void)
{
    sp_rcu_enter(&me);
    struct obj *o = atomic_load_explicit(&cur, memory_order_acquire);
    if (atomic_load_explicit(&o->magic, memory_order_relaxed) != LIVE) atomic_fetch_add(&dead_seen, 1);
    for (volatile int i = 0; i < 50; i++) {}
    if (atomic_load_explicit(&o->magic, memory_order_relaxed) != LIVE) atomic_fetch_add(&dead_seen, 1);
    sp_rcu_exit(&me);
    atomic_fetch_add_explicit(&sections, 1, memory_order_relaxed);
}

static void *reader(void *arg)
{
    (void)arg;
    sp_rcu_register(&me, NULL);
    while (!atomic_load(&stop)) read_once();
    sp_rcu_unregister(&me);
    return NULL;
}

static void *churner(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        sp_rcu_register(&me, NULL);
        for (int i = 0; i < 100; i++) read_once();
        sp_rcu_unregister(&me);
        sched_yield();
    }
    return NULL;
}

static struct obj *obj_new(long id)
{
    struct obj *o = malloc(sizeof *o);
    atomic_init(&o->magic, LIVE);
    o->id = id;
    atomic_fetch_add(&published, 1);
    return o;
}

static void run(bool membarrier, long rounds)
{
    enum { R = 3 };
    sp_rcu_set_membarrier(membarrier);
    atomic_store(&stop, false);
    atomic_store(&dead_seen, 0);
    atomic_store(&published, 0);
    atomic_store(&retired, 0);
    atomic_store(&cur, obj_new(0));
    pthread_t th[R + 1];
    for (int i = 0; i < R; i++) pthread_create(&th[i], NULL, reader, NULL);
    pthread_create(&th[R], NULL, churner, NULL);
    for (long k = 1; k <= rounds; k++) {
        struct obj *old = atomic_exchange_explicit(&cur, obj_new(k), memory_order_acq_rel);
        sp_rcu_synchronize();
        atomic_store_explicit(&old->magic, DEAD, memory_order_relaxed);
        free(old);
        atomic_fetch_add(&retired, 1);
    }
    atomic_store(&stop, true);
    for (int i = 0; i <= R; i++) pthread_join(th[i], NULL);
    free(atomic_load(&cur));
    atomic_fetch_add(&retired, 1);
    CHECK(atomic_load(&dead_seen) == 0, "%s: readers saw a retired object %ld times",
          membarrier ? "membarrier" : "mprotect", atomic_load(&dead_seen));
    CHECK(atomic_load(&published) == rounds + 1 && atomic_load(&retired) == rounds + 1,
          "published %ld, retired %ld", atomic_load(&published), atomic_load(&retired));
    printf("%s: %ld grace periods, %ld read sections\n", membarrier ? "membarrier" : "mprotect",
           rounds, atomic_load(&sections));
}

int main(void)
{
    run(true, check_scale(1000));
    run(false, check_scale(300));
    /* A grace period with no reader registered returns at once. */
    sp_rcu_synchronize();
    CHECK(1, "synchronize without readers");
    return check_done();
}
