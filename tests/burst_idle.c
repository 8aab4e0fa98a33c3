/* burst_idle: after a burst, an idle program gives its cached memory back by itself.
 * Runs with SYNCPOOL_ROTATE_MS=50 (the background rotation thread does the work).
 *
 * Three rounds:
 *   1. a thread mallocs 100000 objects of pooled sizes (8..1024 bytes), frees them all, and
 *      then stays alive but idle;
 *   2. the same, but the thread exits right after freeing;
 *   3. four threads x 25000 objects, freeing each other's objects, then idle.
 * After each round the main thread waits 3 rotation periods, then polls (no allocation while
 * polling) for at most 2 s until syncpool_cached_bytes() == 0, and then reads the stats: the
 * `released` counters (summed over the classes) must have grown by >= the number of objects
 * freed in the round, and at least 2 rotations must have happened.  After round 1 the pages
 * must also leave the process: within 3 s more, the anonymous RSS falls back to within a quarter
 * of what the burst added (jemalloc alone keeps them: its decay needs allocation to run). */
#define _GNU_SOURCE
#include "sp_stats.h"

#include <pthread.h>

#define NOBJ 100000
#define PERIOD_MS 50

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done_freeing, may_exit;

static void *obj_shared[4][NOBJ / 4];
static pthread_barrier_t bar;

static size_t size_of(size_t i) { return sp_classes[i % 21] - (i % 3); } /* classes 8..1024 */

static void *burst_thread(void *arg)
{
    int stay = (int)(intptr_t)arg;
    void **v = malloc(sizeof(void *) * NOBJ);
    REQUIRE(v != NULL, "malloc");
    for (size_t i = 0; i < NOBJ; i++) {
        v[i] = malloc(size_of(i));
        REQUIRE(v[i] != NULL, "malloc");
        memset(v[i], (int)i, size_of(i) < 16 ? size_of(i) : 16);
    }
    for (size_t i = 0; i < NOBJ; i++)
        free(v[i]);
    free(v);
    pthread_mutex_lock(&mu);
    done_freeing = 1;
    pthread_cond_broadcast(&cv);
    while (stay && !may_exit)
        pthread_cond_wait(&cv, &mu); /* idle: no allocation */
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void *group_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (size_t i = 0; i < NOBJ / 4; i++) {
        obj_shared[id][i] = malloc(size_of(i + (size_t)id));
        REQUIRE(obj_shared[id][i] != NULL, "malloc");
    }
    pthread_barrier_wait(&bar);
    /* free the objects of the next thread */
    int o = (id + 1) % 4;
    for (size_t i = 0; i < NOBJ / 4; i++)
        free(obj_shared[o][i]);
    pthread_barrier_wait(&bar);
    pthread_mutex_lock(&mu);
    while (!may_exit)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void wait_idle(const char *round, unsigned long long released_before,
                      unsigned long long rot_before)
{
    double t0 = sp_now();
    sp_sleep_ms(3 * PERIOD_MS);
    unsigned long long cached = syncpool_cached_bytes();
    while (cached != 0 && sp_now() - t0 < 3 * PERIOD_MS / 1000.0 + 2.0) {
        sp_sleep_ms(10);
        cached = syncpool_cached_bytes();
    }
    double waited = sp_now() - t0;
    unsigned long long rots = syncpool_rotations() - rot_before;
    struct sp_stats st;
    REQUIRE(sp_stats_read(&st) == 0, "stats");
    unsigned long long released = SP_SUM_FIELD(&st, released) - released_before;
    printf("  %s: cached_bytes %llu after %.2f s idle, %llu rotations, released +%llu\n", round,
           cached, waited, rots, released);
    CHECK(cached == 0, "%s: syncpool_cached_bytes() = %llu after %.2f s idle with "
          "SYNCPOOL_ROTATE_MS=%d (expected 0 after ~2 periods)", round, cached, waited,
          PERIOD_MS);
    CHECK(released >= NOBJ, "%s: the classes' `released` grew by %llu, expected >= %d", round,
          released, NOBJ);
    /* two rotations are what it takes (local -> victim -> released); 3 periods were waited */
    CHECK(rots >= 2, "%s: only %llu rotations in %.2f s with SYNCPOOL_ROTATE_MS=%d", round, rots,
          waited, PERIOD_MS);
}

/* RssAnon of this process in KiB (0 if unreadable). */
static long rss_anon_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld", &kib) == 1) break;
    fclose(f);
    return kib;
}

static unsigned long long released_now(void)
{
    struct sp_stats st;
    REQUIRE(sp_stats_read(&st) == 0, "stats");
    CHECK(st.rotate_ms == PERIOD_MS, "stats rotate_ms = %llu, expected %d", st.rotate_ms,
          PERIOD_MS);
    return SP_SUM_FIELD(&st, released);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("burst_idle: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");
    const char *rm = getenv("SYNCPOOL_ROTATE_MS");
    REQUIRE(rm && atoi(rm) == PERIOD_MS, "run with SYNCPOOL_ROTATE_MS=%d", PERIOD_MS);
    pthread_t t;

    /* round 1: the thread stays alive, idle */
    unsigned long long rel = released_now(), rot = syncpool_rotations();
    long rss_base = rss_anon_kib();
    REQUIRE(pthread_create(&t, NULL, burst_thread, (void *)1) == 0, "pthread_create");
    pthread_mutex_lock(&mu);
    while (!done_freeing)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    long rss_burst = rss_anon_kib();
    wait_idle("round 1 (thread idle)", rel, rot);
    /* The pages go back to the kernel: syncpool purges jemalloc's other arenas and runs the
     * zone's decay (2 periods, at least 500 ms) from the rotation thread (docs/design.md). */
    double t1 = sp_now();
    long rss = rss_anon_kib(), limit = rss_base + (rss_burst - rss_base) / 4;
    while (rss > limit && sp_now() - t1 < 3.0) {
        sp_sleep_ms(20);
        rss = rss_anon_kib();
    }
    printf("  round 1: RssAnon %ld KiB before, %ld after the burst, %ld after %.2f s more idle\n",
           rss_base, rss_burst, rss, sp_now() - t1);
    CHECK(rss_burst - rss_base > 10000, "round 1: the burst added only %ld KiB",
          rss_burst - rss_base);
    CHECK(rss <= limit, "round 1: RssAnon %ld KiB after %.2f s idle, expected <= %ld (%ld before "
          "the burst, %ld after it)", rss, sp_now() - t1, limit, rss_base, rss_burst);
    pthread_mutex_lock(&mu);
    may_exit = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);

    /* round 2: the thread exits */
    done_freeing = 0;
    rel = released_now();
    rot = syncpool_rotations();
    REQUIRE(pthread_create(&t, NULL, burst_thread, (void *)0) == 0, "pthread_create");
    pthread_join(t, NULL);
    wait_idle("round 2 (thread exited)", rel, rot);

    /* round 3: four threads, cross-thread frees */
    may_exit = 0;
    rel = released_now();
    rot = syncpool_rotations();
    pthread_barrier_init(&bar, NULL, 5);
    pthread_t g[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&g[i], NULL, group_thread, (void *)(intptr_t)i) == 0,
                "pthread_create");
    pthread_barrier_wait(&bar); /* all allocated */
    pthread_barrier_wait(&bar); /* all freed */
    wait_idle("round 3 (4 threads, cross-thread frees)", rel, rot);
    pthread_mutex_lock(&mu);
    may_exit = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 4; i++)
        pthread_join(g[i], NULL);
    pthread_barrier_destroy(&bar);
    return sp_report("burst_idle");
}
