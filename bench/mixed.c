/* mixed: small and large objects mixed, with realloc growth, single thread.  Two tables of live
 * buffers; each step either
 *   - replaces a random slot of the first table with a small object (16..1024 bytes; 80% of
 *     steps) or with a large one (32..512 KiB; 3%), or
 *   - grows a random buffer of the second table with realloc by half its size, like a string
 *     builder or a vector (17%); one that would pass 1 MiB is freed and starts again at 64 bytes,
 *     so growth crosses every small size class into large sizes.
 * Content is checked after every realloc (the old bytes must have moved with it) and before
 * every free.
 *
 * usage: mixed OPS   (steps; 3500 + 500 slots) */
#include "bench.h"

#define SLOTS 3500
#define GROWERS 500
#define GROW_LIMIT (1u << 20)

struct buf {
    unsigned char *p;
    size_t n;
    uint32_t tag;
};

static const char *prog = "mixed";

static void buf_check(const struct buf *b)
{
    if (b->p && obj_check(b->p, b->n, b->tag) != 0)
        bench_fail(prog, "buffer %p (size %zu, tag %u) was overwritten", (void *)b->p, b->n,
                   b->tag);
}

static void buf_set(struct buf *b, size_t n, uint32_t tag)
{
    buf_check(b);
    free(b->p);
    b->p = malloc(n);
    if (!b->p)
        bench_fail(prog, "malloc(%zu) returned NULL", n);
    b->n = n;
    b->tag = tag;
    obj_fill(b->p, n, tag);
}

static void buf_grow(struct buf *b, uint32_t tag)
{
    size_t n = b->n + b->n / 2 + 1;
    if (n > GROW_LIMIT) {
        buf_set(b, 64, tag);
        return;
    }
    buf_check(b);
    unsigned char *q = realloc(b->p, n);
    if (!q)
        bench_fail(prog, "realloc(%zu) returned NULL", n);
    /* The old contents must have moved along: check them at the old size before restamping. */
    b->p = q;
    if (obj_check(q, b->n, b->tag) != 0)
        bench_fail(prog, "realloc from %zu to %zu lost the contents", b->n, n);
    b->n = n;
    b->tag = tag;
    obj_fill(q, n, tag);
}

int main(int argc, char **argv)
{
    size_t ops = bench_arg(argc, argv, 1, 3000000, "OPS");
    static struct buf slots[SLOTS], growers[GROWERS];
    uint64_t rng = rng_seed(3);
    uint32_t tag = 1;
    size_t grows = 0, larges = 0;
    double t0 = bench_now();
    for (size_t i = 0; i < SLOTS; i++)
        buf_set(&slots[i], rng_small_size(&rng, 16, 1024), tag++);
    for (size_t i = 0; i < GROWERS; i++)
        buf_set(&growers[i], 64, tag++);
    for (size_t i = 0; i < ops; i++) {
        uint64_t r = rng_next(&rng);
        unsigned pick = (unsigned)(r % 100);
        if (pick < 80) {
            buf_set(&slots[(r >> 32) % SLOTS], rng_small_size(&rng, 16, 1024), tag++);
        } else if (pick < 83) {
            buf_set(&slots[(r >> 32) % SLOTS], 32768 + (size_t)(rng_next(&rng) % (480u << 10)),
                    tag++);
            larges++;
        } else {
            buf_grow(&growers[(r >> 32) % GROWERS], tag++);
            grows++;
        }
    }
    for (size_t i = 0; i < SLOTS; i++) {
        buf_check(&slots[i]);
        free(slots[i].p);
    }
    for (size_t i = 0; i < GROWERS; i++) {
        buf_check(&growers[i]);
        free(growers[i].p);
    }
    double dt = bench_now() - t0;
    printf("reallocs=%zu\nlarge=%zu\n", grows, larges);
    bench_report((double)ops, dt);
    return 0;
}
