/* fork_api: fork() while other threads call every function of include/syncpool.h and allocate;
 * no child may hang (issue #14, item 3; design decision 7: every lock the library owns is taken
 * by its fork handlers).
 *
 *   sp_fork_api [NFORKS]      (default 1000)
 *
 * A lock of the library that the fork handlers do not take can be held by another thread at the
 * moment of fork(); the child then has it locked forever, and hangs as soon as it needs it (its
 * next rotation, or its exit, which stops the rotation thread).  The case: one thread
 * calling syncpool_cached_bytes() in a loop while main forked 40 times left 21 hung children.
 *
 * 2 threads call, in a loop, every function the public header declares: syncpool_rotate_now,
 * syncpool_stats_json and syncpool_stats_print (to a memory stream and to /dev/null),
 * syncpool_cached_bytes and syncpool_rotations; 2 more allocate, verify and free objects of all
 * sizes.  The main thread forks NFORKS times, each time 1 to 3 ms after it let those threads run
 * again (while it waits for a child they nap, so that on 2 cores the child gets the CPU).  Each child allocates and verifies objects, calls
 * syncpool_rotate_now(), syncpool_cached_bytes(), syncpool_rotations(), syncpool_stats_json()
 * and syncpool_stats_print(), creates and joins a thread that allocates and calls
 * syncpool_rotate_now() too, rotates once more and exits with exit(0) (so the library's exit
 * path runs: the child's rotation thread is stopped).  The parent waits for each child with a 5 s
 * deadline; a child still running then is counted as hung and killed (after 5 hung children the
 * test stops early, and it also stops, failing, if the forks are not done after 180 s).  Pass:
 * every child exited with status 0, none hung, and the API threads and allocating threads made
 * progress during the forks.  It prints the time spent in fork() and waiting for children. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "syncpool.h"

#define NAPI 2
#define NALLOC 2
#define CHILD_DEADLINE 5.0
#define MAX_HUNG 5
#define MAX_SECONDS 180.0 /* the forks must be done by then (CTest's TIMEOUT is 240) */

static atomic_int stop;
/* Set by the main thread while it waits for a child: the other threads then nap, so that on 2
 * cores the child gets the CPU; cleared a moment before the next fork, so that every fork lands
 * while they are busy. */
static atomic_int child_running;
static atomic_ulong api_calls, alloc_ops;

static size_t pick_size(uint64_t r)
{
    if (r % 32 == 0)
        return 14337 + (r >> 8) % 40000;
    return 1 + (r >> 8) % 4096;
}

/* Every function of include/syncpool.h once; -1 if one of them reports an error. */
static int call_api(FILE *devnull)
{
    int bad = 0;
    char *buf = NULL;
    size_t len = 0;
    (void)syncpool_rotate_now();
    FILE *m = open_memstream(&buf, &len);
    if (m) {
        bad |= syncpool_stats_json(m) != 0;
        bad |= syncpool_stats_print(m) < 0;
        fclose(m);
        bad |= len == 0 || buf == NULL || buf[0] != '{';
        free(buf);
    }
    if (devnull) {
        bad |= syncpool_stats_json(devnull) != 0;
        bad |= syncpool_stats_print(devnull) < 0;
        fflush(devnull);
    }
    volatile unsigned long long sink = syncpool_cached_bytes() + syncpool_rotations();
    (void)sink;
    return bad ? -1 : 0;
}

static void *api_thread(void *arg)
{
    FILE *devnull = fopen("/dev/null", "w");
    unsigned long n = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (atomic_load_explicit(&child_running, memory_order_relaxed)) {
            sp_sleep_ms(1);
            continue;
        }
        /* the reproducer was a loop of this one call: give it most of the time */
        for (int i = 0; i < 50; i++)
            (void)syncpool_cached_bytes();
        if (call_api(devnull) != 0)
            CHECK(0, "API thread %d: a syncpool_stats_* call failed", (int)(intptr_t)arg);
        atomic_fetch_add_explicit(&api_calls, 1, memory_order_relaxed);
        if (++n % 64 == 0)
            sp_sleep_ms(1);   /* leave some CPU to the forking main thread (2 cores) */
    }
    if (devnull)
        fclose(devnull);
    return NULL;
}

static void *alloc_thread(void *arg)
{
    uint64_t rng = (uint64_t)(intptr_t)arg * 1000003 + 17;
    struct {
        unsigned char *p;
        size_t n;
        uint64_t seed;
    } v[128] = {{0}};
    uint64_t serial = (uint64_t)(intptr_t)arg << 48;
    unsigned long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (atomic_load_explicit(&child_running, memory_order_relaxed)) {
            sp_sleep_ms(1);
            continue;
        }
        uint64_t r = sp_rand(&rng);
        int k = (int)(r % 128);
        if (v[k].p) {
            long bad = sp_verify(v[k].p, v[k].n, v[k].seed);
            if (bad >= 0)
                CHECK(0, "allocating thread: object %p (%zu bytes) corrupted at byte %ld",
                      (void *)v[k].p, v[k].n, bad);
            free(v[k].p);
            v[k].p = NULL;
        } else {
            v[k].n = pick_size(r >> 7);
            v[k].seed = ++serial;
            v[k].p = malloc(v[k].n);
            if (!v[k].p)
                CHECK(0, "allocating thread: malloc(%zu) failed", v[k].n);
            else
                sp_fill(v[k].p, v[k].n, v[k].seed);
        }
        atomic_fetch_add_explicit(&alloc_ops, 1, memory_order_relaxed);
        if (++ops % 1024 == 0)
            sp_sleep_ms(1);
    }
    for (int k = 0; k < 128; k++)
        free(v[k].p);
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    uint64_t rng = 5;
    for (int i = 0; i < 500; i++) {
        size_t n = pick_size(sp_rand(&rng));
        unsigned char *p = malloc(n);
        if (!p)
            return (void *)1;
        sp_fill(p, n, (uint64_t)i);
        if (sp_verify(p, n, (uint64_t)i) >= 0)
            return (void *)2;
        free(p);
    }
    (void)syncpool_rotate_now();
    return NULL;
}

/* The child: everything it does must work with only this thread inherited. */
static int child_work(int n)
{
    uint64_t rng = (uint64_t)n * 31 + 7;
    void *keep[64];
    size_t sz[64];
    for (int i = 0; i < 64; i++) {
        sz[i] = pick_size(sp_rand(&rng));
        keep[i] = malloc(sz[i]);
        if (!keep[i])
            return 10;
        sp_fill(keep[i], sz[i], (uint64_t)i + 1);
    }
    (void)syncpool_rotate_now();
    (void)syncpool_cached_bytes();
    (void)syncpool_rotations();
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        if (syncpool_stats_json(devnull) != 0 || syncpool_stats_print(devnull) < 0)
            return 11;
        fclose(devnull);
    }
    pthread_t t;
    void *res = (void *)1;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0)
        return 12;
    pthread_join(t, &res);
    if (res != NULL)
        return 13;
    for (int i = 0; i < 64; i++) {
        if (sp_verify(keep[i], sz[i], (uint64_t)i + 1) >= 0)
            return 14;
        free(keep[i]);
    }
    (void)syncpool_rotate_now();
    return 0;
}

static const char *child_status_meaning(int code)
{
    switch (code) {
    case 10: return "malloc failed";
    case 11: return "syncpool_stats_json/print failed";
    case 12: return "pthread_create failed";
    case 13: return "its thread saw a bad allocation";
    case 14: return "an object was corrupted";
    default: return "?";
    }
}

int main(int argc, char **argv)
{
    int nforks = (int)sp_arg_count(argc, argv, 1000, 10000000, "NFORKS");
    setvbuf(stdout, NULL, _IOLBF, 0);
    REQUIRE(sp_under_syncpool(), "libsyncpool.so is not loaded (run with LD_PRELOAD)");
    const char *rot = getenv("SYNCPOOL_ROTATE_MS");
    printf("fork_api: %d forks while %d threads call the syncpool_* API and %d allocate; "
           "SYNCPOOL_ROTATE_MS=%s\n", nforks, NAPI, NALLOC, rot ? rot : "(unset)");
    pthread_t th[NAPI + NALLOC];
    for (int i = 0; i < NAPI; i++)
        REQUIRE(pthread_create(&th[i], NULL, api_thread, (void *)(intptr_t)i) == 0,
                "pthread_create");
    for (int i = 0; i < NALLOC; i++)
        REQUIRE(pthread_create(&th[NAPI + i], NULL, alloc_thread, (void *)(intptr_t)i) == 0,
                "pthread_create");
    while (atomic_load(&api_calls) < 10 || atomic_load(&alloc_ops) < 1000)
        sp_sleep_ms(1);

    int hung = 0, bad = 0, ok = 0, done = 0;
    double t0 = sp_now(), worst = 0, in_fork = 0, in_wait = 0;
    uint64_t rng = sp_seed(12345);
    unsigned long api0 = atomic_load(&api_calls), alloc0 = atomic_load(&alloc_ops);
    int too_slow = 0;
    for (int n = 0; n < nforks && hung < MAX_HUNG; n++, done++) {
        if (sp_now() - t0 > MAX_SECONDS) {
            too_slow = 1;
            break;
        }
        /* let the other threads get going again (they nap within 1 ms), then fork */
        atomic_store(&child_running, 0);
        double busy_until = sp_now() + 0.001 + (double)(sp_rand(&rng) % 2000) * 1e-6;
        while (sp_now() < busy_until)
            free(malloc(100 + (size_t)n % 3000));
        fflush(stdout);
        fflush(stderr);
        double f0 = sp_now();
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork failed: %s", strerror(errno));
        in_fork += sp_now() - f0;
        if (pid == 0) {
            sp_counts_reset();
            exit(child_work(n));
        }
        atomic_store(&child_running, 1);
        double start = sp_now(), deadline = start + CHILD_DEADLINE;
        int st = 0;
        pid_t w;
        while ((w = waitpid(pid, &st, WNOHANG)) == 0 && sp_now() < deadline)
            sp_sleep_ms(1);
        double life = sp_now() - start;
        in_wait += life;
        if (life > worst)
            worst = life;
        if (w == 0) {
            hung++;
            CHECK(0, "child %d (pid %d) still running after %.0f s: hung (a lock held by "
                  "another thread at fork time?); killed", n, (int)pid, CHILD_DEADLINE);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        } else if (w != pid) {
            bad++;
            CHECK(0, "waitpid(%d) failed: %s", (int)pid, strerror(errno));
        } else if (WIFSIGNALED(st)) {
            bad++;
            CHECK(0, "child %d killed by signal %d (%s)", n, WTERMSIG(st),
                  strsignal(WTERMSIG(st)));
        } else if (WEXITSTATUS(st) != 0) {
            bad++;
            CHECK(0, "child %d exited with status %d (%s)", n, WEXITSTATUS(st),
                  child_status_meaning(WEXITSTATUS(st)));
        } else {
            ok++;
        }
    }
    double dt = sp_now() - t0;
    unsigned long api_during = atomic_load(&api_calls) - api0;
    unsigned long alloc_during = atomic_load(&alloc_ops) - alloc0;
    atomic_store(&stop, 1);
    atomic_store(&child_running, 0);
    for (int i = 0; i < NAPI + NALLOC; i++)
        pthread_join(th[i], NULL);
    printf("  %d forks in %.1f s: %d exited 0, %d bad, %d hung%s; %.1f s in fork(), %.1f s "
           "waiting for children (slowest %.3f s); meanwhile %lu API rounds, %lu "
           "allocations\n", done, dt, ok, bad, hung, hung >= MAX_HUNG ? " (stopped early)" : "",
           in_fork, in_wait, worst, api_during, alloc_during);
    CHECK(!too_slow, "only %d of %d forks were done after %.0f s: far too slow (a child or "
          "fork() waits for something?)", done, nforks, MAX_SECONDS);
    CHECK(hung == 0, "%d of %d children hung (stopped after %d)", hung, done, MAX_HUNG);
    CHECK(ok == done && done == nforks, "only %d of %d children exited with status 0", ok,
          nforks);
    CHECK(api_during >= 100, "the API threads made only %lu rounds while forking: the test did "
          "not overlap fork with the API calls", api_during);
    CHECK(alloc_during >= 10000, "the allocating threads made only %lu operations while forking",
          alloc_during);
    return sp_report("fork_api");
}
