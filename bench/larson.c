/* larson: a server simulation after Larson & Krishnan's benchmark.  THREADS worker threads keep
 * replacing random slots of one shared array of live objects: allocate a new object, swap it into
 * a random slot, check and free the object that was there.  That object was usually allocated by
 * another thread, so most frees are remote frees, and the live set stays constant.
 *
 * usage: larson OPS [THREADS]   (OPS replacements in total, default 4 threads)
 * Sizes are 16..1024 bytes, skewed to the small end; 20000 slots. */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

#define SLOTS 20000

struct slot_obj {
    uint32_t n;
    uint32_t tag;
};

static const char *prog = "larson";
static _Atomic(uintptr_t) slots[SLOTS];
static size_t ops_per_thread;

/* A slot holds the object's address with the low 16 bits of its tag in the top 16 bits (user
 * addresses fit in 48 bits), so the one atomic exchange also carries what the object must
 * contain: an allocator that handed one block to two slots is caught when the first is freed. */
static uintptr_t pack(void *p, uint32_t tag)
{
    if ((uintptr_t)p >> 48)
        bench_fail(prog, "address %p does not fit in 48 bits", p);
    return (uintptr_t)p | (uintptr_t)(tag & 0xffff) << 48;
}

static uintptr_t new_obj(uint64_t *rng, uint32_t tag)
{
    size_t n = rng_small_size(rng, 16, 1024);
    void *p = malloc(n);
    if (!p)
        bench_fail(prog, "malloc(%zu) returned NULL", n);
    obj_fill(p, n, tag);
    return pack(p, tag);
}

/* The header written by obj_fill carries the object's size and tag, so any thread can check an
 * object it did not allocate. */
static void check_free(uintptr_t slot)
{
    void *p = (void *)(slot & ((1ULL << 48) - 1));
    struct slot_obj h;
    memcpy(&h, p, sizeof h);
    if (h.n < 16 || h.n > 1024 || (h.tag & 0xffff) != slot >> 48 ||
        obj_check(p, h.n, h.tag) != 0)
        bench_fail(prog, "object %p was overwritten (header size %u tag %u, expected tag %u)",
                   p, h.n, h.tag, (unsigned)(slot >> 48));
    free(p);
}

static void *worker(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    uint64_t rng = rng_seed(1000 + id);
    uint32_t tag = (uint32_t)(id << 24);
    for (size_t i = 0; i < ops_per_thread; i++) {
        uintptr_t p = new_obj(&rng, ++tag);
        size_t k = (size_t)(rng_next(&rng) % SLOTS);
        uintptr_t old = atomic_exchange_explicit(&slots[k], p, memory_order_acq_rel);
        check_free(old);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t ops = bench_arg(argc, argv, 1, 4000000, "OPS [THREADS]");
    size_t nthreads = bench_arg(argc, argv, 2, 4, "OPS [THREADS]");
    ops_per_thread = ops / nthreads;
    uint64_t rng = rng_seed(7);
    for (size_t i = 0; i < SLOTS; i++)
        atomic_store(&slots[i], new_obj(&rng, (uint32_t)i));

    pthread_t *th = malloc(nthreads * sizeof *th);
    double t0 = bench_now();
    for (size_t i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1)) != 0)
            bench_fail(prog, "pthread_create failed");
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    double dt = bench_now() - t0;
    free(th);

    for (size_t i = 0; i < SLOTS; i++)
        check_free(atomic_load(&slots[i]));
    printf("threads=%zu\n", nthreads);
    bench_report((double)ops_per_thread * nthreads, dt);
    return 0;
}
