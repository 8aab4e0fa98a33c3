/* rotate.c — the rotation thread and the rotation step. */
#include "rotate.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "pool.h"

/* Serialises rotations and guards the thread's life cycle.  Held across sp_rcu_synchronize,
 * which is fine because no reader ever takes it (design decision 5). */
static pthread_mutex_t sp_rot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sp_rot_cond;
static pthread_t sp_rot_thread;
static long sp_period_ms;
static bool sp_purging;                 /* we purge jemalloc's dirty pages (be_take_over_purging) */
static bool sp_rot_started, sp_rot_stop, sp_rot_cond_ready;
static _Atomic bool sp_rot_running;
static _Atomic uint64_t sp_rot_count;

/* Generations ready to be published.  Rotation n publishes a spare and gets the generation that
 * aged out back as a spare, so after start-up (sp_spares_fill, from the constructor's thread) the
 * rotation thread allocates nothing: jemalloc 5.3 crashes when a thread on a second arena has to
 * grow it while the address space is exhausted, and the rotation thread is always such a thread. */
static struct sp_gen *sp_spare[2];
static int sp_nspare;

static void sp_spares_fill(void)
{
    while (sp_nspare < 2) {
        struct sp_gen *g = sp_gen_new();
        if (!g) break;
        sp_spare[sp_nspare++] = g;
    }
}

void sp_rotator_configure(long period_ms, bool purge)
{
    sp_period_ms = period_ms;
    sp_purging = purge && period_ms > 0;
    if (period_ms <= 0) return;           /* rotations only by syncpool_rotate_now() */
    pthread_mutex_lock(&sp_rot_lock);
    sp_spares_fill();
    pthread_mutex_unlock(&sp_rot_lock);
}
long sp_rotator_period(void) { return sp_period_ms; }
uint64_t sp_rotations(void) { return atomic_load_explicit(&sp_rot_count, memory_order_relaxed); }

static void sp_cond_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&sp_rot_cond, &a);
    pthread_condattr_destroy(&a);
    sp_rot_cond_ready = true;
}

/* Caller holds sp_rot_lock. */
static uint64_t sp_rotate_locked(void)
{
    struct sp_gen *fresh = sp_nspare ? sp_spare[--sp_nspare] : sp_gen_new();
    if (!fresh) return 0;                 /* no memory: skip this rotation, keep what we have */
    struct sp_gen *aged = sp_pool_publish(fresh);
    /* Rings retired up to now may still be held by readers that started before this point. */
    struct sp_dequeue *retired = sp_chain_retired_take();
    sp_rcu_synchronize();
    /* No reader can see `aged` or the retired rings any more. */
    uint64_t n = 0;
    if (aged) {
        n = sp_gen_recycle(aged);
        sp_spare[sp_nspare++] = aged;     /* one taken, at most one back: never more than 2 */
    }
    sp_chain_retired_free(retired);
    atomic_fetch_add_explicit(&sp_rot_count, 1, memory_order_relaxed);
    return n;
}

uint64_t sp_rotate_once(void)
{
    pthread_mutex_lock(&sp_rot_lock);
    uint64_t n = sp_rotate_locked();
    pthread_mutex_unlock(&sp_rot_lock);
    return n;
}

static long sp_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void *sp_rotator_main(void *arg)
{
    (void)arg;
    sp_self.state = SP_T_OFF;   /* this thread's own allocations go straight to the backend */
    be_thread_init();
    /* Memory that rotation handed back to jemalloc leaves the process soon after: the zone's
     * decay runs every two periods (at least 200 ms apart, so a 1 ms rotation does not turn into
     * constant page faults), and the other arenas' dirty pages (large blocks) are purged every two
     * periods but at least 1 s apart, since a program that keeps reallocating large blocks faults
     * in again whatever is purged (docs/design.md, "Purging"). */
    long decay_every = 2 * sp_period_ms < 200 ? 200 : 2 * sp_period_ms;
    long purge_every = 2 * sp_period_ms < 1000 ? 1000 : 2 * sp_period_ms;
    long last_decay = sp_now_ms(), last_purge = last_decay;
    pthread_mutex_lock(&sp_rot_lock);
    while (!sp_rot_stop) {
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += sp_period_ms / 1000;
        at.tv_nsec += (sp_period_ms % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) { at.tv_sec++; at.tv_nsec -= 1000000000L; }
        int rc = 0;
        while (!sp_rot_stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&sp_rot_cond, &sp_rot_lock, &at);
        if (sp_rot_stop) break;
        sp_rotate_locked();
        long now = sp_now_ms();
        if (sp_purging && now - last_decay >= decay_every) {
            bool arenas = now - last_purge >= purge_every;
            be_purge(arenas);
            last_decay = now;
            if (arenas) last_purge = now;
        }
    }
    pthread_mutex_unlock(&sp_rot_lock);
    return NULL;
}

void sp_rotator_ensure_started(void)
{
    if (sp_period_ms <= 0 || atomic_load_explicit(&sp_rot_running, memory_order_acquire)) return;
    pthread_mutex_lock(&sp_rot_lock);
    if (!sp_rot_started && !sp_rot_stop) {
        sp_rot_started = true;            /* one attempt per process (and per forked child) */
        if (!sp_rot_cond_ready) sp_cond_init();
        /* The thread gets no signals: they belong to the application's threads. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&sp_rot_thread, NULL, sp_rotator_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0)
            atomic_store_explicit(&sp_rot_running, true, memory_order_release);
        else {
            dprintf(2, "syncpool: cannot start the rotation thread (error %d); pools will not "
                       "rotate\n", rc);
            if (sp_purging) be_give_back_purging();   /* nobody else would ever purge */
            sp_purging = false;
        }
    }
    pthread_mutex_unlock(&sp_rot_lock);
}

void sp_rotator_stop(void)
{
    pthread_mutex_lock(&sp_rot_lock);
    sp_rot_stop = true;
    bool running = atomic_load_explicit(&sp_rot_running, memory_order_relaxed);
    if (running) pthread_cond_broadcast(&sp_rot_cond);
    pthread_mutex_unlock(&sp_rot_lock);
    if (!running) return;
    /* The thread finishes at most one rotation (readers never block it for long).  Bounded wait
     * all the same: exit must not hang. */
    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_sec += 2;
    if (pthread_timedjoin_np(sp_rot_thread, NULL, &at) == 0)
        atomic_store_explicit(&sp_rot_running, false, memory_order_relaxed);
}

void sp_rotator_fork_prepare(void)
{
    pthread_mutex_lock(&sp_rot_lock);
    sp_rcu_fork_prepare();
}

void sp_rotator_fork_parent(void)
{
    sp_rcu_fork_parent();
    pthread_mutex_unlock(&sp_rot_lock);
}

void sp_rotator_fork_child(void)
{
    sp_rcu_fork_child();
    /* The rotation thread does not exist here (it was waiting on the cond, or not started):
     * fresh lock and cond, and it is started again lazily by the first thread set-up. */
    pthread_mutex_init(&sp_rot_lock, NULL);
    if (sp_rot_cond_ready) sp_cond_init();
    atomic_store_explicit(&sp_rot_running, false, memory_order_relaxed);
    sp_rot_started = false;
}
