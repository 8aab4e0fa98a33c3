/* namespaces: calls that the kernel allows only in a single-threaded process work after the
 * program's own threads have ended, with the library preloaded as without it (issue #14, item 2;
 * design decision 9, "invisible to the program").
 *
 *   sp_namespaces MODE        MODE: unshare-user unshare-mnt setns-user setns-mnt setns-both
 *
 * unshare(CLONE_NEWUSER) and setns() into a user namespace return EINVAL in a process with more
 * than one thread, and setns() into a mount namespace returns EINVAL unless the process's
 * filesystem context is its own (no other thread shares it).  A program whose threads have all
 * been joined is single-threaded again; a library thread that stays alive (syncpool's rotation
 * thread) would make these calls fail under the library only.
 *
 * The program first (for the setns modes) forks a helper that, before doing anything else, puts
 * itself in a new user and mount namespace with the raw unshare system call and then waits; then
 * main warms the pools (so the library is fully running: pools on, background thread started)
 * and creates and joins 2 threads that allocate, then makes the call:
 *   unshare-user   unshare(CLONE_NEWUSER)
 *   unshare-mnt    unshare(CLONE_NEWNS)
 *   setns-user     setns(/proc/HELPER/ns/user, CLONE_NEWUSER)
 *   setns-mnt      setns(/proc/HELPER/ns/mnt, CLONE_NEWNS)
 *   setns-both     both, user first
 * and after a successful call creates and joins another allocating thread (the library still
 * works in the new namespace).  It prints one line per call on stdout ("unshare(CLONE_NEWUSER):
 * ok" or "...: failed: <error>"), which tests/real/namespaces.sh compares with a run without the
 * library, and exits 0 only if every call succeeded (1 if one failed, 77 if the helper could not
 * make its namespaces: the machine does not allow them).  Diagnostics (whether the library is
 * loaded, how many threads the process had at the call) go to stderr. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static void *alloc_thread(void *arg)
{
    uint64_t rng = (uint64_t)(intptr_t)arg + 1;
    void *keep[64] = {0};
    for (int i = 0; i < 20000; i++) {
        int k = (int)(sp_rand(&rng) % 64);
        free(keep[k]);
        keep[k] = malloc(1 + sp_rand(&rng) % 2048);
        if (!keep[k])
            return (void *)1;
        memset(keep[k], 0x5a, 1);
    }
    for (int k = 0; k < 64; k++)
        free(keep[k]);
    return NULL;
}

static int run_threads(int n)
{
    pthread_t t[4];
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, alloc_thread, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "namespaces: pthread_create failed\n");
            return -1;
        }
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    return bad ? -1 : 0;
}

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static pid_t helper = -1;
static int helper_hold[2] = {-1, -1};

/* Forks the helper (before this process has any thread): it unshares a user and a mount
 * namespace with the raw system call, no allocation, reports the result and waits for EOF on
 * helper_hold.  0: ready; -1: it could not. */
static int start_helper(void)
{
    int res[2];
    if (pipe2(res, O_CLOEXEC) != 0 || pipe2(helper_hold, O_CLOEXEC) != 0) {
        perror("pipe2");
        return -1;
    }
    helper = fork();
    if (helper < 0) {
        perror("fork");
        return -1;
    }
    if (helper == 0) {
        close(res[0]);
        close(helper_hold[1]);
        int err = 0;
        if (syscall(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS) != 0)
            err = errno;
        if (write(res[1], &err, sizeof err) != (ssize_t)sizeof err)
            _exit(1);
        char c;
        while (read(helper_hold[0], &c, 1) > 0) {
        }
        _exit(0);
    }
    close(res[1]);
    close(helper_hold[0]);
    int err = -1;
    ssize_t n = read(res[0], &err, sizeof err);
    close(res[0]);
    if (n != (ssize_t)sizeof err || err != 0) {
        fprintf(stderr, "namespaces: the helper could not unshare(CLONE_NEWUSER|CLONE_NEWNS): "
                "%s\n", n == (ssize_t)sizeof err ? strerror(err) : "it died");
        return -1;
    }
    return 0;
}

static void stop_helper(void)
{
    if (helper <= 0)
        return;
    close(helper_hold[1]);
    for (int i = 0; i < 2000; i++) {
        if (waitpid(helper, NULL, WNOHANG) == helper)
            return;
        sp_sleep_ms(1);
    }
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
}

/* One call; prints its line; 0 if it succeeded. */
static int report(const char *what, int rc, int err)
{
    if (rc == 0)
        printf("%s: ok\n", what);
    else
        printf("%s: failed: %s\n", what, strerror(err));
    fflush(stdout);
    return rc == 0 ? 0 : -1;
}

static int do_setns(const char *ns, int type, const char *what)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)helper, ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("open %s: failed: %s\n", ns, strerror(errno));
        return -1;
    }
    int rc = setns(fd, type), err = errno;
    close(fd);
    return report(what, rc, err);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s unshare-user|unshare-mnt|setns-user|setns-mnt|setns-both\n",
                argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int need_helper = !strncmp(mode, "setns-", 6);
    if (need_helper && start_helper() != 0) {
        stop_helper();
        return 77;
    }
    sp_warm_pools();   /* the rotation thread runs: the calls below must stop it */
    /* the program's own threads, which allocate, and are all joined before the call */
    if (run_threads(2) != 0) {
        stop_helper();
        fprintf(stderr, "namespaces: the allocating threads failed\n");
        return 2;
    }
    fprintf(stderr, "namespaces %s: libsyncpool.so %s; %d thread(s) in the process at the call "
            "(1 without a library thread)\n", mode,
            sp_under_syncpool() ? "loaded" : "not loaded", count_threads());
    int rc;
    if (!strcmp(mode, "unshare-user")) {
        rc = unshare(CLONE_NEWUSER);
        rc = report("unshare(CLONE_NEWUSER)", rc, errno);
    } else if (!strcmp(mode, "unshare-mnt")) {
        rc = unshare(CLONE_NEWNS);
        rc = report("unshare(CLONE_NEWNS)", rc, errno);
    } else if (!strcmp(mode, "setns-user")) {
        rc = do_setns("user", CLONE_NEWUSER, "setns(user namespace)");
    } else if (!strcmp(mode, "setns-mnt")) {
        rc = do_setns("mnt", CLONE_NEWNS, "setns(mount namespace)");
    } else if (!strcmp(mode, "setns-both")) {
        rc = do_setns("user", CLONE_NEWUSER, "setns(user namespace)");
        if (rc == 0)
            rc = do_setns("mnt", CLONE_NEWNS, "setns(mount namespace)");
    } else {
        fprintf(stderr, "namespaces: unknown mode %s\n", mode);
        stop_helper();
        return 2;
    }
    if (rc == 0 && run_threads(1) != 0) {
        printf("threads after the call: failed\n");
        rc = -1;
    }
    stop_helper();
    return rc == 0 ? 0 : 1;
}
