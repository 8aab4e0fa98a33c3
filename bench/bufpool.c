/* bufpool.c — reusing scratch buffers from many threads: a syncpool program pool against the
 * usual alternatives (issue #16's benchmark; not a timed test).
 *
 *   bufpool MODE [THREADS [ITERS [SIZE [HELD]]]]   defaults: 8 threads, 500 000 rounds, 4096 B, 4
 *
 * Each thread, ITERS times: takes HELD buffers, writes and reads back 256 bytes in each (the
 * "little work"), and gives them back; every 16th buffer goes to the next thread's mailbox
 * instead, and that thread gives it back (a buffer freed by a thread that did not take it).
 * MODE says where buffers come from and go to:
 *   pool    a syncpool_pool (Go's sync.Pool: per-P caches, stealing, dropped when idle); needs
 *           LD_PRELOAD=libsyncpool.so (its API is looked up with dlsym, this file links nothing)
 *   malloc  malloc and free (run it under each allocator with LD_PRELOAD)
 *   mutex   one free list behind a pthread mutex
 *   tls     a free list per thread, no stealing (a thread whose buffers other threads give back
 *           keeps allocating, the others' lists keep growing)
 * Prints one line: mode, seconds, peak RSS, and the RSS after the threads have ended and one
 * idle second has passed (pools give idle buffers back, free lists do not). */

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAXHELD 256
#define MAXT 64

static size_t size = 4096;
static long iters = 500000;
static int held_n = 4;
static int nthreads = 8;
static void *(*take)(void);
static void (*give)(void *);

/* ---- pool: syncpool_pool_*, found with dlsym ---- */
struct pool_config {
    void *(*new_object)(void *arg);
    void (*drop_object)(void *obj, void *arg);
    void *arg;
    size_t max_cached_bytes_per_p, object_size_hint;
    const char *name;
};
static void *(*pool_get)(void *);
static void (*pool_put)(void *, void *);
static void *the_pool;
static void *new_buf(void *arg) { return malloc(size); }
static void drop_buf(void *obj, void *arg) { free(obj); }
static void *pool_take(void) { return pool_get(the_pool); }
static void pool_give(void *b) { pool_put(the_pool, b); }

/* ---- malloc ---- */
static void *malloc_take(void) { return malloc(size); }
static void malloc_give(void *b) { free(b); }

/* ---- mutex: one free list ---- */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static void *list_head;
static void *mutex_take(void)
{
    pthread_mutex_lock(&list_lock);
    void *b = list_head;
    if (b) list_head = *(void **)b;
    pthread_mutex_unlock(&list_lock);
    return b ? b : malloc(size);
}
static void mutex_give(void *b)
{
    pthread_mutex_lock(&list_lock);
    *(void **)b = list_head;
    list_head = b;
    pthread_mutex_unlock(&list_lock);
}

/* ---- tls: a free list per thread ---- */
static __thread void *my_list;
static void *tls_take(void)
{
    void *b = my_list;
    if (b) my_list = *(void **)b;
    return b ? b : malloc(size);
}
static void tls_give(void *b)
{
    *(void **)b = my_list;
    my_list = b;
}

static void *_Atomic mailbox[MAXT];
static pthread_barrier_t done;
static _Atomic long checksum_errors;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned char *held[MAXHELD];
    for (long i = 0; i < iters; i++) {
        for (int k = 0; k < held_n; k++) {
            held[k] = take();
            if (!held[k]) abort();
            memset(held[k] + 64, (int)(i + k), 256);
        }
        for (int k = 0; k < held_n; k++) {
            unsigned sum = 0;
            for (int j = 64; j < 64 + 256; j += 32) sum += held[k][j];
            if (sum != (unsigned)(8 * (unsigned char)(i + k))) checksum_errors++;
            if ((i * held_n + k) % 16 == 0) {
                void *old = atomic_exchange(&mailbox[(id + 1) % nthreads], held[k]);
                if (old) give(old);
            } else {
                give(held[k]);
            }
        }
    }
    pthread_barrier_wait(&done);
    void *old = atomic_exchange(&mailbox[id], NULL);
    if (old) give(old);
    return NULL;
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bufpool pool|malloc|mutex|tls [THREADS [ITERS [SIZE [HELD]]]]\n");
        return 2;
    }
    const char *mode = argv[1];
    if (argc > 2) nthreads = atoi(argv[2]);
    if (argc > 3) iters = atol(argv[3]);
    if (argc > 4) size = (size_t)atol(argv[4]);
    if (argc > 5) held_n = atoi(argv[5]);
    if (nthreads < 1 || nthreads > MAXT || iters < 1 || size < 512 || held_n < 1 ||
        held_n > MAXHELD) {
        fprintf(stderr, "bufpool: 1..%d threads, ITERS >= 1, SIZE >= 512, HELD 1..%d\n", MAXT,
                MAXHELD);
        return 2;
    }
    if (!strcmp(mode, "pool")) {
        void *(*create)(const struct pool_config *) = dlsym(RTLD_DEFAULT, "syncpool_pool_create");
        pool_get = dlsym(RTLD_DEFAULT, "syncpool_pool_get");
        pool_put = dlsym(RTLD_DEFAULT, "syncpool_pool_put");
        if (!create || !pool_get || !pool_put) {
            fprintf(stderr, "bufpool: mode pool needs LD_PRELOAD=libsyncpool.so\n");
            return 2;
        }
        struct pool_config cfg = {new_buf, drop_buf, NULL, 0, size, "bufpool"};
        if (!(the_pool = create(&cfg))) return 1;
        take = pool_take, give = pool_give;
    } else if (!strcmp(mode, "malloc")) {
        take = malloc_take, give = malloc_give;
    } else if (!strcmp(mode, "mutex")) {
        take = mutex_take, give = mutex_give;
    } else if (!strcmp(mode, "tls")) {
        take = tls_take, give = tls_give;
    } else {
        fprintf(stderr, "bufpool: unknown mode %s\n", mode);
        return 2;
    }
    pthread_barrier_init(&done, NULL, (unsigned)nthreads);
    double t0 = now();
    pthread_t th[MAXT];
    for (int i = 0; i < nthreads; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
    double secs = now() - t0;
    sleep(1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("mode=%s threads=%d iters=%ld size=%zu held=%d secs=%.3f rss_peak_kb=%ld rss_idle_kb=%ld%s\n",
           mode, nthreads, iters, size, held_n, secs, ru.ru_maxrss, rss_kb(),
           checksum_errors ? " CHECKSUM-ERRORS" : "");
    return checksum_errors ? 1 : 0;
}
