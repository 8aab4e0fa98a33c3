/* A buffer pool shared by 8 threads: 4 KiB to 64 KiB scratch buffers, one syncpool_pool per
 * power-of-two size (as Go programs keep a sync.Pool of bytes.Buffer).
 *
 *   cc -O2 -pthread buffers.c $(pkg-config --cflags --libs syncpool) && ./a.out [rounds]
 *
 * Each thread, `rounds` times: takes a buffer of a random size from its pool, fills it with its
 * own pattern, checks the pattern and puts the buffer back; every 16th buffer it keeps for a
 * while and hands to the next thread's mailbox, which puts it back into the pool (a put on
 * another P).  Every buffer carries a header whose state word each get and put change with an
 * exchange: a buffer handed to two threads at once, or put twice, is reported.  Then the program
 * stops using the pools and waits: within two rotation periods (SYNCPOOL_ROTATE_MS) every buffer
 * the pools held must have been dropped (drop_object frees it), and it prints how long that took.
 * Exits 0 if every check passed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <syncpool.h>

#define THREADS 8
#define NSIZES 5                         /* 4, 8, 16, 32, 64 KiB */
#define MIN_SHIFT 12

enum { OUT = 1, IN = 2 };
struct buf {
    _Atomic int state;
    size_t size;
    unsigned char data[];
};

static syncpool_pool *pools[NSIZES];
static _Atomic long made, dropped, errors;

static void *new_buf(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    struct buf *b = malloc(sizeof *b + size);
    if (!b) return NULL;
    atomic_init(&b->state, IN);          /* get() below turns it OUT */
    b->size = size;
    atomic_fetch_add(&made, 1);
    return b;
}

static void drop_buf(void *obj, void *arg)
{
    struct buf *b = obj;
    if (atomic_load(&b->state) != IN || b->size != (size_t)(uintptr_t)arg) atomic_fetch_add(&errors, 1);
    atomic_fetch_add(&dropped, 1);
    free(b);
}

static struct buf *get(int k)
{
    struct buf *b = syncpool_pool_get(pools[k]);
    if (b && atomic_exchange(&b->state, OUT) != IN) atomic_fetch_add(&errors, 1);
    return b;
}

static void put(int k, struct buf *b)
{
    if (atomic_exchange(&b->state, IN) != OUT) atomic_fetch_add(&errors, 1);
    syncpool_pool_put(pools[k], b);
}

static long rounds = 200000;
static struct buf *_Atomic mailbox[THREADS];
static pthread_barrier_t done;

static void *worker(void *arg)
{
    int id = (int)(uintptr_t)arg;
    uint64_t r = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
    for (long i = 0; i < rounds; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int k = (int)(r % NSIZES);
        struct buf *b = get(k);
        if (!b) {
            atomic_fetch_add(&errors, 1);
            continue;
        }
        /* A little work: write the thread's pattern at both ends, then read it back. */
        unsigned char tag = (unsigned char)(id * 31 + i);
        memset(b->data, tag, 256);
        memset(b->data + b->size - 256, tag, 256);
        if (b->data[0] != tag || b->data[b->size - 1] != tag || b->size != (size_t)1 << (MIN_SHIFT + k))
            atomic_fetch_add(&errors, 1);
        if (i % 16 == 0) {
            /* To the next thread, which puts it back from its own P. */
            struct buf *old = atomic_exchange(&mailbox[(id + 1) % THREADS], b);
            if (old) put((int)__builtin_ctzl(old->size) - MIN_SHIFT, old);
            old = atomic_exchange(&mailbox[id], NULL);
            if (old) put((int)__builtin_ctzl(old->size) - MIN_SHIFT, old);
        } else {
            put(k, b);
        }
    }
    /* Once every thread is done, each puts back what its mailbox holds: when the threads have
     * exited, only their pools' shared chains hold buffers (an exiting thread moves its private
     * cache there), and those the rotation drops. */
    pthread_barrier_wait(&done);
    struct buf *old = atomic_exchange(&mailbox[id], NULL);
    if (old) put((int)__builtin_ctzl(old->size) - MIN_SHIFT, old);
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc > 1) rounds = atol(argv[1]);
    for (int k = 0; k < NSIZES; k++) {
        char name[32];
        size_t size = (size_t)1 << (MIN_SHIFT + k);
        snprintf(name, sizeof name, "buffers-%zuk", size >> 10);
        struct syncpool_pool_config cfg = {.new_object = new_buf, .drop_object = drop_buf,
                                           .arg = (void *)(uintptr_t)size,
                                           .object_size_hint = sizeof(struct buf) + size,
                                           .name = name};
        if (!(pools[k] = syncpool_pool_create(&cfg))) {
            perror("syncpool_pool_create");
            return 1;
        }
    }
    pthread_barrier_init(&done, NULL, THREADS);
    double t0 = now();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    double t1 = now();
    long m = atomic_load(&made);
    printf("%d threads x %ld buffers in %.3f s: %ld made by New (%.2f%% of gets)\n", THREADS,
           rounds, t1 - t0, m, 100.0 * (double)m / ((double)rounds * THREADS));

    /* Idle: the rotation drops what the pools still hold (the threads have exited, so no private
     * cache keeps anything; this thread never used the pools). */
    unsigned long long r0 = syncpool_rotations();
    while (atomic_load(&dropped) < atomic_load(&made) && now() - t1 < 10) {
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    unsigned long long rotations = syncpool_rotations() - r0;
    printf("idle: %ld of %ld buffers dropped after %.3f s and %llu rotations\n",
           atomic_load(&dropped), atomic_load(&made), now() - t1, rotations);
    int ok = atomic_load(&dropped) == atomic_load(&made) && atomic_load(&errors) == 0;
    /* Two rotations, plus one that was in progress when the threads were done.  Counted only
     * when the period is long enough for this polling to see each one (the default, 100 ms). */
    const char *period = getenv("SYNCPOOL_ROTATE_MS");
    if ((!period || atol(period) >= 20) && rotations > 3) {
        printf("FAIL: more than two rotations (plus the one in progress) before the pools emptied\n");
        ok = 0;
    }
    for (int k = 0; k < NSIZES; k++) syncpool_pool_destroy(pools[k]);
    printf("%s: %ld errors, %ld made, %ld dropped\n", ok ? "ok" : "FAIL", atomic_load(&errors),
           atomic_load(&made), atomic_load(&dropped));
    return ok ? 0 : 1;
}
