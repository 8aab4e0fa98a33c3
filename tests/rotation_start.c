/* rotation_start: the rotation thread starts only once the pools are warm (pool.h,
 * SP_WARM_BYTES), and then at once.  Run with the default period.
 *
 *   1. a program that has made a few small allocations (less than 64 KiB of misses, even
 *      counted over two threads) has no thread but its own: /proc/self/task lists 1 entry;
 *   2. after sp_warm_pools (128 KiB of live objects) it has 2, syncpool's rotation thread, and
 *      rotations follow (at least 2 within 2 s at the default 100 ms);
 *   3. a program pool warms the pools by itself: a child process (forked before step 2, so
 *      not warm) that creates one has the rotation thread right after syncpool_pool_create;
 *   4. so do 8 MiB of large blocks (two of 4 MiB), in another such child. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>

#include "syncpool.h"

/* The Threads: line of /proc/self/status, read without allocating (opendir would malloc a
 * 32 KiB buffer, which counts toward warmth). */
static int threads_now(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    REQUIRE(fd >= 0, "open /proc/self/status");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    REQUIRE(n > 0, "read /proc/self/status");
    buf[n] = 0;
    const char *l = strstr(buf, "\nThreads:");
    REQUIRE(l != NULL, "no Threads: line");
    return atoi(l + 9);
}

static void *few(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) free(malloc(16 + (size_t)(i % 200)));
    void *keep[16];
    for (int i = 0; i < 16; i++) keep[i] = malloc(512);
    for (int i = 0; i < 16; i++) free(keep[i]);
    return NULL;
}

int main(void)
{
    REQUIRE(sp_under_syncpool(), "run with LD_PRELOAD=libsyncpool.so");
    few(NULL);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, few, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    CHECK(threads_now() == 1, "a small program has %d threads, expected 1", threads_now());
    CHECK(syncpool_rotations() == 0, "%llu rotations before the pools are warm",
          (unsigned long long)syncpool_rotations());

    pid_t child = fork();
    REQUIRE(child >= 0, "fork");
    if (child == 0) {
        int ok = threads_now() == 1;
        struct syncpool_pool_config cfg = {.object_size_hint = 64, .name = "start"};
        syncpool_pool *p = syncpool_pool_create(&cfg);
        ok = ok && p != NULL && threads_now() == 2;
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    REQUIRE(waitpid(child, &st, 0) == child, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "child: no rotation thread after syncpool_pool_create (status %d)", st);

    /* Large requests count 1/128 of their size: 8 MiB of them warm the pools (the thread also
     * takes over the purging that keeps a reused large block from faulting in again). */
    child = fork();
    REQUIRE(child >= 0, "fork");
    if (child == 0) {
        int ok = threads_now() == 1;
        for (int i = 0; i < 2; i++) {
            char *b = malloc(4 << 20);
            if (!b) _exit(2);
            memset(b, 1, 4 << 20);
            free(b);
        }
        _exit(ok && threads_now() == 2 ? 0 : 1);
    }
    REQUIRE(waitpid(child, &st, 0) == child, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "child: no rotation thread after 8 MiB of large blocks (status %d)", st);

    sp_warm_pools();
    CHECK(threads_now() == 2, "%d threads after warming the pools, expected 2", threads_now());
    double t0 = sp_now();
    while (syncpool_rotations() < 2 && sp_now() - t0 < 2.0) sp_sleep_ms(10);
    CHECK(syncpool_rotations() >= 2, "%llu rotations within 2 s of warming the pools",
          (unsigned long long)syncpool_rotations());
    return sp_report("rotation_start");
}
