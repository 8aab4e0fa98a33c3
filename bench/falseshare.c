/* falseshare: passive false sharing, after Hoard's cache-scratch benchmark.  The main thread
 * allocates one small object per worker, back to back, so they likely share a cache line, and
 * hands one to each worker.  Each worker frees it, then repeatedly allocates a small object of
 * the same size, writes it hot, checks it and frees it.  An allocator that gives the worker back
 * the object it just freed (the main thread's, next to the other workers' objects) makes the
 * workers fight over one cache line; one that serves each thread from its own memory does not.
 *
 * usage: falseshare ITERATIONS [THREADS]   (allocations per worker, default 2 workers)
 * Each allocation is written WRITES times; objects are 8 bytes. */
#include "bench.h"

#include <pthread.h>

#define OBJ_SIZE 8
#define WRITES 200

static const char *prog = "falseshare";
static size_t iterations;

static void *worker(void *arg)
{
    void *first = arg;
    if (obj_check(first, OBJ_SIZE, 0xabcd) != 0)
        bench_fail(prog, "object handed over by the main thread was overwritten");
    free(first);
    for (size_t i = 0; i < iterations; i++) {
        volatile uint64_t *p = malloc(OBJ_SIZE);
        if (!p)
            bench_fail(prog, "malloc(%d) returned NULL", OBJ_SIZE);
        *p = 0;
        for (int w = 0; w < WRITES; w++)
            *p = *p + 1;
        if (*p != WRITES)
            bench_fail(prog, "object %p holds %llu after %d increments", (void *)p,
                       (unsigned long long)*p, WRITES);
        free((void *)p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    iterations = bench_arg(argc, argv, 1, 100000, "ITERATIONS [THREADS]");
    size_t nthreads = bench_arg(argc, argv, 2, 2, "ITERATIONS [THREADS]");
    void **objs = malloc(nthreads * sizeof *objs);
    pthread_t *th = malloc(nthreads * sizeof *th);
    for (size_t i = 0; i < nthreads; i++) {
        objs[i] = malloc(OBJ_SIZE);
        obj_fill(objs[i], OBJ_SIZE, 0xabcd);
    }
    double t0 = bench_now();
    for (size_t i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, worker, objs[i]) != 0)
            bench_fail(prog, "pthread_create failed");
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    double dt = bench_now() - t0;
    free(th);
    free(objs);
    printf("threads=%zu\n", nthreads);
    printf("writes_per_object=%d\n", WRITES);
    bench_report((double)iterations * nthreads, dt);
    return 0;
}
