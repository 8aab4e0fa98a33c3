/* bulk: allocate N objects, then free them all; again and again, single thread.  The pattern of
 * building and dropping a whole data structure (a parse tree, a request's objects, a batch of
 * messages): a front-end's small per-thread cache holds only a few of the N objects, so with a
 * large N most mallocs and frees go past it to the allocator underneath.
 *
 * usage: bulk OPS N [--fifo] [--size BYTES]
 *   OPS      mallocs (= frees) in total, in OPS/N rounds of N mallocs then N frees
 *   N        objects alive at the end of each round's malloc phase
 *   --fifo   free in allocation order (default: reverse order, the newest first)
 *   --size   every object BYTES long (default: cycle over 16, 32, 48, 64, 96, 128, 256)
 * Each object holds its round's sequence number and is checked before it is freed. */
#include "bench.h"

static const char *prog = "bulk";
static const size_t cycle[] = {16, 32, 48, 64, 96, 128, 256};
#define NCYCLE (sizeof cycle / sizeof cycle[0])
#define USAGE "OPS N [--fifo] [--size BYTES]"

static inline size_t obj_size(size_t fixed, size_t i)
{
    return fixed ? fixed : cycle[i % NCYCLE];
}

static inline void obj_free(void *p, size_t n, uint32_t tag)
{
    if (obj_check(p, n, tag) != 0)
        bench_fail(prog, "object %p (size %zu, tag %u) was overwritten", p, n, tag);
    free(p);
}

int main(int argc, char **argv)
{
    size_t ops = bench_arg(argc, argv, 1, 20000000, USAGE);
    size_t n = bench_arg(argc, argv, 2, 1000, USAGE);
    int fifo = 0;
    size_t fixed = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--fifo")) {
            fifo = 1;
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            fixed = bench_arg(argc, argv, ++i, 0, USAGE);
        } else {
            fprintf(stderr, "usage: %s %s\n", argv[0], USAGE);
            return 2;
        }
    }
    void **objs = calloc(n, sizeof *objs);
    if (!objs)
        bench_fail(prog, "calloc of %zu pointers failed", n);
    size_t rounds = ops / n ? ops / n : 1;
    uint32_t seq = 0;
    double t0 = bench_now();
    for (size_t r = 0; r < rounds; r++) {
        uint32_t base = seq;
        for (size_t i = 0; i < n; i++) {
            size_t sz = obj_size(fixed, i);
            void *p = malloc(sz);
            if (!p)
                bench_fail(prog, "malloc(%zu) returned NULL", sz);
            obj_fill(p, sz, seq++);
            objs[i] = p;
        }
        if (fifo) {
            for (size_t i = 0; i < n; i++)
                obj_free(objs[i], obj_size(fixed, i), base + (uint32_t)i);
        } else {
            for (size_t i = n; i-- > 0;)
                obj_free(objs[i], obj_size(fixed, i), base + (uint32_t)i);
        }
    }
    double dt = bench_now() - t0;
    free(objs);
    printf("n=%zu\n", n);
    printf("rounds=%zu\n", rounds);
    printf("order=%s\n", fifo ? "fifo" : "lifo");
    if (fixed)
        printf("size=%zu\n", fixed);
    else
        printf("size=16..256\n");
    bench_report((double)rounds * n, dt);
    return 0;
}
