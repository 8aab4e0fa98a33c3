/* xthreads: threads that free each other's objects.  Each of THREADS threads keeps its own live
 * set of LIVE objects of random small sizes and replaces a random one at every step (random
 * lifetimes); instead of freeing the replaced object itself, it hands HANDOFF_PCT % of them to a
 * random other thread, which checks and frees them.  Handed-off objects travel in batches of
 * 64: a sender fills one batch per receiver and pushes it, full, onto the receiver's inbox (a
 * lock-free stack of batches; the receiver takes the whole stack with one exchange every 32
 * steps).  The pattern of pipelines and work queues where objects die on a thread other than
 * the one that made them, mixed with thread-local churn; the batches themselves are malloc'ed by
 * the sender and freed by the receiver too.
 *
 * usage: xthreads OPS [THREADS [HANDOFF_PCT [LIVE]]]
 *   OPS in total over the threads (one op = one malloc + one free), default 8 threads, 20 %
 *   handed off, 1000 live objects per thread.
 * Sizes are 8..1024 bytes, skewed to the small end; each object holds its sender's sequence
 * number and is checked before it is freed, by whichever thread frees it; at the end the
 * objects received must equal the objects sent. */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define USAGE "OPS [THREADS [HANDOFF_PCT [LIVE]]]"
#define MAX_THREADS 256
#define BATCH 64
#define DRAIN_EVERY 32

struct batch {
    struct batch *next;
    size_t count;
    struct bench_obj items[BATCH];
};

struct inbox {
    _Alignas(64) _Atomic(struct batch *) head;
};

struct worker {
    pthread_t th;
    size_t id;
    uint64_t sent, received, batches;
};

static const char *prog = "xthreads";
static struct inbox inboxes[MAX_THREADS];
static struct worker workers[MAX_THREADS];
static size_t nthreads, ops_per_thread, live_per_thread;
static uint64_t handoff_threshold;      /* of a 32-bit random number: pct * 2^32 / 100 */
static pthread_barrier_t start;
static atomic_size_t finished;

static void obj_new(struct bench_obj *o, uint64_t *rng, uint32_t tag)
{
    obj_new_random(prog, o, rng, tag);
}

static void obj_free(const struct bench_obj *o, const char *whose)
{
    if (obj_check(o->p, o->n, o->tag) != 0)
        bench_fail(prog, "%s object %p (size %u, tag %08x) was overwritten", whose, o->p, o->n,
                   o->tag);
    free(o->p);
}

static void push(size_t to, struct batch *b)
{
    _Atomic(struct batch *) *head = &inboxes[to].head;
    struct batch *old = atomic_load_explicit(head, memory_order_relaxed);
    do
        b->next = old;
    while (!atomic_compare_exchange_weak_explicit(head, &old, b, memory_order_release,
                                                  memory_order_relaxed));
}

/* Takes the whole inbox and frees what is in it; the stack order does not matter. */
static void drain(struct worker *w)
{
    _Atomic(struct batch *) *head = &inboxes[w->id].head;
    if (!atomic_load_explicit(head, memory_order_relaxed))
        return;
    struct batch *b = atomic_exchange_explicit(head, NULL, memory_order_acquire);
    while (b) {
        struct batch *next = b->next;
        if (b->count == 0 || b->count > BATCH)
            bench_fail(prog, "a batch in thread %zu's inbox holds %zu objects", w->id,
                       b->count);
        for (size_t i = 0; i < b->count; i++)
            obj_free(&b->items[i], "handed-off");
        w->received += b->count;
        free(b);
        b = next;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = rng_seed(1000 + w->id);
    uint32_t tag = (uint32_t)w->id << 24;
    struct bench_obj *live = calloc(live_per_thread, sizeof *live);
    struct batch **out = calloc(nthreads, sizeof *out);
    if (!live || !out)
        bench_fail(prog, "calloc failed");
    for (size_t i = 0; i < live_per_thread; i++)
        obj_new(&live[i], &rng, tag++);
    pthread_barrier_wait(&start);

    for (size_t step = 0; step < ops_per_thread; step++) {
        uint64_t r = rng_next(&rng);
        size_t k = (size_t)(((r >> 32) * live_per_thread) >> 32);
        if (nthreads > 1 && (r & 0xffffffffu) < handoff_threshold) {
            uint64_t r2 = rng_next(&rng) >> 32;
            size_t to = (w->id + 1 + (size_t)((r2 * (nthreads - 1)) >> 32)) % nthreads;
            struct batch *b = out[to];
            if (!b) {
                b = out[to] = malloc(sizeof *b);
                if (!b)
                    bench_fail(prog, "malloc(%zu) of a batch returned NULL", sizeof *b);
                b->count = 0;
            }
            b->items[b->count++] = live[k];
            if (b->count == BATCH) {
                push(to, b);
                out[to] = NULL;
                w->batches++;
            }
            w->sent++;
        } else {
            obj_free(&live[k], "own");
        }
        obj_new(&live[k], &rng, tag++);
        if (step % DRAIN_EVERY == 0)
            drain(w);
    }

    /* Send what is left, then free what others send until every thread has sent everything. */
    for (size_t to = 0; to < nthreads; to++) {
        if (out[to]) {
            push(to, out[to]);
            w->batches++;
        }
    }
    atomic_fetch_add_explicit(&finished, 1, memory_order_release);
    while (atomic_load_explicit(&finished, memory_order_acquire) < nthreads) {
        drain(w);
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    drain(w);
    for (size_t i = 0; i < live_per_thread; i++)
        obj_free(&live[i], "own");
    free(out);
    free(live);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t ops = bench_arg(argc, argv, 1, 8000000, USAGE);
    nthreads = bench_arg(argc, argv, 2, 8, USAGE);
    long pct = 20;
    if (argc > 3) {
        char *end;
        pct = strtol(argv[3], &end, 10);
        if (end == argv[3] || *end || pct < 0 || pct > 100) {
            fprintf(stderr, "usage: %s %s   (HANDOFF_PCT 0..100)\n", argv[0], USAGE);
            return 2;
        }
    }
    live_per_thread = bench_arg(argc, argv, 4, 1000, USAGE);
    if (nthreads > MAX_THREADS) {
        fprintf(stderr, "%s: at most %d threads\n", argv[0], MAX_THREADS);
        return 2;
    }
    handoff_threshold = ((uint64_t)pct << 32) / 100;
    ops_per_thread = ops / nthreads ? ops / nthreads : 1;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (size_t i = 0; i < nthreads; i++) {
        workers[i].id = i;
        if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i]) != 0)
            bench_fail(prog, "pthread_create failed");
    }
    pthread_barrier_wait(&start);
    double t0 = bench_now();
    uint64_t sent = 0, received = 0, batches = 0;
    for (size_t i = 0; i < nthreads; i++) {
        pthread_join(workers[i].th, NULL);
        sent += workers[i].sent;
        received += workers[i].received;
        batches += workers[i].batches;
    }
    double dt = bench_now() - t0;
    pthread_barrier_destroy(&start);
    for (size_t i = 0; i < nthreads; i++)
        if (atomic_load(&inboxes[i].head))
            bench_fail(prog, "thread %zu's inbox is not empty at the end", i);
    if (sent != received)
        bench_fail(prog, "%llu objects handed off but %llu received",
                   (unsigned long long)sent, (unsigned long long)received);
    printf("threads=%zu\n", nthreads);
    printf("handoff_pct=%ld\n", pct);
    printf("live_per_thread=%zu\n", live_per_thread);
    printf("handed_off=%llu\n", (unsigned long long)sent);
    printf("batches=%llu\n", (unsigned long long)batches);
    bench_report((double)ops_per_thread * nthreads, dt);
    return 0;
}
