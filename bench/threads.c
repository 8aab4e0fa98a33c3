/* threads: thread churn, the pattern of thread-per-task servers.  Many short-lived threads are
 * started, at most CONCURRENT at a time; each allocates OBJS small objects, frees half of them
 * itself and returns the other half to the main thread, which checks and frees them after the
 * thread has exited.  Per-thread caches and thread ids are set up and torn down again and again,
 * and objects outlive the thread that made them.
 *
 * usage: threads THREADS [CONCURRENT]   (threads in total, default 4 at a time)
 * 2000 objects per thread, 8..512 bytes, skewed to the small end. */
#include "bench.h"

#include <pthread.h>

#define OBJS 2000

struct task {
    pthread_t th;
    uint64_t seed;
    void *kept[OBJS / 2];
    size_t kept_n[OBJS / 2];
    uint32_t kept_tag[OBJS / 2];
};

static const char *prog = "threads";

static void *task_main(void *arg)
{
    struct task *t = arg;
    uint64_t rng = t->seed;
    void *mine[OBJS];
    size_t n[OBJS];
    for (size_t i = 0; i < OBJS; i++) {
        n[i] = rng_small_size(&rng, 8, 512);
        mine[i] = malloc(n[i]);
        if (!mine[i])
            bench_fail(prog, "malloc(%zu) returned NULL", n[i]);
        obj_fill(mine[i], n[i], (uint32_t)(t->seed + i));
    }
    /* Free the even ones here, hand the odd ones to the main thread. */
    for (size_t i = 0; i < OBJS; i += 2) {
        if (obj_check(mine[i], n[i], (uint32_t)(t->seed + i)) != 0)
            bench_fail(prog, "object %zu of a thread was overwritten", i);
        free(mine[i]);
    }
    for (size_t i = 1; i < OBJS; i += 2) {
        t->kept[i / 2] = mine[i];
        t->kept_n[i / 2] = n[i];
        t->kept_tag[i / 2] = (uint32_t)(t->seed + i);
    }
    return NULL;
}

static void task_finish(struct task *t)
{
    pthread_join(t->th, NULL);
    for (size_t i = 0; i < OBJS / 2; i++) {
        if (obj_check(t->kept[i], t->kept_n[i], t->kept_tag[i]) != 0)
            bench_fail(prog, "object handed over by an exited thread was overwritten");
        free(t->kept[i]);
    }
}

int main(int argc, char **argv)
{
    size_t total = bench_arg(argc, argv, 1, 4000, "THREADS [CONCURRENT]");
    size_t conc = bench_arg(argc, argv, 2, 4, "THREADS [CONCURRENT]");
    struct task *tasks = calloc(conc, sizeof *tasks);
    if (!tasks)
        bench_fail(prog, "calloc failed");
    double t0 = bench_now();
    for (size_t i = 0; i < total; i++) {
        struct task *t = &tasks[i % conc];
        if (i >= conc)
            task_finish(t);
        t->seed = rng_seed(i) >> 8;
        if (pthread_create(&t->th, NULL, task_main, t) != 0)
            bench_fail(prog, "pthread_create failed");
    }
    for (size_t i = total > conc ? total - conc : 0; i < total; i++)
        task_finish(&tasks[i % conc]);
    double dt = bench_now() - t0;
    free(tasks);
    printf("threads_per_sec=%.0f\n", total / dt);
    bench_report((double)total * OBJS, dt);
    return 0;
}
