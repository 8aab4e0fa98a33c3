/* fork_threads: fork() while 4 threads hammer malloc/free (research.md 3.4).
 *
 *   sp_fork_threads [NFORKS]      (default 250; issue #5's long form: 1000 and more)
 *
 * 4 worker threads allocate, fill, verify and free blocks of all sizes, and swap blocks with
 * each other through an exchange array.  The main thread forks NFORKS times.  Each child:
 *   - verifies and frees the blocks the main thread had before the fork,
 *   - takes every block left in the exchange array (allocated by worker threads that do not
 *     exist in the child), verifies and frees it,
 *   - runs malloc/calloc/realloc/free of many sizes with content checks,
 *   - every 10th child also creates a thread that allocates (threads work after fork),
 *   - every 25th child execs /bin/true (a fresh process image under the same preload),
 *   - every 40th child forks a grandchild that allocates,
 *   - and _exit()s with 0 only if every check passed.
 * The parent waits for each child with a 10 s deadline, fails on a non-zero status, a signal or
 * a hang (the child is then killed), and checks its own blocks after every fork. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define NWORKERS 4
#define NFORKS_DEFAULT 250
#define NXCHG 64
#define NPRE 200

struct hdr {
    uint64_t size; /* payload bytes after the header */
    uint64_t seed;
};

static atomic_int stop;
static atomic_ulong worker_ops;
static _Atomic(struct hdr *) xchg[NXCHG];

static size_t pick_size(uint64_t r)
{
    switch (r % 16) {
    case 0: return 14337 + (r >> 8) % 60000;           /* large */
    case 1:
    case 2: return 4097 + (r >> 8) % 10240;
    case 3:
    case 4:
    case 5: return 513 + (r >> 8) % 3584;
    default: return 1 + (r >> 8) % 512;
    }
}

static struct hdr *blk_new(size_t size, uint64_t seed, int how)
{
    struct hdr *h;
    size_t total = sizeof *h + size;
    if (how == 1) {
        h = calloc(1, total);
        if (h)
            for (size_t i = 0; i < total; i++)
                if (((unsigned char *)h)[i]) {
                    CHECK(0, "calloc(1, %zu) returned non-zero byte %zu", total, i);
                    break;
                }
    } else {
        h = malloc(total);
    }
    if (!h)
        return NULL;
    h->size = size;
    h->seed = seed;
    sp_fill(h + 1, size, seed);
    return h;
}

/* 0 if intact */
static int blk_check(const struct hdr *h, const char *who)
{
    long bad = sp_verify(h + 1, h->size, h->seed);
    if (bad >= 0) {
        CHECK(0, "%s: block %p (%llu bytes, seed %llu) corrupted at byte %ld", who, (void *)h,
              (unsigned long long)h->size, (unsigned long long)h->seed, bad);
        return -1;
    }
    return 0;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = sp_seed(42) * 31 + (uint64_t)id + 1;
    struct hdr *slot[128] = {0};
    uint64_t serial = (uint64_t)id << 48;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = sp_rand(&rng);
        int k = (int)(r % 128);
        if (slot[k]) {
            blk_check(slot[k], "worker");
            if ((r >> 10) % 4 == 0) {
                /* grow or shrink with realloc, contents must survive */
                size_t ns = pick_size(r >> 12);
                size_t keep = ns < slot[k]->size ? ns : slot[k]->size;
                struct hdr *h = realloc(slot[k], sizeof *h + ns);
                if (h) {
                    if (sp_verify(h + 1, keep, h->seed) >= 0)
                        CHECK(0, "worker: realloc lost contents");
                    h->size = ns;
                    h->seed = ++serial;
                    sp_fill(h + 1, ns, h->seed);
                    slot[k] = h;
                }
            } else {
                free(slot[k]);
                slot[k] = NULL;
            }
        } else {
            slot[k] = blk_new(pick_size(r >> 8), ++serial, (int)((r >> 40) % 5 == 0));
            CHECK(slot[k] != NULL, "worker: allocation failed");
        }
        if ((r >> 20) % 8 == 0) {
            struct hdr *mine = blk_new(pick_size(r >> 24), ++serial, 0);
            struct hdr *old = atomic_exchange(&xchg[(r >> 30) % NXCHG], mine);
            if (old) {
                blk_check(old, "worker (exchanged)");
                free(old);
            }
        }
        /* leave some CPU to the forking main thread and its children (2 cores) */
        if (atomic_fetch_add_explicit(&worker_ops, 1, memory_order_relaxed) % 512 == 0)
            sp_sleep_ms(1);
    }
    for (int k = 0; k < 128; k++)
        if (slot[k]) {
            blk_check(slot[k], "worker (final)");
            free(slot[k]);
        }
    return NULL;
}

static struct hdr *pre[NPRE];

static void *child_thread(void *arg)
{
    (void)arg;
    uint64_t rng = 99;
    long fails = 0;
    for (int i = 0; i < 2000; i++) {
        struct hdr *h = blk_new(pick_size(sp_rand(&rng)), (uint64_t)i, i % 3 == 0);
        if (!h || sp_verify(h + 1, h->size, h->seed) >= 0)
            fails++;
        free(h);
    }
    return (void *)fails;
}

/* Why a child did not pass, from waitpid's result w and status st ("" if it did). */
static const char *child_failure(pid_t w, int st)
{
    static char why[128];
    if (w == 0)
        return "still running after 10 s: hung (deadlock after fork?)";
    if (w < 0)
        snprintf(why, sizeof why, "could not be waited for: %s", strerror(errno));
    else if (WIFSIGNALED(st))
        snprintf(why, sizeof why, "killed by signal %d (%s)", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        snprintf(why, sizeof why, "exited with status %d%s", WEXITSTATUS(st),
                 WEXITSTATUS(st) == 4 ? " (exec of /bin/true failed)" : " (see its messages)");
    else
        why[0] = '\0';
    return why;
}

static void child_work(int n)
{
    /* the main thread's blocks from before the fork */
    for (int i = 0; i < NPRE; i++)
        if (pre[i]) {
            blk_check(pre[i], "child: pre-fork block");
            free(pre[i]);
            pre[i] = NULL;
        }
    /* blocks of worker threads that do not exist here */
    for (int i = 0; i < NXCHG; i++) {
        struct hdr *h = atomic_exchange(&xchg[i], NULL);
        if (h) {
            blk_check(h, "child: worker's block");
            free(h);
        }
    }
    /* ordinary work */
    uint64_t rng = (uint64_t)n * 7 + 3;
    struct hdr *v[64] = {0};
    for (int i = 0; i < 1500; i++) {
        uint64_t r = sp_rand(&rng);
        int k = (int)(r % 64);
        if (v[k]) {
            blk_check(v[k], "child");
            free(v[k]);
            v[k] = NULL;
        } else {
            v[k] = blk_new(pick_size(r >> 8), r, (int)((r >> 50) % 4 == 0));
            CHECK(v[k] != NULL, "child: allocation failed");
        }
    }
    for (int k = 0; k < 64; k++)
        if (v[k]) {
            blk_check(v[k], "child (final)");
            free(v[k]);
        }
    if (n % 10 == 0) {
        pthread_t t;
        void *res = (void *)1;
        int rc = pthread_create(&t, NULL, child_thread, NULL);
        CHECK(rc == 0, "child: pthread_create failed: %s", strerror(rc));
        if (rc == 0) {
            pthread_join(t, &res);
            CHECK(res == NULL, "child: its thread saw %ld bad allocations", (long)(intptr_t)res);
        }
    }
    if (n % 40 == 0) {
        pid_t g = fork();
        if (g == 0) {
            for (int i = 0; i < 500; i++) {
                struct hdr *h = blk_new(pick_size((uint64_t)i * 7919), (uint64_t)i, 0);
                if (!h || sp_verify(h + 1, h->size, h->seed) >= 0)
                    _exit(3);
                free(h);
            }
            _exit(0);
        }
        CHECK(g > 0, "child: fork of grandchild failed");
        if (g > 0) {
            int st = 0;
            pid_t w = waitpid(g, &st, 0);
            CHECK(w == g && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "grandchild status %#x", st);
        }
    }
}

int main(int argc, char **argv)
{
    int nforks = (int)sp_arg_count(argc, argv, NFORKS_DEFAULT, 10000000, "NFORKS");
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("fork_threads: libsyncpool.so %s, %d workers, %d forks\n",
           sp_under_syncpool() ? "loaded" : "NOT loaded", NWORKERS, nforks);
    pthread_t th[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        REQUIRE(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");

    uint64_t rng = 7;
    uint64_t serial = 1ULL << 60;
    for (int i = 0; i < NPRE; i++)
        pre[i] = blk_new(pick_size(sp_rand(&rng)), ++serial, 0);

    int bad_children = 0, hung = 0, execs = 0;
    double t0 = sp_now();
    for (int n = 0; n < nforks; n++) {
        /* change the parent's heap state a little before each fork */
        for (int j = 0; j < 10; j++) {
            int k = (int)(sp_rand(&rng) % NPRE);
            if (pre[k]) {
                blk_check(pre[k], "parent");
                free(pre[k]);
            }
            pre[k] = blk_new(pick_size(sp_rand(&rng)), ++serial, 0);
        }
        fflush(stdout);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork failed: %s", strerror(errno));
        if (pid == 0) {
            sp_counts_reset();
            child_work(n);
            if (n % 25 == 0 && sp_failures() == 0) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(4); /* exec failed */
            }
            _exit(sp_failures() ? 1 : 0);
        }
        if (n % 25 == 0)
            execs++;
        /* wait with a deadline */
        double deadline = sp_now() + 10.0;
        int st = 0;
        pid_t w;
        for (;;) {
            w = waitpid(pid, &st, WNOHANG);
            if (w != 0 || sp_now() > deadline)
                break;
            sp_sleep_ms(1);
        }
        const char *why = child_failure(w, st); /* before kill/waitpid change errno */
        if (w == 0) {
            hung++;
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        /* The child exits 0 only if every check of child_work passed: one check per child. */
        int passed = w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (w == pid && !passed)
            bad_children++;
        CHECK(passed, "child %d (pid %d) %s", n, (int)pid, why);
        for (int i = 0; i < NPRE; i++)
            if (pre[i])
                blk_check(pre[i], "parent after fork");
        if (hung > 3)
            break;
    }
    double dt = sp_now() - t0;
    unsigned long ops_during_forks = atomic_load(&worker_ops);
    atomic_store(&stop, 1);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NXCHG; i++) {
        struct hdr *h = atomic_exchange(&xchg[i], NULL);
        if (h) {
            blk_check(h, "final exchange");
            free(h);
        }
    }
    for (int i = 0; i < NPRE; i++)
        if (pre[i]) {
            blk_check(pre[i], "parent (final)");
            free(pre[i]);
        }
    printf("  %d forks (%d exec'd /bin/true) in %.2f s; %lu worker operations meanwhile; "
           "%d bad children, %d hung\n",
           nforks, execs, dt, ops_during_forks, bad_children, hung);
    CHECK(ops_during_forks > 10000, "workers made only %lu operations while forking: the "
          "test did not overlap fork with allocation", ops_during_forks);
    return sp_report("fork_threads");
}
