/* thread_churn: many short-lived threads (research.md 1.4 "thread churn", 3.5 thread exit).
 *
 *   sp_thread_churn [NTHREADS]    (phase A's thread count; default 2000, issue #5: 10000)
 *
 * Phase A: 2000 threads (or NTHREADS), in waves of 50 at a time.  Phase B: 200 threads alive at
 * the same time (a barrier holds them until all have allocated).  Each thread
 *   - allocates NOBJ blocks of 1..4096 bytes (about 256 KiB) and fills them,
 *   - does CHURN extra malloc/free pairs (so its pool slot caches objects),
 *   - verifies and frees half of its blocks itself,
 *   - pushes a quarter to a shared exchange and takes as many blocks from it, which were
 *     allocated by other (mostly already exited) threads, verifies and frees those,
 *   - hands the last quarter to the main thread, which verifies and frees them after join.
 *
 * Memory bound (ru_maxrss, checked after each phase): with C threads alive at once, each owns
 * at most ~256 KiB of live blocks; allow per thread 3x that (live blocks + the same again
 * cached in its pool slot + allocator rounding/fragmentation) plus 256 KiB (touched stack, TLS,
 * allocator per-thread state), i.e. 1 MiB per concurrent thread, over the RSS measured before
 * the phase, plus 32 MiB slack.  Phase A: 50 -> +82 MiB; phase B: 200 -> +232 MiB.  If exited
 * threads' caches or slots were never reused, phase A alone would hold 2000 x 256 KiB =
 * 500 MiB and fail. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>

#define NOBJ 128
#define CHURN 400
#define WAVE 50
#define NWAVE_THREADS_DEFAULT 2000
#define NCONCURRENT 200
#define XCAP 8192

struct hdr {
    uint64_t size, seed;
};

struct targ {
    int id;
    pthread_barrier_t *barrier;
    struct hdr *keep[NOBJ / 4];
    int nkeep;
};

static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static struct hdr *xstack[XCAP];
static int xtop;

static struct hdr *blk_new(size_t size, uint64_t seed)
{
    struct hdr *h = malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    h->seed = seed;
    sp_fill(h + 1, size, seed);
    return h;
}

static void blk_free(struct hdr *h, const char *who)
{
    long bad = sp_verify(h + 1, h->size, h->seed);
    CHECK(bad < 0, "%s: block of %llu bytes (seed %#llx) corrupted at byte %ld", who,
          (unsigned long long)h->size, (unsigned long long)h->seed, bad);
    free(h);
}

static void *thread_fn(void *arg)
{
    struct targ *t = arg;
    uint64_t rng = (uint64_t)t->id * 2654435761u + 17;
    struct hdr *mine[NOBJ];
    for (int i = 0; i < NOBJ; i++) {
        mine[i] = blk_new(1 + sp_rand(&rng) % 4096, ((uint64_t)t->id << 32) | (uint64_t)i);
        CHECK(mine[i] != NULL, "thread %d: malloc failed", t->id);
    }
    for (int i = 0; i < CHURN; i++) {
        size_t n = 2 + sp_rand(&rng) % 2048;
        unsigned char *p = malloc(n);
        CHECK(p != NULL, "thread %d: malloc(%zu) failed", t->id, n);
        if (p) {
            p[0] = (unsigned char)i;
            p[n - 1] = (unsigned char)(i + 1);
            CHECK(p[0] == (unsigned char)i && p[n - 1] == (unsigned char)(i + 1), "churn block");
            free(p);
        }
    }
    if (t->barrier)
        pthread_barrier_wait(t->barrier); /* phase B: all threads are alive and hold memory */
    int i = 0;
    for (; i < NOBJ / 2; i++)
        if (mine[i])
            blk_free(mine[i], "own");
    /* exchange a quarter */
    struct hdr *got[NOBJ / 4];
    int ngot = 0;
    pthread_mutex_lock(&xlock);
    for (int k = 0; k < NOBJ / 4 && xtop > 0; k++)
        got[ngot++] = xstack[--xtop];
    for (; i < NOBJ / 2 + NOBJ / 4; i++)
        if (mine[i] && xtop < XCAP)
            xstack[xtop++] = mine[i];
        else if (mine[i])
            blk_free(mine[i], "own (exchange full)");
    pthread_mutex_unlock(&xlock);
    for (int k = 0; k < ngot; k++)
        blk_free(got[k], "from another thread");
    /* the rest goes to main */
    t->nkeep = 0;
    for (; i < NOBJ; i++)
        t->keep[t->nkeep++] = mine[i];
    return NULL;
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void collect(struct targ *a)
{
    for (int k = 0; k < a->nkeep; k++)
        if (a->keep[k])
            blk_free(a->keep[k], "kept for main");
    a->nkeep = 0;
}

int main(int argc, char **argv)
{
    int nwave_threads = (int)sp_arg_count(argc, argv, NWAVE_THREADS_DEFAULT, 100000000, "NTHREADS");
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("thread_churn: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");
    static struct targ args[NCONCURRENT > WAVE ? NCONCURRENT : WAVE];
    pthread_t th[NCONCURRENT > WAVE ? NCONCURRENT : WAVE];
    pthread_attr_t attr;
    pthread_attr_init(&attr);

    /* Phase A: waves */
    long base = rss_kb();
    double t0 = sp_now();
    int started = 0;
    while (started < nwave_threads) {
        int n = 0;
        for (; n < WAVE && started < nwave_threads; n++, started++) {
            args[n].id = started;
            args[n].barrier = NULL;
            int rc = pthread_create(&th[n], &attr, thread_fn, &args[n]);
            REQUIRE(rc == 0, "pthread_create #%d: %s", started, strerror(rc));
        }
        for (int k = 0; k < n; k++) {
            pthread_join(th[k], NULL);
            collect(&args[k]);
        }
    }
    long peak_a = maxrss_kb();
    long bound_a = base + WAVE * 1024L + 32 * 1024L;
    printf("  phase A: %d threads in waves of %d, %.2f s; RSS before %ld KiB, peak %ld KiB, "
           "bound %ld KiB\n", nwave_threads, WAVE, sp_now() - t0, base, peak_a, bound_a);
    CHECK(peak_a <= bound_a, "phase A: peak RSS %ld KiB exceeds the bound %ld KiB (exited "
          "threads' memory not reused?)", peak_a, bound_a);

    /* Phase B: 200 threads alive at once */
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NCONCURRENT);
    long base_b = rss_kb();
    t0 = sp_now();
    for (int n = 0; n < NCONCURRENT; n++) {
        args[n].id = nwave_threads + n;
        args[n].barrier = &bar;
        int rc = pthread_create(&th[n], &attr, thread_fn, &args[n]);
        REQUIRE(rc == 0, "pthread_create (concurrent #%d): %s", n, strerror(rc));
    }
    for (int n = 0; n < NCONCURRENT; n++) {
        pthread_join(th[n], NULL);
        collect(&args[n]);
    }
    pthread_barrier_destroy(&bar);
    long peak_b = maxrss_kb();
    long bound_b = (base_b > peak_a ? base_b : peak_a) + NCONCURRENT * 1024L + 32 * 1024L;
    printf("  phase B: %d threads at once, %.2f s; peak RSS %ld KiB, bound %ld KiB\n",
           NCONCURRENT, sp_now() - t0, peak_b, bound_b);
    CHECK(peak_b <= bound_b, "phase B: peak RSS %ld KiB exceeds the bound %ld KiB", peak_b,
          bound_b);

    /* whatever is left in the exchange */
    int left = xtop;
    while (xtop > 0)
        blk_free(xstack[--xtop], "left in exchange");
    printf("  %d blocks were left in the exchange; RSS now %ld KiB\n", left, rss_kb());
    return sp_report("thread_churn");
}
