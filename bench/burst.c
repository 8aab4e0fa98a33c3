/* burst: burst then idle.  Allocates MB megabytes of small objects (24..256 bytes), checks and
 * frees them all, then stays mostly idle for IDLE_MS milliseconds: every 10 ms it wakes up and
 * makes one small allocation, like a server's timer tick.  The harness samples the process's RSS
 * meanwhile, which shows how soon (and whether) each allocator gives the memory back.
 *
 * usage: burst MB [IDLE_MS]   (default 300 MB, 3000 ms)
 * The objects are kept on intrusive lists (no side table whose memory would blur the picture),
 * 8 of them filled round-robin and freed list by list, so objects die out of order.
 * Prints freed_at_ms (time since start when the last object was freed) besides the throughput
 * of the burst itself. */
#include "bench.h"

#define LISTS 8

static const char *prog = "burst";

/* Bytes 0..7 of an object hold obj_fill's header, bytes 8..15 the next pointer; obj_check looks
 * only at the header, the middle and the last byte, which for 24 bytes and up lie past it. */
static void *next_of(void *p)
{
    void *n;
    memcpy(&n, (char *)p + 8, sizeof n);
    return n;
}

int main(int argc, char **argv)
{
    double start = bench_now();
    size_t mb = bench_arg(argc, argv, 1, 300, "MB [IDLE_MS]");
    size_t idle_ms = bench_arg(argc, argv, 2, 3000, "MB [IDLE_MS]");
    size_t budget = mb << 20;

    void *lists[LISTS] = {0};
    uint32_t tags[LISTS] = {0};     /* tag of each list's head; tags count down along a list */
    uint64_t rng = rng_seed(5);
    size_t count = 0, bytes = 0;
    double t0 = bench_now();
    while (bytes < budget) {
        size_t n = rng_small_size(&rng, 24, 256);
        void *p = malloc(n);
        if (!p)
            bench_fail(prog, "malloc(%zu) returned NULL after %zu MB", n, bytes >> 20);
        size_t l = count % LISTS;
        obj_fill(p, n, (uint32_t)count);
        memcpy((char *)p + 8, &lists[l], sizeof(void *));
        lists[l] = p;
        tags[l] = (uint32_t)count;
        count++;
        bytes += n;
    }
    size_t freed = 0;
    for (size_t l = 0; l < LISTS; l++) {
        uint32_t tag = tags[l];
        for (void *p = lists[l], *next; p; p = next, tag -= LISTS) {
            uint32_t n = 0;
            memcpy(&n, p, sizeof n);
            if (n < 24 || n > 256 || obj_check(p, n, tag) != 0)
                bench_fail(prog, "object %u was overwritten", tag);
            next = next_of(p);
            free(p);
            freed++;
        }
    }
    double t1 = bench_now();
    if (freed != count)
        bench_fail(prog, "freed %zu objects of %zu", freed, count);
    printf("objects=%zu\n", count);
    printf("freed_at_ms=%.0f\n", (t1 - start) * 1e3);
    fflush(stdout);
    /* Idle phase: a small allocation every 10 ms, nothing else. */
    struct timespec tick = {0, 10 * 1000 * 1000};
    double idle_end = bench_now() + idle_ms / 1e3;
    while (bench_now() < idle_end) {
        nanosleep(&tick, NULL);
        volatile char *p = malloc(64);
        if (!p)
            bench_fail(prog, "malloc(64) returned NULL while idle");
        p[0] = 1;
        free((void *)p);
    }
    bench_report((double)count * 2, t1 - t0);
    return 0;
}
