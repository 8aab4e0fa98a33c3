/* exit_races: the process exits while threads allocate and rotation runs (issue #5).
 *
 *   sp_exit_races [RUNS]          driver: runs itself RUNS times (default 200) as a child
 *   sp_exit_races --child MODE DELAY_US SEED     one child (MODE: return exit exit-main _exit)
 *
 * Each child starts 6 threads that allocate, write, verify and free blocks of every pooled size
 * and some large ones, pass blocks to each other, and keep creating short-lived helper threads
 * (so the exit also meets threads that are being set up or torn down).  It registers an atexit
 * handler that allocates, verifies and frees while those threads are still running, prints
 * "started", waits DELAY_US (0 ... 20 ms, so the exit lands at different moments: before the
 * workers got going, during rotations, during thread start/exit), then ends the process:
 *   return     main returns 7 (exit handlers, library destructor, with threads running)
 *   exit-main  main calls exit(8)
 *   exit       a worker thread calls exit(9) while main is blocked in pthread_join
 *   _exit      a worker thread calls _exit(10): no handlers, no destructors
 * A child that sees a corrupted block prints "FAIL" and _exits 3.
 *
 * The driver cycles through the 4 modes and SYNCPOOL_ROTATE_MS = 1, 1, 100 (default), 0, with
 * SYNCPOOL_STATS=1 every third run (the destructor then walks the pools while threads still
 * use them), a random delay per run (seed printed; SP_SEED repeats it), and checks for each
 * child: it ends within 20 s (else it is reported as a hang and killed), it is not killed by a
 * signal, its exit status is the mode's, its output has "started", has "atexit ok" exactly when
 * exit handlers run (return, exit-main, exit), has the statistics table when SYNCPOOL_STATS=1
 * and handlers run, and has no "FAIL". */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

/* ---- child ---------------------------------------------------------------------------------- */

#define NWORKERS 6
#define NXCHG 64

struct blk {
    uint64_t size, seed;
};

static _Atomic(struct blk *) xchg[NXCHG];
static atomic_int exiting_thread = -1;
static const char *mode;
static atomic_ulong child_ops;

static struct blk *blk_new(size_t size, uint64_t seed)
{
    struct blk *b = malloc(sizeof *b + size);
    if (!b) {
        dprintf(1, "FAIL: malloc(%zu) returned NULL\n", sizeof *b + size);
        _exit(3);
    }
    b->size = size;
    b->seed = seed;
    sp_fill(b + 1, size, seed);
    return b;
}

static void blk_free(struct blk *b)
{
    long bad = sp_verify(b + 1, b->size, b->seed);
    if (bad >= 0) {
        dprintf(1, "FAIL: block %p (%llu bytes, seed %#llx) corrupted at byte %ld\n", (void *)b,
                (unsigned long long)b->size, (unsigned long long)b->seed, bad);
        _exit(3);
    }
    free(b);
}

static size_t pick(uint64_t r)
{
    if (r % 32 == 0)
        return 14337 + (size_t)((r >> 8) % 100000);
    return (size_t)((r >> 8) % 14336);
}

static void *helper(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg | 1;
    for (int i = 0; i < 50; i++)
        blk_free(blk_new(pick(sp_rand(&rng)), rng));
    return NULL;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = sp_mix((uint64_t)id * 77 + (uint64_t)getpid()) | 1;
    struct blk *mine[64] = {0};
    for (unsigned long it = 0;; it++) {
        uint64_t r = sp_rand(&rng);
        int k = (int)((r >> 4) % 64);
        if (mine[k]) {
            blk_free(mine[k]);
            mine[k] = NULL;
        } else {
            mine[k] = blk_new(pick(r >> 12), r);
        }
        if ((r & 7) == 0) {
            struct blk *old = atomic_exchange(&xchg[(r >> 30) % NXCHG], blk_new(pick(r >> 20), r));
            if (old)
                blk_free(old);
        }
        if (id == 0 && it % 256 == 0) { /* short-lived threads, created and ending all along */
            pthread_t t;
            if (pthread_create(&t, NULL, helper, (void *)(uintptr_t)r) == 0)
                pthread_detach(t);
        }
        atomic_fetch_add_explicit(&child_ops, 1, memory_order_relaxed);
        if (id == 1 && atomic_load_explicit(&exiting_thread, memory_order_acquire) == 1) {
            if (!strcmp(mode, "exit"))
                exit(9);
            _exit(10);
        }
    }
    return NULL;
}

static void at_exit_handler(void)
{
    /* allocate and free while the workers are still running */
    uint64_t rng = 12345;
    for (int i = 0; i < 500; i++)
        blk_free(blk_new(pick(sp_rand(&rng)), rng));
    char *s = NULL;
    if (asprintf(&s, "atexit ok (%lu ops)", atomic_load(&child_ops)) < 0 || !s) {
        dprintf(1, "FAIL: asprintf in the atexit handler\n");
        _exit(3);
    }
    dprintf(1, "%s\n", s);
    free(s);
}

static int child_main(const char *m, long delay_us)
{
    mode = m;
    atexit(at_exit_handler);
    pthread_t th[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            dprintf(1, "FAIL: pthread_create\n");
            _exit(3);
        }
    dprintf(1, "started\n");
    struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    if (!strcmp(m, "return"))
        return 7;
    if (!strcmp(m, "exit-main"))
        exit(8);
    /* exit / _exit from a worker thread; main waits in join (never returns) */
    atomic_store_explicit(&exiting_thread, 1, memory_order_release);
    pthread_join(th[1], NULL);
    dprintf(1, "FAIL: worker 1 returned\n");
    _exit(3);
}

/* ---- driver --------------------------------------------------------------------------------- */

static const char *const modes[] = {"return", "exit-main", "exit", "_exit"};
static const int mode_status[] = {7, 8, 9, 10};
static const char *const rotations[] = {"1", "1", NULL /* default */, "0"};

static int lib_loaded;

static int run_child(const char *self, int i, uint64_t *rng, int *hung)
{
    const char *m = modes[i % 4];
    const char *rot = rotations[(i / 4) % 4];
    int stats = i % 3 == 0;
    long delay_us = (long)(sp_rand(rng) % 20000);
    char delay[32];
    snprintf(delay, sizeof delay, "%ld", delay_us);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        CHECK(0, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        if (rot)
            setenv("SYNCPOOL_ROTATE_MS", rot, 1);
        else
            unsetenv("SYNCPOOL_ROTATE_MS");
        if (stats)
            setenv("SYNCPOOL_STATS", "1", 1);
        else
            unsetenv("SYNCPOOL_STATS");
        execl(self, self, "--child", m, delay, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        CHECK(0, "fork: %s", strerror(errno));
        return -1;
    }
    char out[1 << 16];
    size_t len = 0;
    double deadline = sp_now() + 20;
    int timed_out = 0;
    for (;;) {
        int left = (int)((deadline - sp_now()) * 1000);
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pf = {fds[0], POLLIN, 0};
        int pr = poll(&pf, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            timed_out = pr == 0;
            break;
        }
        ssize_t n = read(fds[0], out + len, sizeof out - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len >= sizeof out - 1)
            len = sizeof out / 2; /* keep reading; the start is what matters */
    }
    out[len] = 0;
    close(fds[0]);
    int st = 0;
    pid_t w = 0;
    while (!timed_out && (w = waitpid(pid, &st, WNOHANG)) == 0 && sp_now() < deadline)
        sp_sleep_ms(1);
    if (timed_out || w == 0) {
        (*hung)++;
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        CHECK(0, "run %d (%s, SYNCPOOL_ROTATE_MS=%s, delay %ld us): still running after 20 s: "
              "hang; output so far:\n%.2000s", i, m, rot ? rot : "(unset)", delay_us, out);
        return -1;
    }
    const char *what = "";
    int ok = 1;
    int handlers = strcmp(m, "_exit") != 0;
    if (WIFSIGNALED(st)) {
        ok = 0;
        what = "killed by a signal";
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != mode_status[i % 4]) {
        ok = 0;
        what = "wrong exit status";
    } else if (!strstr(out, "started\n")) {
        ok = 0;
        what = "no \"started\" line";
    } else if (strstr(out, "FAIL")) {
        ok = 0;
        what = "the child reported a failure";
    } else if (handlers != (strstr(out, "atexit ok") != NULL)) {
        ok = 0;
        what = handlers ? "the atexit handler did not finish" : "atexit handler ran after _exit";
    } else if (lib_loaded && stats && handlers && !strstr(out, "syncpool stats:")) {
        ok = 0;
        what = "SYNCPOOL_STATS=1 but no statistics table at exit";
    }
    CHECK(ok, "run %d (%s, SYNCPOOL_ROTATE_MS=%s, STATS=%d, delay %ld us): %s (status %#x: %s "
          "%d); output:\n%.3000s", i, m, rot ? rot : "(unset)", stats, delay_us, what, st,
          WIFSIGNALED(st) ? "signal" : "exit code",
          WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), out);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--child"))
        return child_main(argv[2], atol(argv[3]));
    int runs = (int)sp_arg_count(argc, argv, 200, 10000000, "RUNS");
    setvbuf(stdout, NULL, _IOLBF, 0);
    lib_loaded = sp_under_syncpool();
    uint64_t seed = sp_seed(0);
    if (!seed)
        seed = sp_mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)) % 1000000000 + 1;
    printf("exit_races: libsyncpool.so %s; %d runs; seed %llu (SP_SEED=%llu repeats the "
           "delays)\n", lib_loaded ? "loaded" : "NOT loaded", runs,
           (unsigned long long)seed, (unsigned long long)seed);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe");
    self[n] = 0;
    uint64_t rng = seed;
    int bad = 0, hung = 0, per_mode_ok[4] = {0};
    double t0 = sp_now();
    for (int i = 0; i < runs && hung < 3; i++) {
        if (run_child(self, i, &rng, &hung) != 0)
            bad++;
        else
            per_mode_ok[i % 4]++;
    }
    printf("  %d runs in %.1f s: ok return %d, exit-main %d, exit-from-thread %d, "
           "_exit-from-thread %d; %d bad (%d hung)\n", runs, sp_now() - t0, per_mode_ok[0],
           per_mode_ok[1], per_mode_ok[2], per_mode_ok[3], bad, hung);
    CHECK(bad == 0, "%d of %d runs failed (seed %llu)", bad, runs, (unsigned long long)seed);
    return sp_report("exit_races");
}
