/* exit_threads_end: a process whose threads all end exits, as without the library (issue #14,
 * item 1; design decision 9, "invisible to the program").
 *
 *   sp_exit_threads_end                driver (run with LD_PRELOAD=libsyncpool.so, as CTest does)
 *   sp_exit_threads_end --child MODE   one program under test (the driver runs it)
 *
 * When main calls pthread_exit and the other threads finish, glibc ends the process with status
 * 0.  A library thread that is still alive (syncpool's rotation thread) would keep the process
 * forever as a zombie leader plus that thread, and since that thread blocks every signal, SIGTERM
 * and SIGINT would not end it either.  The same goes for a child forked from a non-main thread
 * when that thread (the child's only one) returns from its start routine.
 *
 * Programs (MODE), each of which allocates in main and in its threads:
 *   one        main creates one worker (1000 malloc/free of 64 bytes) and calls pthread_exit
 *   four       the same with four workers of mixed sizes
 *   long       one worker that allocates for 350 ms, i.e. across several rotation periods
 *   chain      the worker creates a detached thread and returns; that one allocates 20 ms
 *   join-exit  main joins its worker, then calls pthread_exit (main is the last thread)
 *   fork-thread  a non-main thread forks; in the child that thread allocates and returns (the
 *              child's only thread): the child must exit with status 0 within 1 s (the program
 *              waits for it itself, kills it if it hangs and says so in its exit status)
 *   block      main calls pthread_exit while its worker, after allocating, waits in pause():
 *              the driver sends SIGTERM (then, in a second run, SIGINT) to the process, which
 *              must be killed by that signal within 1 s
 * Each runs with SYNCPOOL_ROTATE_MS = 1, 10, unset (the default, 100), 1000, 10000 and 0, and
 * must exit with status 0 within 1 s (plus the worker's own 350 ms for `long`).  A program still
 * running then is reported with the state and name of each of its threads, the driver sends it
 * SIGTERM to show whether that ends it, and kills it (and everything in its process group) with
 * SIGKILL.  Every wait is bounded.
 *
 * The driver re-executes itself without LD_PRELOAD (the library path moves to SP_TEST_LIB), so
 * that its own waits and kills do not depend on the library it is testing; each program under
 * test gets LD_PRELOAD back, checks that the library is loaded (exit status 3 if not), and runs
 * in its own process group. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

extern char **environ;

/* ---- the programs under test ------------------------------------------------------------ */

static void *alloc_loop(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++)
        free(malloc(64));
    return arg;
}

static void *alloc_mixed(void *arg)
{
    uint64_t rng = (uint64_t)(intptr_t)arg * 7919 + 1;
    void *keep[32] = {0};
    for (int i = 0; i < 1000; i++) {
        int k = (int)(sp_rand(&rng) % 32);
        free(keep[k]);
        keep[k] = malloc(1 + sp_rand(&rng) % 3000);
    }
    for (int k = 0; k < 32; k++)
        free(keep[k]);
    return NULL;
}

static void *alloc_for_350ms(void *arg)
{
    double end = sp_now() + 0.35;
    for (long i = 0; sp_now() < end; i++) {
        free(malloc(16 + (size_t)(i % 500)));
        if (i % 200 == 0)
            sp_sleep_ms(1);
    }
    return arg;
}

static void *chain_last(void *arg)
{
    double end = sp_now() + 0.02;
    while (sp_now() < end)
        free(malloc(48));
    return arg;
}

static void *chain_first(void *arg)
{
    pthread_t t;
    free(malloc(100));
    if (pthread_create(&t, NULL, chain_last, NULL) != 0)
        _exit(4);
    pthread_detach(t);
    alloc_loop((void *)(intptr_t)500);
    return arg;
}

static int ready_fd = -1;

static void *block_forever(void *arg)
{
    alloc_loop((void *)(intptr_t)1000);
    void *keep = malloc(200);
    /* give main time to call pthread_exit, then tell the driver */
    sp_sleep_ms(20);
    if (write(ready_fd, "r", 1) != 1)
        _exit(5);
    for (;;)
        pause();
    free(keep);
    return arg;
}

/* fork-thread: the child's status, as seen by the thread that forked it (in the parent). */
enum { FT_OK = 0, FT_HUNG = 10, FT_BAD_STATUS = 11, FT_FORK_FAILED = 12 };

static void *fork_from_thread(void *arg)
{
    (void)arg;
    alloc_loop((void *)(intptr_t)200);
    pid_t pid = fork();
    if (pid < 0)
        return (void *)(intptr_t)FT_FORK_FAILED;
    if (pid == 0) {
        /* the child: this thread is its only thread; it allocates (which is what restarts a
         * library's background thread in the child) and returns from its start routine */
        alloc_loop((void *)(intptr_t)1000);
        void *p = malloc(5000);
        free(p);
        return NULL;
    }
    double deadline = sp_now() + 1.0;
    int st = 0;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && sp_now() < deadline)
        sp_sleep_ms(1);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return (void *)(intptr_t)FT_HUNG;
    }
    if (w != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "fork-thread: the child's status is %#x\n", st);
        return (void *)(intptr_t)FT_BAD_STATUS;
    }
    return (void *)(intptr_t)FT_OK;
}

static int child_main(const char *mode)
{
    if (!sp_under_syncpool())
        _exit(3);
    pthread_t t[4];
    sp_warm_pools();   /* the rotation thread runs: it must not keep the process alive */
    if (!strcmp(mode, "one")) {
        if (pthread_create(&t[0], NULL, alloc_loop, (void *)(intptr_t)1000) != 0)
            _exit(4);
    } else if (!strcmp(mode, "four")) {
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[i], NULL, alloc_mixed, (void *)(intptr_t)i) != 0)
                _exit(4);
    } else if (!strcmp(mode, "long")) {
        if (pthread_create(&t[0], NULL, alloc_for_350ms, NULL) != 0)
            _exit(4);
    } else if (!strcmp(mode, "chain")) {
        if (pthread_create(&t[0], NULL, chain_first, NULL) != 0)
            _exit(4);
    } else if (!strcmp(mode, "join-exit")) {
        if (pthread_create(&t[0], NULL, alloc_loop, (void *)(intptr_t)1000) != 0)
            _exit(4);
        pthread_join(t[0], NULL);
        free(malloc(77));
    } else if (!strcmp(mode, "block")) {
        const char *fd = getenv("SP_READY_FD");
        ready_fd = fd ? atoi(fd) : -1;
        if (ready_fd < 0 || pthread_create(&t[0], NULL, block_forever, NULL) != 0)
            _exit(4);
    } else if (!strcmp(mode, "fork-thread")) {
        void *res = NULL;
        if (pthread_create(&t[0], NULL, fork_from_thread, NULL) != 0)
            _exit(4);
        pthread_join(t[0], &res);
        return (int)(intptr_t)res;   /* main returns: this process exits normally */
    } else {
        _exit(6);
    }
    pthread_exit(NULL);
}

/* ---- the driver ------------------------------------------------------------------------- */

static const char *lib;
static char self[4096];

/* "state name" of each thread of pid, for the report ("S syncpool-rot", "Z prog", ...) */
static void thread_list(pid_t pid, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    size_t used = 0;
    out[0] = 0;
    DIR *d = opendir(path);
    if (!d) {
        snprintf(out, len, "(cannot read %s: %s)", path, strerror(errno));
        return;
    }
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sp[300], buf[512] = "";
        snprintf(sp, sizeof sp, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        int fd = open(sp, O_RDONLY);
        ssize_t r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        char comm[64] = "?", state = '?';
        if (r > 0) {
            buf[r] = 0;
            char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
            if (lp && rp && rp > lp) {
                snprintf(comm, sizeof comm, "%.*s", (int)(rp - lp - 1), lp + 1);
                if (rp[1] == ' ')
                    state = rp[2];
            }
        }
        n++;
        int w = snprintf(out + used, len - used, "%s%s:%c(%s)", used ? ", " : "", e->d_name,
                         state, comm);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
    closedir(d);
    char head[32];
    snprintf(head, sizeof head, " [%d threads]", n);
    if (used + strlen(head) < len)
        strcat(out, head);
}

static char leader_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return '?';
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0)
        return '?';
    buf[r] = 0;
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : '?';
}

/* waitpid with a deadline; 1: reaped (status in *st), 0: still running */
static int wait_until(pid_t pid, double deadline, int *st)
{
    for (;;) {
        pid_t w = waitpid(pid, st, WNOHANG);
        if (w == pid)
            return 1;
        if (w < 0 && errno != EINTR) {
            *st = -1;
            return 1;
        }
        if (sp_now() >= deadline)
            return 0;
        sp_sleep_ms(1);
    }
}

static pid_t spawn(const char *mode, const char *rot, int ready_wfd)
{
    /* the program's environment: ours, with LD_PRELOAD and SYNCPOOL_ROTATE_MS set as asked */
    static char *env[4096];
    static char pre[4200], rotv[64], fdv[32];
    int n = 0;
    for (char **e = environ; *e && n < 4000; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "SYNCPOOL_ROTATE_MS=", 19) &&
            strncmp(*e, "SP_TEST_LIB=", 12) && strncmp(*e, "SP_READY_FD=", 12))
            env[n++] = *e;
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", lib);
    env[n++] = pre;
    if (rot) {
        snprintf(rotv, sizeof rotv, "SYNCPOOL_ROTATE_MS=%s", rot);
        env[n++] = rotv;
    }
    if (ready_wfd >= 0) {
        snprintf(fdv, sizeof fdv, "SP_READY_FD=%d", ready_wfd);
        env[n++] = fdv;
    }
    env[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        char *av[] = {self, (char *)"--child", (char *)mode, NULL};
        execve(self, av, env);
        _exit(127);
    }
    if (pid > 0)
        setpgid(pid, pid);   /* also here, so that the kill below cannot miss it */
    return pid;
}

static void kill_group(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

static const char *status_str(int st, char *buf, size_t len)
{
    if (st == -1)
        snprintf(buf, len, "waitpid failed");
    else if (WIFEXITED(st))
        snprintf(buf, len, "exited with status %d%s", WEXITSTATUS(st),
                 WEXITSTATUS(st) == 3     ? " (libsyncpool.so is not loaded in the program)"
                 : WEXITSTATUS(st) == 127 ? " (exec failed)"
                 : WEXITSTATUS(st) == FT_HUNG
                     ? " (its child, forked from a thread, was still running 1 s after that "
                       "thread returned: hung, killed)"
                 : WEXITSTATUS(st) == FT_BAD_STATUS ? " (its child, forked from a thread, "
                                                      "ended with a wrong status)"
                                                    : "");
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, len, "status %#x", st);
    return buf;
}

/* A program that must exit with status 0 within `limit` seconds. */
static int run_exit(const char *mode, const char *rot, double limit)
{
    const char *rname = rot ? rot : "unset";
    double t0 = sp_now();
    pid_t pid = spawn(mode, rot, -1);
    if (pid < 0) {
        CHECK(0, "%s, SYNCPOOL_ROTATE_MS=%s: fork failed: %s", mode, rname, strerror(errno));
        return -1;
    }
    int st = 0;
    if (wait_until(pid, t0 + limit, &st)) {
        double dt = sp_now() - t0;
        char sb[256];
        int ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        CHECK(ok, "%s, SYNCPOOL_ROTATE_MS=%s: %s after %.3f s (expected: status 0)", mode, rname,
              status_str(st, sb, sizeof sb), dt);
        printf("  %-4s %-11s ROTATE_MS=%-6s %s in %.3f s\n", ok ? "ok" : "FAIL", mode, rname,
               status_str(st, sb, sizeof sb), dt);
        kill_group(pid);   /* stragglers (a grandchild), if any */
        return ok ? 0 : -1;
    }
    /* still running: say what is left of it, then see whether SIGTERM ends it */
    char threads[2048];
    thread_list(pid, threads, sizeof threads);
    kill(pid, SIGTERM);
    const char *term;
    char sb[256];
    if (wait_until(pid, sp_now() + 0.5, &st))
        term = status_str(st, sb, sizeof sb);
    else {
        term = "SIGTERM did not end it within 0.5 s either";
        kill_group(pid);
        waitpid(pid, &st, 0);
    }
    kill_group(pid);
    CHECK(0, "%s, SYNCPOOL_ROTATE_MS=%s: still running %.2f s after start, when all its "
          "threads have ended (a process whose threads all end must exit with status 0); its "
          "threads (tid:state(name)): %s; then sent SIGTERM: %s; killed", mode, rname, limit,
          threads, term);
    printf("  FAIL %-11s ROTATE_MS=%-6s hung (threads %s; SIGTERM: %s)\n", mode, rname, threads,
           term);
    return -1;
}

/* block: main has called pthread_exit and a worker waits in pause(); sig must kill it. */
static int run_signal(const char *rot, int sig)
{
    const char *rname = rot ? rot : "unset";
    int fds[2];
    REQUIRE(pipe(fds) == 0, "pipe: %s", strerror(errno));
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    pid_t pid = spawn("block", rot, fds[1]);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        CHECK(0, "block, SYNCPOOL_ROTATE_MS=%s: fork failed: %s", rname, strerror(errno));
        return -1;
    }
    int ok = 0, st = 0;
    char sb[256];
    struct pollfd pf = {fds[0], POLLIN, 0};
    char c;
    int pr = poll(&pf, 1, 2000);
    if (pr <= 0 || read(fds[0], &c, 1) != 1) {
        if (wait_until(pid, sp_now() + 0.1, &st))
            CHECK(0, "block, SYNCPOOL_ROTATE_MS=%s: the program ended before it was ready: %s",
                  rname, status_str(st, sb, sizeof sb));
        else
            CHECK(0, "block, SYNCPOOL_ROTATE_MS=%s: the program did not say it was ready "
                  "within 2 s", rname);
        goto out;
    }
    /* wait (bounded) until main's pthread_exit has made the leader a zombie */
    for (double d = sp_now() + 1.0; leader_state(pid) != 'Z' && sp_now() < d;)
        sp_sleep_ms(1);
    char threads[2048];
    thread_list(pid, threads, sizeof threads);
    double t0 = sp_now();
    kill(pid, sig);
    if (!wait_until(pid, t0 + 1.0, &st)) {
        CHECK(0, "block, SYNCPOOL_ROTATE_MS=%s: %s sent to the process (main thread exited, a "
              "worker in pause()) did not end it within 1 s; its threads then: %s; killed", rname,
              strsignal(sig), threads);
        printf("  FAIL block       ROTATE_MS=%-6s %s ignored (threads %s)\n", rname,
               strsignal(sig), threads);
        goto out;
    }
    ok = st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == sig;
    CHECK(ok, "block, SYNCPOOL_ROTATE_MS=%s: after %s the program %s (expected: killed by %s)",
          rname, strsignal(sig), status_str(st, sb, sizeof sb), strsignal(sig));
    printf("  %-4s block       ROTATE_MS=%-6s %-10s %s in %.3f s\n", ok ? "ok" : "FAIL", rname,
           sig == SIGTERM ? "SIGTERM:" : "SIGINT:", status_str(st, sb, sizeof sb),
           sp_now() - t0);
out:
    close(fds[0]);
    kill_group(pid);
    waitpid(pid, &st, WNOHANG);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child"))
        return child_main(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    self[n] = 0;
    /* the driver itself runs without the library: re-execute with it moved to SP_TEST_LIB */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && *pre) {
        REQUIRE(setenv("SP_TEST_LIB", pre, 1) == 0, "setenv");
        unsetenv("LD_PRELOAD");
        execv(self, argv);
        REQUIRE(0, "re-exec of %s failed: %s", self, strerror(errno));
    }
    lib = getenv("SP_TEST_LIB");
    REQUIRE(lib && *lib, "run me with LD_PRELOAD=/path/to/libsyncpool.so (CTest does)");
    printf("exit_threads_end: programs under LD_PRELOAD=%s; each must exit with status 0 "
           "within 1 s once its threads have ended\n", lib);
    static const char *const rots[] = {"1", "10", NULL, "1000", "10000", "0"};
    static const struct {
        const char *mode;
        double limit;
    } progs[] = {{"one", 1.0},  {"four", 1.0},      {"long", 1.35},
                 {"chain", 1.0}, {"join-exit", 1.0}, {"fork-thread", 2.5}};
    int bad = 0, runs = 0;
    double t0 = sp_now();
    for (size_t r = 0; r < sizeof rots / sizeof rots[0]; r++) {
        for (size_t p = 0; p < sizeof progs / sizeof progs[0]; p++, runs++)
            bad += run_exit(progs[p].mode, rots[r], progs[p].limit) != 0;
        bad += run_signal(rots[r], SIGTERM) != 0;
        bad += run_signal(rots[r], SIGINT) != 0;
        runs += 2;
    }
    printf("  %d runs in %.1f s, %d failed\n", runs, sp_now() - t0, bad);
    return sp_report("exit_threads_end");
}
