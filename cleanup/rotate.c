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
#include "sp_assert.h"
#include "stats.h"
#include "upool.h"

/* Three locks, so that nothing waits for a grace period but another rotation:
 *  - sp_rot_serial serialises rotations and is held across the grace period.  Only rotations
 *    take it (the rotation thread and syncpool_rotate_now's callers); fork does not (in the child
 *    it is made anew, with the rotation it guarded finished there, see sp_inflight).
 *  - sp_rot_lock guards the state below and is held only for bounded work: publishing a
 *    generation, recycling one, starting the thread.  Thread set-up and exit and fork take it.
 *  - sp_rot_life is held by whoever starts or joins the thread (pthread_create, pthread_join
 *    outside sp_rot_lock), so that no two threads join the same thread.
 * Order: sp_rot_life, then sp_rot_serial, then sp_rot_lock, then the pools' and the read side's
 * locks (the fork handlers take them in that order).  The program pools' drain lock (upool.c) is
 * also held across the grace period, taken after sp_rot_serial and never with sp_rot_lock; fork
 * does not take it either. */
static pthread_mutex_t sp_rot_serial = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sp_rot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sp_rot_life = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sp_rot_cond;      /* the thread's timed wait: users, quit or stop changed */
static long sp_period_ms;
static bool sp_purge_wanted;            /* take over jemalloc's purging when the thread is armed */
static bool sp_purging;                 /* we purge jemalloc's dirty pages (be_take_over_purging):
                                         * set before the thread first starts (sp_rotator_arm) */
static _Atomic uint64_t sp_rot_count;

/* The thread's life cycle, under sp_rot_lock.  IDLE: no thread; RUNNING: it runs (it may have
 * been told to quit); EXITED: it returned or is returning, and must be joined before another
 * starts.  sp_rot_pid: the process that started it (a child made by a raw clone, which runs no
 * fork handlers, has no such thread though it finds RUNNING). */
enum { SP_ROT_IDLE, SP_ROT_RUNNING, SP_ROT_EXITED };
static int sp_rot_state;
static pthread_t sp_rot_thread;
static pid_t sp_rot_pid;
static long sp_rot_users;               /* application threads that use the pools */
static bool sp_rot_quit;                /* the running thread must return */
static bool sp_rot_final;               /* process exit: never start again */
static int sp_rot_paused;               /* inside sp_rotator_pause/resume: do not start */
static bool sp_rot_cond_ready;
static bool sp_rot_set_up;              /* the running thread has bound its backend state */
static bool sp_rot_armed;               /* the pools are warm (sp_rotator_arm): the thread may run */

/* Generations ready to be published.  Rotation n publishes a spare and gets the generation that
 * aged out back as a spare, so after start-up (sp_spares_fill, from the constructor's thread) the
 * rotation thread allocates nothing: jemalloc 5.3 crashes when a thread on a second arena has to
 * grow it while the address space is exhausted, and the rotation thread is always such a thread.
 * Under sp_rot_lock. */
static struct sp_gen *sp_spare[2];
static int sp_nspare;

/* What a rotation has unpublished and not yet given back, under sp_rot_lock: set when it
 * publishes, cleared when it has recycled them.  A fork in between leaves the child without the
 * rotating thread, so the child's fork handler moves them to the orphans, which the child's
 * next rotation recycles with its own (no reader of the child can hold them: its only thread was
 * outside every section when it forked). */
static struct sp_gen *sp_inflight_aged, *sp_orphan_aged;
static struct sp_dequeue *sp_inflight_retired, *sp_orphan_retired;

static void sp_spares_fill(void)
{
    sp_assert_held(&sp_rot_lock);
    while (sp_nspare < 2) {
        struct sp_gen *g = sp_gen_new();
        if (!g) break;
        sp_spare[sp_nspare++] = g;
    }
}

static void sp_cond_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&sp_rot_cond, &a);
    pthread_condattr_destroy(&a);
    sp_rot_cond_ready = true;
}

void sp_rotator_configure(long period_ms, bool purge)
{
    sp_assert(period_ms >= 0);
    sp_period_ms = period_ms;
    sp_purge_wanted = purge && period_ms > 0;
    pthread_mutex_lock(&sp_rot_lock);
    if (!sp_rot_cond_ready) sp_cond_init();
    if (period_ms > 0) sp_spares_fill();  /* else rotations only by syncpool_rotate_now() */
    pthread_mutex_unlock(&sp_rot_lock);
}

uint64_t sp_rotations(void) { return atomic_load_explicit(&sp_rot_count, memory_order_relaxed); }

/* ---- the rotation step ---------------------------------------------------------------------- */

/* Caller holds sp_rot_lock.  An aged-out generation g back to the backend; g becomes a spare. */
static uint64_t sp_give_back(struct sp_gen *g, struct sp_dequeue *retired)
{
    uint64_t n = 0;
    sp_assert_held(&sp_rot_lock);
    sp_assert(sp_nspare >= 0 && sp_nspare <= 2);
    if (g) {
        n = sp_gen_recycle(g);
        if (sp_nspare < 2)
            sp_spare[sp_nspare++] = g;
        else
            sp_gen_free(g);               /* a child's orphan: one more than the two spares */
    }
    sp_chain_retired_free(retired);
    return n;
}

uint64_t sp_rotate_once(void)
{
    /* Not from inside the allocator (nor a section: sp_rcu_synchronize checks that). */
    sp_assert(!sp_guard_held(&sp_self.guard));
    /* Inside the allocator until the program pools' drain: a signal handler that interrupts
     * this thread while it frees into the backend must not enter the backend itself (its
     * mallocs go to nested.h, its pool calls to New and drop). */
    pthread_mutex_lock(&sp_rot_serial);
    bool nested = sp_guard_enter(&sp_self.guard);   /* after the wait: idle meanwhile */
    sp_assert(!nested);
    (void)nested;
    pthread_mutex_lock(&sp_rot_lock);
    sp_assert(sp_nspare >= 0 && sp_nspare <= 2);
    /* Rotations are serialised: none is between publishing and giving back. */
    sp_assert(sp_inflight_aged == NULL && sp_inflight_retired == NULL);
    struct sp_gen *fresh = sp_nspare ? sp_spare[--sp_nspare] : sp_gen_new();
    if (!fresh) {                         /* no memory: skip this rotation, keep what we have */
        pthread_mutex_unlock(&sp_rot_lock);
        pthread_mutex_unlock(&sp_rot_serial);
        sp_guard_exit(&sp_self.guard);
        sp_pool_drain_deferred(&sp_self);
        return 0;
    }
    /* Under sp_rot_lock, so that a fork sees the pools either before or after the publication. */
    struct sp_gen *aged = sp_pool_publish(fresh);
    /* The old victim: neither generation that readers can now find. */
    sp_assert(aged != fresh && aged != atomic_load_explicit(&sp_victim_gen, memory_order_relaxed));
    /* Rings retired up to now may still be held by readers that started before this point. */
    struct sp_dequeue *retired = sp_chain_retired_take();
    sp_inflight_aged = aged;
    sp_inflight_retired = retired;
    pthread_mutex_unlock(&sp_rot_lock);
    /* The program's pools (upool.h): their generations move on under the same grace period. */
    sp_upools_publish();

    sp_rcu_synchronize();       /* holds only sp_rot_serial and the pools' drain lock meanwhile */

    /* No reader can see `aged` or the retired rings any more. */
    pthread_mutex_lock(&sp_rot_lock);
    uint64_t n = sp_give_back(aged, retired);
    sp_inflight_aged = NULL;
    sp_inflight_retired = NULL;
    n += sp_give_back(sp_orphan_aged, sp_orphan_retired);
    sp_orphan_aged = NULL;
    sp_orphan_retired = NULL;
    pthread_mutex_unlock(&sp_rot_lock);
    sp_guard_exit(&sp_self.guard);
    sp_pool_drain_deferred(&sp_self);     /* what handlers freed meanwhile */
    /* The program's drop_object runs here, with no lock of ours but sp_rot_serial (so it must
     * not rotate) and the drain lock (so it must not destroy a pool: include/syncpool.h). */
    n += sp_upools_drain();
    atomic_fetch_add_explicit(&sp_rot_count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sp_rot_serial);
    return n;
}

/* ---- the thread ----------------------------------------------------------------------------- */

/* Fewer pooled mallocs and frees than this per ms of a period: the program has gone quiet, and
 * what it freed can leave the process at once (sp_rotator_main).  10 000 a second is about what a
 * program idling between requests makes, and a hundredth of what a busy one makes. */
#define SP_QUIET_OPS_PER_MS 10

static long sp_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Under sp_rot_lock: the thread should go on running. */
static bool sp_rot_wanted(void)
{
    sp_assert_held(&sp_rot_lock);
    sp_assert(sp_rot_users >= 0);
    return !sp_rot_quit && !sp_rot_final && sp_rot_users > 0;
}

static void *sp_rotator_main(void *arg)
{
    (void)arg;
    sp_self.state = SP_T_OFF;   /* this thread's own allocations go straight to the backend */
    be_thread_init();
    /* Its starter waits for this: the backend's per-thread set-up must not run later, when the
     * application may have exhausted its address space (jemalloc 5.3 then crashes). */
    pthread_mutex_lock(&sp_rot_lock);
    sp_rot_set_up = true;
    pthread_cond_broadcast(&sp_rot_cond);
    pthread_mutex_unlock(&sp_rot_lock);
    /* Memory that rotation handed back to jemalloc leaves the process soon after
     * (docs/design.md, "Purging"):
     *  - once the program has gone quiet (fewer than SP_QUIET_OPS_PER_MS pooled mallocs and frees
     *    per ms over a whole period), every arena's dirty pages at once, the zone's too: what the
     *    last rotations gave back and nobody asked for again.  Once per quiet stretch, and again
     *    after each rotation that gave objects back during it (the victim empties a period
     *    after the program went quiet, an idle thread's stacks when the rotation ages them);
     *  - while it runs, the zone keeps jemalloc's own decay (its mallocs and frees drive it, as
     *    under jemalloc alone; purging it sooner made python fault its pages in again), advanced
     *    here every decay_every for a program that allocates too little to drive it;
     *  - the other arenas (large blocks), which never purge by themselves, every two periods but
     *    at least 1 s apart, since a program that keeps reallocating large blocks faults in again
     *    whatever is purged. */
    long decay_every = 2 * sp_period_ms < 200 ? 200 : 2 * sp_period_ms;
    long purge_every = 2 * sp_period_ms < 1000 ? 1000 : 2 * sp_period_ms;
    long last_decay = sp_now_ms(), last_purge = last_decay;
    uint64_t last_ops = sp_purging ? sp_stats_class_ops() : 0;
    bool quiet_purged = false;
    pthread_mutex_lock(&sp_rot_lock);
    while (sp_rot_wanted()) {
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += sp_period_ms / 1000;
        at.tv_nsec += (sp_period_ms % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) { at.tv_sec++; at.tv_nsec -= 1000000000L; }
        int rc = 0;
        while (sp_rot_wanted() && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&sp_rot_cond, &sp_rot_lock, &at);
        if (!sp_rot_wanted()) break;
        pthread_mutex_unlock(&sp_rot_lock);
        uint64_t released = sp_rotate_once();
        long now = sp_now_ms();
        /* A whole period: rotations are at least a period apart (the timed wait above).  The
         * counters only grow (a P's pcache and counters outlive its threads). */
        uint64_t ops = sp_purging ? sp_stats_class_ops() : 0;
        bool quiet = ops - last_ops < (uint64_t)sp_period_ms * SP_QUIET_OPS_PER_MS;
        last_ops = ops;
        if (!quiet) quiet_purged = false;
        if (sp_purging && quiet && (!quiet_purged || released > 0)) {
            be_purge(true, true);
            quiet_purged = true;
            last_decay = last_purge = now;
        } else if (sp_purging && now - last_decay >= decay_every) {
            bool arenas = now - last_purge >= purge_every;
            be_purge(false, arenas);
            last_decay = now;
            if (arenas) last_purge = now;
        }
        pthread_mutex_lock(&sp_rot_lock);
    }
    /* Whoever starts the next thread, pauses or stops joins this one first.  If the application's
     * threads have all ended, this is the last thread of the process: returning ends the process
     * (glibc calls exit(0) here, which runs sp_rotator_stop on this thread: see there). */
    sp_assert(sp_rot_state == SP_ROT_RUNNING);   /* nobody joins a running thread */
    sp_rot_state = SP_ROT_EXITED;
    pthread_mutex_unlock(&sp_rot_lock);
    return NULL;
}

/* Joins the thread, telling it to quit if it runs.  Caller holds sp_rot_life, not sp_rot_lock.
 * Bounded (2 s): exit and unshare must not hang on a thread that a stopped reader holds up in
 * its grace period.  Returns true if no thread is left (it joined one, or there was none).  A
 * thread of another process (we are a child made by vfork or a raw clone, which run no fork
 * handlers) is left alone: it does not exist here, or it is the parent's. */
static bool sp_rot_join_locked_life(bool *joined)
{
    sp_assert_held(&sp_rot_life);
    pthread_mutex_lock(&sp_rot_lock);
    int st = sp_rot_state;
    pthread_t th = sp_rot_thread;
    bool other = st != SP_ROT_IDLE && sp_rot_pid != getpid();
    if (st == SP_ROT_RUNNING && !other) {
        sp_rot_quit = true;
        pthread_cond_broadcast(&sp_rot_cond);
    }
    pthread_mutex_unlock(&sp_rot_lock);
    if (st == SP_ROT_IDLE) return true;
    if (other || pthread_equal(th, pthread_self())) return false;   /* exit() on the thread */
    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_sec += 2;
    if (pthread_timedjoin_np(th, NULL, &at) != 0) return false;
    pthread_mutex_lock(&sp_rot_lock);
    sp_assert(sp_rot_state == SP_ROT_EXITED);   /* its last store; only its joiner resets it */
    sp_rot_state = SP_ROT_IDLE;
    pthread_mutex_unlock(&sp_rot_lock);
    if (joined) *joined = true;
    return true;
}

/* Starts the thread if it should run and does not.  Caller holds sp_rot_life. */
static void sp_rot_start_locked_life(void)
{
    sp_assert_held(&sp_rot_life);
    pthread_mutex_lock(&sp_rot_lock);
    bool exited = sp_rot_state == SP_ROT_EXITED && sp_rot_pid == getpid();
    pthread_mutex_unlock(&sp_rot_lock);
    if (exited && !sp_rot_join_locked_life(NULL)) return;
    pthread_mutex_lock(&sp_rot_lock);
    if (sp_rot_state == SP_ROT_IDLE && sp_period_ms > 0 && sp_rot_armed && !sp_rot_final &&
        !sp_rot_paused && sp_rot_users > 0) {
        sp_rot_quit = false;
        sp_rot_set_up = false;
        /* The thread gets no signals: they belong to the application's threads. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&sp_rot_thread, NULL, sp_rotator_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0) {
            sp_rot_state = SP_ROT_RUNNING;
            sp_rot_pid = getpid();
            /* Until the thread has set up its backend state (sp_rotator_main).  It takes no lock
             * of its starter's but this one, which the wait releases. */
            while (!sp_rot_set_up) pthread_cond_wait(&sp_rot_cond, &sp_rot_lock);
        } else {
            dprintf(2, "syncpool: cannot start the rotation thread (error %d); pools will not "
                       "rotate\n", rc);
            if (sp_purging) be_give_back_purging();   /* nobody else would ever purge */
            sp_purging = false;
            sp_rot_final = true;          /* one warning, and no attempt on every new thread */
        }
    }
    pthread_mutex_unlock(&sp_rot_lock);
}

void sp_rotator_user_add(void)
{
    sp_assert(!sp_guard_held(&sp_self.guard));   /* not inside the allocator */
    pthread_mutex_lock(&sp_rot_lock);
    sp_rot_users++;
    bool start = sp_period_ms > 0 && sp_rot_armed && !sp_rot_final && !sp_rot_paused &&
                 sp_rot_state != SP_ROT_RUNNING;
    pthread_mutex_unlock(&sp_rot_lock);
    if (!start) return;
    pthread_mutex_lock(&sp_rot_life);
    sp_rot_start_locked_life();
    pthread_mutex_unlock(&sp_rot_life);
}

void sp_rotator_arm(void)
{
    sp_assert(!sp_guard_held(&sp_self.guard));   /* not inside the allocator */
    pthread_mutex_lock(&sp_rot_lock);
    bool first = !sp_rot_armed;                  /* once per process (a forked child inherits it) */
    if (first) {
        sp_assert(sp_rot_state != SP_ROT_RUNNING);
        /* Before the thread can exist, which then reads sp_purging without the lock.  The
         * backend's locks come after sp_rot_lock (the order at the top). */
        sp_purging = sp_purge_wanted && be_take_over_purging();
        sp_rot_armed = true;
    }
    pthread_mutex_unlock(&sp_rot_lock);
    if (!first) return;
    pthread_mutex_lock(&sp_rot_life);
    sp_rot_start_locked_life();
    pthread_mutex_unlock(&sp_rot_life);
}

void sp_rotator_user_drop(void)
{
    pthread_mutex_lock(&sp_rot_lock);
    /* The last user gone: the thread returns now, not at its next period (a process whose
     * threads have all ended exits at once). */
    sp_assert(sp_rot_users > 0);            /* a drop follows its thread's add */
    if (sp_rot_users > 0 && --sp_rot_users == 0 && sp_rot_cond_ready)
        pthread_cond_broadcast(&sp_rot_cond);
    pthread_mutex_unlock(&sp_rot_lock);
}

void sp_rotator_stop(void)
{
    pthread_mutex_lock(&sp_rot_lock);
    sp_rot_final = true;
    pthread_mutex_unlock(&sp_rot_lock);
    pthread_mutex_lock(&sp_rot_life);
    sp_rot_join_locked_life(NULL);
    pthread_mutex_unlock(&sp_rot_life);
}

bool sp_rotator_pause(void)
{
    bool joined = false;
    sp_assert(!sp_guard_held(&sp_self.guard));   /* not inside the allocator */
    pthread_mutex_lock(&sp_rot_life);
    pthread_mutex_lock(&sp_rot_lock);
    sp_rot_paused++;
    sp_assert(sp_rot_paused > 0);
    pthread_mutex_unlock(&sp_rot_lock);
    sp_rot_join_locked_life(&joined);
    pthread_mutex_unlock(&sp_rot_life);
    return joined;
}

void sp_rotator_resume(void)
{
    pthread_mutex_lock(&sp_rot_life);
    pthread_mutex_lock(&sp_rot_lock);
    if (sp_rot_paused > 0) sp_rot_paused--;
    pthread_mutex_unlock(&sp_rot_lock);
    sp_rot_start_locked_life();
    pthread_mutex_unlock(&sp_rot_life);
}

/* ---- fork ----------------------------------------------------------------------------------- */

/* liburcu-bp's locks come first: its prepare waits for a grace period in progress, whose readers
 * may need the backend's locks (a section that makes a pblock) before they can end. */
void sp_rotator_fork_prepare(void)
{
    sp_rcu_fork_prepare();
    pthread_mutex_lock(&sp_rot_lock);
    sp_pool_fork_prepare();
    be_fork_prepare();
}

void sp_rotator_fork_parent(void)
{
    be_fork_parent();
    sp_pool_fork_parent();
    pthread_mutex_unlock(&sp_rot_lock);
    sp_rcu_fork_parent();
}

void sp_rotator_fork_child(void)
{
    be_fork_child();
    sp_pool_fork_child();
    /* The rotation thread does not exist here, nor does any thread that held sp_rot_serial or
     * sp_rot_life: fresh locks and cond; the thread is started again by the first thread set-up
     * (the forking thread's, on its next allocation). */
    pthread_mutex_init(&sp_rot_serial, NULL);
    pthread_mutex_init(&sp_rot_life, NULL);
    pthread_mutex_init(&sp_rot_lock, NULL);
    if (sp_rot_cond_ready) sp_cond_init();
    sp_rot_state = SP_ROT_IDLE;
    sp_rot_users = 0;
    sp_rot_quit = false;
    sp_rot_paused = 0;
    sp_rcu_fork_child();
    /* A rotation was between publishing and giving back (see sp_inflight). */
    if (sp_inflight_aged || sp_inflight_retired) {
        sp_orphan_aged = sp_inflight_aged;
        sp_orphan_retired = sp_inflight_retired;
        sp_inflight_aged = NULL;
        sp_inflight_retired = NULL;
    }
}
