/* test_rcu — read-side sections and grace periods as the pools use them (pool/rcu.h, over
 * liburcu's urcu-bp), under contention.
 *
 * Readers repeatedly enter a section, load the published object, check it is alive, check
 * again after a short delay, and leave.  The writer publishes a fresh object, waits for a grace
 * period, marks the old one dead and frees it (under ASan a late reader is a use-after-free;
 * elsewhere it sees the dead mark).  Every object is published exactly once and retired exactly
 * once; no reader may ever see a dead one.  Short-lived threads read and exit in a loop (urcu-bp
 * registers them on their first section and unregisters them at exit: thread churn during grace
 * periods).  Without the grace period the test fails at once (checked when it was written).
 *
 * A reader stopped inside a section (test_stopped_reader) delays the grace period that waits
 * for it: other threads still start, read and exit meanwhile (thread set-up and exit), and a
 * fork, which takes urcu-bp's grace-period lock in the library's fork handlers, completes once
 * the reader leaves. */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "rcu.h"
#include "rotate.h"

enum { LIVE = 0x11ce, DEAD = 0xdead };
struct obj { _Atomic int magic; long id; };

static struct obj *_Atomic cur;
static _Atomic bool stop;
static _Atomic long dead_seen, sections, published, retired;

static void read_once(void)
{
    sp_rcu_read_lock();
    struct obj *o = atomic_load_explicit(&cur, memory_order_acquire);
    if (atomic_load_explicit(&o->magic, memory_order_relaxed) != LIVE) atomic_fetch_add(&dead_seen, 1);
    for (volatile int i = 0; i < 50; i++) {}
    if (atomic_load_explicit(&o->magic, memory_order_relaxed) != LIVE) atomic_fetch_add(&dead_seen, 1);
    sp_rcu_read_unlock();
    atomic_fetch_add_explicit(&sections, 1, memory_order_relaxed);
}

static void *reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) read_once();
    return NULL;
}

static void *churner(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
            for (int i = 0; i < 100; i++) read_once();
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

static void run(long rounds)
{
    enum { R = 3 };
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
    CHECK(atomic_load(&dead_seen) == 0, "readers saw a retired object %ld times",
          atomic_load(&dead_seen));
    CHECK(atomic_load(&published) == rounds + 1 && atomic_load(&retired) == rounds + 1,
          "published %ld, retired %ld", atomic_load(&published), atomic_load(&retired));
    printf("%ld grace periods, %ld read sections\n", rounds, atomic_load(&sections));
}

/* ---- a reader stopped inside a section ------------------------------------------------------ */

static sem_t stopped_in, release_reader;
static _Atomic bool gp_done, churn_done, fork_done;

static void *stopped_reader(void *arg)
{
    (void)arg;
    sp_rcu_read_lock();
    sem_post(&stopped_in);
    sem_wait(&release_reader);          /* "descheduled" inside its section */
    sp_rcu_read_unlock();
    return NULL;
}

static void *waiting_writer(void *arg)
{
    (void)arg;
    sp_rcu_synchronize();
    atomic_store(&gp_done, true);
    return NULL;
}

static void *register_once(void *arg)
{
    (void)arg;
    read_once();
    return NULL;
}

/* Thread set-up and exit: 20 threads that urcu-bp registers and unregisters. */
static void *churn_threads(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        pthread_create(&t, NULL, register_once, NULL);
        pthread_join(t, NULL);
    }
    atomic_store(&churn_done, true);
    return NULL;
}

static void *forker(void *arg)
{
    (void)arg;
    pid_t pid = fork();                 /* runs the library's fork handlers (pthread_atfork) */
    if (pid == 0) _exit(0);
    int st = 0;
    if (pid > 0) waitpid(pid, &st, 0);
    atomic_store(&fork_done, pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return NULL;
}

/* Waits up to 5 s for *flag. */
static bool wait_flag(_Atomic bool *flag)
{
    for (int i = 0; i < 500 && !atomic_load(flag); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(flag);
}

static void test_stopped_reader(void)
{
    atomic_store(&cur, obj_new(0));
    sem_init(&stopped_in, 0, 0);
    sem_init(&release_reader, 0, 0);
    pthread_t r, w, c, f;
    pthread_create(&r, NULL, stopped_reader, NULL);
    sem_wait(&stopped_in);
    pthread_create(&w, NULL, waiting_writer, NULL);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);               /* the writer is waiting for the reader now */
    CHECK(!atomic_load(&gp_done), "the grace period ended while a reader was inside a section");
    pthread_create(&c, NULL, churn_threads, NULL);
    pthread_create(&f, NULL, forker, NULL);
    CHECK(wait_flag(&churn_done), "threads could not register or unregister while a reader was "
                                  "stopped inside a section (5 s)");
    CHECK(!atomic_load(&gp_done), "the grace period ended while a reader was inside a section");
    sem_post(&release_reader);
    CHECK(wait_flag(&fork_done), "fork did not complete after the stopped reader left (5 s)");
    pthread_join(r, NULL);
    pthread_join(w, NULL);
    pthread_join(c, NULL);
    pthread_join(f, NULL);
    CHECK(atomic_load(&gp_done), "the grace period did not end after the reader left");
    free(atomic_load(&cur));
    printf("stopped reader: checked thread set-up and exit during a held-up grace period, and "
           "fork after it\n");
}

int main(void)
{
    pthread_atfork(sp_rotator_fork_prepare, sp_rotator_fork_parent, sp_rotator_fork_child);
    test_stopped_reader();
    run(check_scale(1000));
    /* A grace period with no reader registered returns at once (a hang is the failure). */
    sp_rcu_synchronize();
    return check_done();
}
