/* churn: single-thread churn of small random sizes, in two phases.
 *
 *   LIFO: a stack of live objects takes a random walk (push = malloc, pop = free of the newest),
 *         the pattern of recursive code and scratch buffers: what was freed last is wanted next.
 *   FIFO: a queue of WINDOW live objects; each step frees the oldest and allocates a new one,
 *         the pattern of request queues and caches with a fixed lifetime.
 *
 * usage: churn OPS   (operations per phase; one op = one malloc + one free)
 * Sizes are 8..512 bytes, skewed to the small end. */
#include "bench.h"

#define STACK_MAX 4096
#define WINDOW 20000

struct obj {
    void *p;
    size_t n;
    uint32_t tag;
};

static const char *prog = "churn";

static void obj_new(struct obj *o, uint64_t *rng, uint32_t tag)
{
    o->n = rng_small_size(rng, 8, 512);
    o->tag = tag;
    o->p = malloc(o->n);
    if (!o->p)
        bench_fail(prog, "malloc(%zu) returned NULL", o->n);
    obj_fill(o->p, o->n, tag);
}

static void obj_free(struct obj *o)
{
    if (obj_check(o->p, o->n, o->tag) != 0)
        bench_fail(prog, "object %p (size %zu, tag %u) was overwritten", o->p, o->n, o->tag);
    free(o->p);
}

static double phase_lifo(size_t ops, uint64_t *rng)
{
    static struct obj stack[STACK_MAX];
    size_t depth = 0, done = 0;
    uint32_t tag = 1;
    double t0 = bench_now();
    while (done < ops) {
        /* Random walk biased to stay between a few and a few hundred objects deep. */
        uint64_t r = rng_next(rng);
        int push = depth == 0 || (depth < STACK_MAX && (r % 512) >= depth);
        if (push) {
            obj_new(&stack[depth++], rng, tag++);
        } else {
            obj_free(&stack[--depth]);
            done++;
        }
    }
    while (depth > 0)
        obj_free(&stack[--depth]);
    return bench_now() - t0;
}

static double phase_fifo(size_t ops, uint64_t *rng)
{
    struct obj *q = calloc(WINDOW, sizeof *q);
    if (!q)
        bench_fail(prog, "calloc of the queue failed");
    uint32_t tag = 1;
    for (size_t i = 0; i < WINDOW; i++)
        obj_new(&q[i], rng, tag++);
    double t0 = bench_now();
    size_t head = 0;
    for (size_t i = 0; i < ops; i++) {
        obj_free(&q[head]);
        obj_new(&q[head], rng, tag++);
        head = head + 1 == WINDOW ? 0 : head + 1;
    }
    double dt = bench_now() - t0;
    for (size_t i = 0; i < WINDOW; i++)
        obj_free(&q[i]);
    free(q);
    return dt;
}

int main(int argc, char **argv)
{
    size_t ops = bench_arg(argc, argv, 1, 5000000, "OPS");
    uint64_t rng = rng_seed(42);
    double t_lifo = phase_lifo(ops, &rng);
    double t_fifo = phase_fifo(ops, &rng);
    printf("lifo_ops_per_sec=%.0f\n", ops / t_lifo);
    printf("fifo_ops_per_sec=%.0f\n", ops / t_fifo);
    bench_report(2.0 * ops, t_lifo + t_fifo);
    return 0;
}
