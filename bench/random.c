/* random: random replacement in a large live set, single thread.  LIVE objects of random small
 * sizes are alive at once; each step frees a randomly chosen one and allocates a new object of a
 * new random size in its place, so objects have random lifetimes and the freed object is rarely
 * the one the next malloc of its size class would like to get back (the pattern of caches,
 * hash tables and interpreters' heaps).  A deterministic xorshift generator with a fixed seed
 * makes every run do the same steps.
 *
 * usage: random OPS [LIVE]   (steps; one step = one free + one malloc; default 10000 live)
 * Sizes are 8..1024 bytes, skewed to the small end; each object holds its sequence number and
 * is checked before it is freed. */
#include "bench.h"

#define USAGE "OPS [LIVE]"

static const char *prog = "random";

static void obj_new(struct bench_obj *o, uint64_t *rng, uint32_t tag)
{
    obj_new_random(prog, o, rng, tag);
}

static void obj_free(struct bench_obj *o)
{
    if (obj_check(o->p, o->n, o->tag) != 0)
        bench_fail(prog, "object %p (size %u, tag %u) was overwritten", o->p, o->n, o->tag);
    free(o->p);
}

int main(int argc, char **argv)
{
    size_t ops = bench_arg(argc, argv, 1, 10000000, USAGE);
    size_t live = bench_arg(argc, argv, 2, 10000, USAGE);
    struct bench_obj *set = calloc(live, sizeof *set);
    if (!set)
        bench_fail(prog, "calloc of %zu slots failed", live);
    uint64_t rng = rng_seed(42);
    uint32_t tag = 1;
    for (size_t i = 0; i < live; i++)
        obj_new(&set[i], &rng, tag++);
    double t0 = bench_now();
    for (size_t i = 0; i < ops; i++) {
        /* Slot = high 32 bits of a random number scaled to [0, live): no division. */
        size_t k = (size_t)(((rng_next(&rng) >> 32) * (uint64_t)live) >> 32);
        obj_free(&set[k]);
        obj_new(&set[k], &rng, tag++);
    }
    double dt = bench_now() - t0;
    for (size_t i = 0; i < live; i++)
        obj_free(&set[i]);
    free(set);
    printf("live=%zu\n", live);
    bench_report((double)ops, dt);
    return 0;
}
