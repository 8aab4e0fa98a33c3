/* fork_spill: a child forked while another thread moves objects between its private stack and
 * its shared chain must not find any object twice in that thread's pool.
 *
 *   sp_fork_spill [NFORKS]      (default 1000)
 *
 * In the parent the main thread allocates first (P id 0), then one worker (P id 1) frees and
 * allocates runs of 16 objects of 48 bytes without end, so that its full private stack spills
 * to the shared chain and its empty one refills from it every few operations (pool/pool.c,
 * sp_priv_spill).  The main thread forks NFORKS times.  In each child only the forking thread
 * exists and every P id is free again: the child's main thread takes id 0 and a new thread in
 * the child takes id 1, whose pools still hold what the worker left at the instant of the fork,
 * possibly in the middle of a spill or a refill.  That thread takes 96 objects of 48 bytes (more
 * than the worker ever caches) and checks that no pointer comes twice: a pointer handed out twice
 * is an object two owners would write.  Run with SYNCPOOL_ROTATE_MS=0, so that the child's thread
 * finds the worker's pools in the same generation.  (Before the spill took the batch off the stack
 * before publishing it in the chain, 6 to 13 children of 1000 found an object twice, in 3 runs;
 * since, none of 6000.) */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define SZ 48
#define RUN 16
#define TAKE 96

static atomic_int stop;

static void *worker(void *arg)
{
    (void)arg;
    void *v[RUN];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < RUN; i++) {
            v[i] = malloc(SZ);
            if (!v[i]) abort();
            memset(v[i], 0x5a, SZ);
        }
        for (int i = 0; i < RUN; i++) free(v[i]);
    }
    return NULL;
}

/* In the child: the thread that inherits the worker's P id. */
static void *taker(void *arg)
{
    (void)arg;
    static void *got[TAKE];
    long dup = 0;
    for (int i = 0; i < TAKE; i++) {
        got[i] = malloc(SZ);
        if (!got[i]) return (void *)-1L;
        for (int j = 0; j < i; j++) dup += got[j] == got[i];
    }
    for (int i = 0; i < TAKE; i++) free(got[i]);
    return (void *)dup;
}

int main(int argc, char **argv)
{
    int nforks = (int)sp_arg_count(argc, argv, 1000, 1000000, "NFORKS");
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("fork_spill: libsyncpool.so %s, %d forks\n",
           sp_under_syncpool() ? "loaded" : "NOT loaded", nforks);
    free(malloc(SZ));                   /* P id 0 is the main thread's */
    pthread_t w;
    REQUIRE(pthread_create(&w, NULL, worker, NULL) == 0, "pthread_create");
    sp_sleep_ms(20);                    /* the worker has its P id (1) and is running */
    int bad = 0;
    for (int n = 0; n < nforks; n++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork failed: %s", strerror(errno));
        if (pid == 0) {
            sp_counts_reset();
            free(malloc(SZ));           /* the child's main thread takes id 0 again */
            pthread_t t;
            void *res = NULL;
            if (pthread_create(&t, NULL, taker, NULL) != 0) _exit(3);
            pthread_join(t, &res);
            if ((long)res != 0) {
                fprintf(stderr, "fork_spill: child %d: %ld pointers handed out twice%s\n", n,
                        (long)res, (long)res < 0 ? " (allocation failed)" : "");
                _exit(1);
            }
            _exit(0);
        }
        int st = 0;
        REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %#x", n, st);
    }
    atomic_store(&stop, 1);
    pthread_join(w, NULL);
    printf("  %d forks, %d children found an object twice or failed\n", nforks, bad);
    return sp_report("fork_spill");
}
