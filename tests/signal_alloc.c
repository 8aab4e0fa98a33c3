/* signal_alloc: malloc and free from a signal handler that interrupts malloc and free on the same
 * thread, with rotation every millisecond; objects checked by content (issue #14, item 5).
 *
 *   sp_signal_alloc [--seconds S] [--threads N] [--interval-us U] [--live N] [--seed X]
 *
 * Programs do allocate in signal handlers (crash reporters, profilers).  A handler that runs in
 * the middle of an interrupted malloc or free of its own thread and allocates must not corrupt
 * anything: if the interrupted call had read its thread's private stack and not yet moved the
 * stack's top, or if the handler's read-side section makes the rotation believe that the
 * interrupted one has ended, an object is handed out twice, lost, or freed while still in use.
 *
 * N threads (default 4) churn: they allocate, check and free objects (malloc, calloc,
 * realloc(NULL), realloc to other sizes; random sizes 8 ... 4096, every 32nd large, 16 KiB ...
 * 256 KiB), keeping a live set of --live objects each (default 300), and in between run quick
 * bursts of 16 mallocs of small hot sizes and their frees, so that most of their time is spent
 * inside malloc and free.  Every object is filled with a pattern derived from a serial unique to
 * it (sp_fill: the whole object up to 512 bytes, beyond that its first 256 and last 64 bytes) and
 * verified before it is freed or reallocated (a realloc must keep the pattern of the common
 * prefix), calloc must return zeros, and every pointer a malloc returns is looked up among the
 * thread's live objects (its own set, read by the handler, and the handler's objects, read by
 * the thread): finding it there is a duplicate.
 *
 * Each churning thread has its own POSIX timer (timer_create, SIGEV_THREAD_ID, SIGALRM) firing
 * every --interval-us microseconds (default 20), so signals land at any point of its work, inside
 * malloc and free included.  The handler (SA_RESTART) allocates 1 to 3 objects of sizes 8 ...
 * 1024 (mostly the hot sizes the bursts use: the same private stacks), fills and checks them,
 * frees some at once and keeps the others in a ring of 16 per thread, freed (after a check) by
 * later invocations; it also takes objects the thread hands it and hands objects to the thread,
 * so objects flow both ways between handler and non-handler code of the same thread.
 *
 * Failure: a content mismatch, a duplicate pointer, a calloc that is not zero, an allocation
 * that fails, a crash (the crash handler prints the counts so far), or no progress for 30 s.
 * The first failure stops the run.  At the end it prints per-thread and total counts of handler
 * runs, allocations (by the threads and by the handler) and corruptions; it also fails when the
 * handler ran fewer than 1000 times a second in total (the test would not be testing anything). */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#define MAX_THREADS 16
#define MAX_LIVE 2048
#define SET_SIZE 8192 /* power of two, > 2 * (MAX_LIVE + NBURST) */
#define NBURST 16
#define RING 16

/* object header of hand-over objects (self-describing; >= 32 bytes) */
struct hdr {
    uint64_t serial, size, check, pad;
};

struct obj {
    unsigned char *p;
    size_t n;
    uint64_t serial;
};

struct tstate {
    int id;
    pid_t tid;
    timer_t timer;
    int have_timer;
    volatile sig_atomic_t stopping;   /* the handler returns at once */
    uint64_t rng, hrng, serial, hserial;
    /* the thread's (non-handler) objects; `set` holds their addresses, written only by the
     * thread and read by the handler */
    struct obj live[MAX_LIVE];
    unsigned char *volatile set[SET_SIZE];
    unsigned char *volatile burst[NBURST];
    /* the handler's objects: written only by the handler, read by the thread */
    struct obj ring[RING];
    unsigned char *volatile ring_p[RING];
    /* hand-over slots: thread -> handler, handler -> thread */
    _Atomic(unsigned char *) to_handler, to_thread;
    /* counts */
    _Atomic unsigned long handler_runs, handler_allocs, thread_allocs, progress;
} __attribute__((aligned(128)));

static struct tstate ts[MAX_THREADS];
static __thread struct tstate *me;
static int nthreads = 4, nlive = 300;
static long interval_us = 20;
static double seconds = 10;
static uint64_t seed0;
static atomic_int stop;
static atomic_ulong corruptions, duplicates, other_failures;

/* hot sizes: the bursts and most of the handler's allocations use these classes */
static const size_t hot[] = {8, 16, 24, 32, 48, 64, 96, 128};
#define NHOT (sizeof hot / sizeof hot[0])

/* ---- reporting (also from the handler: no stdio, no allocation) ------------------------------ */

__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...)
{
    static atomic_int printed;
    if (atomic_fetch_add(&printed, 1) >= 20)
        return;
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    if (write(2, buf, (size_t)n) < 0) {
    }
}

static void totals(unsigned long *runs, unsigned long *hallocs, unsigned long *tallocs)
{
    *runs = *hallocs = *tallocs = 0;
    for (int i = 0; i < nthreads; i++) {
        *runs += atomic_load(&ts[i].handler_runs);
        *hallocs += atomic_load(&ts[i].handler_allocs);
        *tallocs += atomic_load(&ts[i].thread_allocs);
    }
}

static void on_crash(int sig)
{
    unsigned long runs, hallocs, tallocs;
    totals(&runs, &hallocs, &tallocs);
    char buf[400];
    int n = snprintf(buf, sizeof buf, "signal_alloc: CRASH: signal %d (%s) in thread %d%s; so "
                     "far: %lu handler runs, %lu allocations by threads, %lu by the handler, %lu "
                     "corruptions, %lu duplicates; seed %llu\n", sig, strsignal(sig),
                     me ? me->id : -1, me ? "" : " (not a churning thread)", runs, tallocs,
                     hallocs, atomic_load(&corruptions), atomic_load(&duplicates),
                     (unsigned long long)seed0);
    if (n > 0 && write(2, buf, (size_t)n) < 0) {
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- patterns ------------------------------------------------------------------------------ */

static uint64_t obj_seed(const void *p, uint64_t serial)
{
    return serial ^ ((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL);
}

static void fill(unsigned char *p, size_t n, uint64_t serial)
{
    uint64_t s = obj_seed(p, serial);
    if (n <= 512) {
        sp_fill(p, n, s);
    } else {
        sp_fill(p, 256, s);
        sp_fill(p + n - 64, 64, s ^ 1);
    }
}

/* offset of the first wrong byte, or -1 */
static long verify(const unsigned char *p, size_t n, uint64_t serial)
{
    uint64_t s = obj_seed(p, serial);
    if (n <= 512)
        return sp_verify(p, n, s);
    long bad = sp_verify(p, 256, s);
    if (bad >= 0)
        return bad;
    bad = sp_verify(p + n - 64, 64, s ^ 1);
    return bad >= 0 ? (long)(n - 64) + bad : -1;
}

/* a realloc'd object: the old pattern in the first m bytes */
static long verify_prefix(const unsigned char *q, size_t m, const unsigned char *old_p,
                          size_t old_n, uint64_t serial)
{
    uint64_t s = obj_seed(old_p, serial);
    size_t k = old_n <= 512 ? m : (m < 256 ? m : 256);
    return sp_verify(q, k, s);
}

static uint64_t hdr_check(const unsigned char *p, uint64_t serial, uint64_t size)
{
    return sp_mix(serial ^ (size << 20) ^ (uint64_t)(uintptr_t)p);
}

static void fill_hdr(unsigned char *p, size_t n, uint64_t serial)
{
    struct hdr h = {serial, n, hdr_check(p, serial, n), 0};
    memcpy(p, &h, sizeof h);
    sp_fill(p + sizeof h, n - sizeof h, obj_seed(p, serial));
}

/* a hand-over object: -1 if intact, else the offset of the first wrong byte */
static long verify_hdr(const unsigned char *p)
{
    struct hdr h;
    memcpy(&h, p, sizeof h);
    if (h.check != hdr_check(p, h.serial, h.size) || h.size < sizeof h || h.size > 4096)
        return 0;
    long bad = sp_verify(p + sizeof h, h.size - sizeof h, obj_seed(p, h.serial));
    return bad >= 0 ? (long)sizeof h + bad : -1;
}

static void corrupted(const char *who, const void *p, size_t n, uint64_t serial, long at)
{
    atomic_fetch_add(&corruptions, 1);
    atomic_store(&stop, 1);
    report("FAIL [seed %llu, thread %d]: %s: object %p (%zu bytes, serial %#llx) corrupted at "
           "byte %ld (handed out twice, or reused while still in use?)",
           (unsigned long long)seed0, me ? me->id : -1, who, p, n, (unsigned long long)serial,
           at);
}

/* ---- the thread's set of live addresses (written by the thread, read by the handler) -------- */

static size_t slot_of(const void *p)
{
    return (size_t)sp_mix((uint64_t)(uintptr_t)p) & (SET_SIZE - 1);
}

static int set_has(struct tstate *t, const void *p)
{
    for (size_t i = slot_of(p);; i = (i + 1) & (SET_SIZE - 1)) {
        const unsigned char *q = t->set[i];
        if (q == NULL)
            return 0;
        if (q == p)
            return 1;
    }
}

static void set_add(struct tstate *t, unsigned char *p)
{
    size_t i = slot_of(p);
    while (t->set[i] != NULL)
        i = (i + 1) & (SET_SIZE - 1);
    t->set[i] = p;
}

/* linear probing, backward-shift deletion: a concurrent reader (the handler, which runs
 * between two of these stores) may miss an entry or see one twice, never see a foreign one */
static void set_del(struct tstate *t, const unsigned char *p)
{
    size_t i = slot_of(p);
    while (t->set[i] != p) {
        if (t->set[i] == NULL)
            return;
        i = (i + 1) & (SET_SIZE - 1);
    }
    for (size_t j = i;;) {
        j = (j + 1) & (SET_SIZE - 1);
        unsigned char *q = t->set[j];
        if (q == NULL)
            break;
        size_t h = slot_of(q);
        /* q may move to i if its home slot h is not in (i, j] (cyclically) */
        if ((i <= j) ? (h <= i || h > j) : (h <= i && h > j)) {
            t->set[i] = q;
            atomic_signal_fence(memory_order_seq_cst);
            i = j;
        }
    }
    t->set[i] = NULL;
}

/* Is p (just returned by malloc) already live somewhere on this thread? Names the holder. */
static const char *live_elsewhere(struct tstate *t, const unsigned char *p, int in_handler)
{
    if (set_has(t, p))
        return "the thread's live set";
    for (int i = 0; i < NBURST; i++)
        if (t->burst[i] == p)
            return "the thread's current burst";
    for (int i = 0; i < RING; i++)
        if (t->ring_p[i] == p)
            return in_handler ? "the handler's ring (same handler!)" : "the handler's ring";
    if (atomic_load_explicit(&t->to_handler, memory_order_relaxed) == p)
        return "the hand-over slot to the handler";
    if (atomic_load_explicit(&t->to_thread, memory_order_relaxed) == p)
        return "the hand-over slot to the thread";
    return NULL;
}

static void duplicate(const char *who, const void *p, size_t n, const char *where)
{
    atomic_fetch_add(&duplicates, 1);
    atomic_store(&stop, 1);
    report("FAIL [seed %llu, thread %d]: %s: malloc(%zu) returned %p, which is still live in %s",
           (unsigned long long)seed0, me ? me->id : -1, who, n, p, where);
}

/* ---- the handler ----------------------------------------------------------------------------- */

static size_t handler_size(uint64_t r)
{
    if (r % 4 != 0)
        return hot[(r >> 8) % NHOT];
    return 8 + (size_t)((r >> 8) % 1017);   /* 8 ... 1024 */
}

static void on_alarm(int sig)
{
    (void)sig;
    struct tstate *t = me;
    if (!t || t->stopping)
        return;
    int saved_errno = errno;
    atomic_fetch_add_explicit(&t->handler_runs, 1, memory_order_relaxed);
    uint64_t r = sp_rand(&t->hrng);
    int k = 1 + (int)(r % 3);
    for (int j = 0; j < k; j++) {
        r = sp_rand(&t->hrng);
        size_t n = handler_size(r);
        int zero = (r >> 40) % 8 == 0;
        unsigned char *p = zero ? calloc(1, n) : malloc(n);
        if (!p) {
            atomic_fetch_add(&other_failures, 1);
            atomic_store(&stop, 1);
            report("FAIL [thread %d]: handler: %s(%zu) returned NULL", t->id,
                   zero ? "calloc" : "malloc", n);
            break;
        }
        atomic_fetch_add_explicit(&t->handler_allocs, 1, memory_order_relaxed);
        const char *where = live_elsewhere(t, p, 1);
        if (where)
            duplicate("handler", p, n, where);
        if (zero)
            for (size_t i = 0; i < n; i++)
                if (p[i]) {
                    atomic_fetch_add(&corruptions, 1);
                    atomic_store(&stop, 1);
                    report("FAIL [thread %d]: handler: calloc(1, %zu) = %p has byte %zu = %#x",
                           t->id, n, (void *)p, i, p[i]);
                    break;
                }
        uint64_t serial = ++t->hserial;
        fill(p, n, serial);
        long bad = verify(p, n, serial);
        if (bad >= 0)
            corrupted("handler (right after its fill)", p, n, serial, bad);
        int slot = (int)((r >> 20) % RING);
        if ((r >> 30) % 2 == 0) {
            free(p);                             /* at once */
        } else {
            struct obj *o = &t->ring[slot];
            if (o->p) {                          /* the slot's previous object */
                unsigned char *q = o->p;
                bad = verify(q, o->n, o->serial);
                if (bad >= 0)
                    corrupted("handler (ring object)", q, o->n, o->serial, bad);
                t->ring_p[slot] = NULL;
                atomic_signal_fence(memory_order_seq_cst);
                o->p = NULL;
                free(q);
            }
            o->p = p;
            o->n = n;
            o->serial = serial;
            atomic_signal_fence(memory_order_seq_cst);
            t->ring_p[slot] = p;
        }
    }
    /* objects the thread handed over: check and free */
    if ((r >> 50) % 4 == 0) {
        unsigned char *q = atomic_exchange(&t->to_handler, NULL);
        if (q) {
            long bad = verify_hdr(q);
            if (bad >= 0)
                corrupted("handler (object from the thread)", q, 0, 0, bad);
            free(q);
        }
    }
    /* an object for the thread */
    if ((r >> 54) % 8 == 0 && atomic_load(&t->to_thread) == NULL) {
        size_t n = 32 + (size_t)((r >> 10) % 993);
        unsigned char *q = malloc(n);
        if (q) {
            atomic_fetch_add_explicit(&t->handler_allocs, 1, memory_order_relaxed);
            const char *where = live_elsewhere(t, q, 1);
            if (where)
                duplicate("handler", q, n, where);
            fill_hdr(q, n, ++t->hserial);
            unsigned char *expect = NULL;
            if (!atomic_compare_exchange_strong(&t->to_thread, &expect, q))
                free(q);
        }
    }
    errno = saved_errno;
}

/* ---- the churning threads ----------------------------------------------------------------- */

static size_t churn_size(uint64_t r)
{
    if (r % 32 == 0)
        return 16384 + (size_t)((r >> 8) % (256 * 1024 - 16384));
    /* a random class, then a size in it: small classes as often as big ones */
    size_t c = (size_t)((r >> 8) % 29);                 /* classes up to 4096 */
    size_t hi = sp_classes[c], lo = c ? sp_classes[c - 1] + 1 : 1;
    size_t n = lo + (size_t)((r >> 16) % (hi - lo + 1));
    return n < 8 ? 8 : n;
}

static void take_from_handler(struct tstate *t)
{
    unsigned char *q = atomic_exchange(&t->to_thread, NULL);
    if (q) {
        long bad = verify_hdr(q);
        if (bad >= 0)
            corrupted("thread (object from the handler)", q, 0, 0, bad);
        free(q);
    }
}

static void new_object(struct tstate *t, struct obj *o, uint64_t r)
{
    size_t n = churn_size(r);
    int how = (int)((r >> 40) % 20);   /* 0-2 calloc, 3 realloc(NULL), else malloc */
    unsigned char *p = how < 3 ? calloc(1, n) : how == 3 ? realloc(NULL, n) : malloc(n);
    if (!p) {
        atomic_fetch_add(&other_failures, 1);
        atomic_store(&stop, 1);
        report("FAIL [thread %d]: allocation of %zu bytes failed", t->id, n);
        return;
    }
    atomic_fetch_add_explicit(&t->thread_allocs, 1, memory_order_relaxed);
    const char *where = live_elsewhere(t, p, 0);
    if (where)
        duplicate("thread", p, n, where);
    if (how < 3)
        for (size_t i = 0; i < n; i++)
            if (p[i]) {
                atomic_fetch_add(&corruptions, 1);
                atomic_store(&stop, 1);
                report("FAIL [thread %d]: calloc(1, %zu) = %p has byte %zu = %#x", t->id, n,
                       (void *)p, i, p[i]);
                break;
            }
    o->serial = ++t->serial;
    o->n = n;
    fill(p, n, o->serial);
    set_add(t, p);
    o->p = p;
}

static void live_op(struct tstate *t)
{
    uint64_t r = sp_rand(&t->rng);
    struct obj *o = &t->live[r % (uint64_t)nlive];
    if (!o->p) {
        new_object(t, o, r >> 8);
        return;
    }
    long bad = verify(o->p, o->n, o->serial);
    if (bad >= 0) {
        corrupted("thread", o->p, o->n, o->serial, bad);
        return;
    }
    int what = (int)((r >> 20) % 10);
    unsigned char *p = o->p;
    set_del(t, p);
    if (what < 6) {                                     /* free */
        o->p = NULL;
        free(p);
    } else if (what < 9) {                              /* realloc to another size */
        size_t n = churn_size(r >> 24);
        o->p = NULL;
        unsigned char *q = realloc(p, n);
        if (!q) {
            atomic_fetch_add(&other_failures, 1);
            atomic_store(&stop, 1);
            report("FAIL [thread %d]: realloc(%p, %zu) failed", t->id, (void *)p, n);
            free(p);
            return;
        }
        atomic_fetch_add_explicit(&t->thread_allocs, 1, memory_order_relaxed);
        if (q != p) {
            const char *where = live_elsewhere(t, q, 0);
            if (where)
                duplicate("thread (realloc)", q, n, where);
        }
        bad = verify_prefix(q, n < o->n ? n : o->n, p, o->n, o->serial);
        if (bad >= 0)
            corrupted("thread (realloc lost the contents)", q, n, o->serial, bad);
        o->serial = ++t->serial;
        o->n = n;
        fill(q, n, o->serial);
        set_add(t, q);
        o->p = q;
    } else {                                            /* to the handler */
        o->p = NULL;
        if (o->n >= sizeof(struct hdr) && o->n <= 4096) {
            fill_hdr(p, o->n, ++t->serial);
            unsigned char *expect = NULL;
            if (atomic_compare_exchange_strong(&t->to_handler, &expect, p))
                return;
        }
        free(p);
    }
}

/* 16 mallocs of hot sizes, then their frees: mostly time inside malloc and free */
static void burst(struct tstate *t)
{
    uint64_t r = sp_rand(&t->rng);
    size_t n = hot[r % NHOT];
    uint64_t base = t->serial;
    t->serial += NBURST;
    for (int i = 0; i < NBURST; i++) {
        unsigned char *p = malloc(n);
        if (!p) {
            atomic_fetch_add(&other_failures, 1);
            atomic_store(&stop, 1);
            report("FAIL [thread %d]: malloc(%zu) failed", t->id, n);
            t->burst[i] = NULL;
            continue;
        }
        const char *where = live_elsewhere(t, p, 0);
        if (where)
            duplicate("thread (burst)", p, n, where);
        sp_fill(p, n, obj_seed(p, base + (uint64_t)i));
        t->burst[i] = p;
    }
    atomic_fetch_add_explicit(&t->thread_allocs, NBURST, memory_order_relaxed);
    int lifo = (int)((r >> 10) & 1);
    for (int k = 0; k < NBURST; k++) {
        int i = lifo ? NBURST - 1 - k : k;
        unsigned char *p = t->burst[i];
        if (!p)
            continue;
        long bad = sp_verify(p, n, obj_seed(p, base + (uint64_t)i));
        if (bad >= 0)
            corrupted("thread (burst)", p, n, base + (uint64_t)i, bad);
        t->burst[i] = NULL;
        atomic_signal_fence(memory_order_seq_cst);
        free(p);
    }
}

static void *churn(void *arg)
{
    struct tstate *t = arg;
    t->tid = (pid_t)syscall(SYS_gettid);
    me = t;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGALRM;
    sev._sigev_un._tid = t->tid;
    if (timer_create(CLOCK_MONOTONIC, &sev, &t->timer) != 0) {
        report("FAIL [thread %d]: timer_create: %s", t->id, strerror(errno));
        atomic_fetch_add(&other_failures, 1);
        atomic_store(&stop, 1);
        return NULL;
    }
    t->have_timer = 1;
    struct itimerspec its = {{interval_us / 1000000, (interval_us % 1000000) * 1000},
                             {0, 1000}};
    timer_settime(t->timer, 0, &its, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);

    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < 8; i++) {
            if (sp_rand(&t->rng) % 8 < 5)
                burst(t);
            else
                live_op(t);
        }
        take_from_handler(t);
        atomic_fetch_add_explicit(&t->progress, 1, memory_order_relaxed);
    }
    /* no more signals, then everything goes (checked) */
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    t->stopping = 1;
    timer_delete(t->timer);
    for (int i = 0; i < nlive; i++) {
        struct obj *o = &t->live[i];
        if (o->p) {
            long bad = verify(o->p, o->n, o->serial);
            if (bad >= 0)
                corrupted("thread (final)", o->p, o->n, o->serial, bad);
            set_del(t, o->p);
            free(o->p);
            o->p = NULL;
        }
    }
    for (int i = 0; i < RING; i++) {
        struct obj *o = &t->ring[i];
        if (o->p) {
            long bad = verify(o->p, o->n, o->serial);
            if (bad >= 0)
                corrupted("thread (handler's ring, final)", o->p, o->n, o->serial, bad);
            t->ring_p[i] = NULL;
            free(o->p);
            o->p = NULL;
        }
    }
    take_from_handler(t);
    unsigned char *q = atomic_exchange(&t->to_handler, NULL);
    if (q) {
        long bad = verify_hdr(q);
        if (bad >= 0)
            corrupted("thread (object for the handler, final)", q, 0, 0, bad);
        free(q);
    }
    return NULL;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void summary(double dt)
{
    unsigned long runs, hallocs, tallocs;
    totals(&runs, &hallocs, &tallocs);
    for (int i = 0; i < nthreads; i++)
        printf("  thread %d: %lu handler runs, %lu allocations by the thread, %lu by the "
               "handler\n", i, atomic_load(&ts[i].handler_runs),
               atomic_load(&ts[i].thread_allocs), atomic_load(&ts[i].handler_allocs));
    printf("  %.1f s: %lu handler runs (%.0f/s), %lu allocations by the threads, %lu by the "
           "handler; %lu corruptions, %lu duplicates, %lu other failures\n", dt, runs,
           runs / dt, tallocs, hallocs, atomic_load(&corruptions), atomic_load(&duplicates),
           atomic_load(&other_failures));
    fflush(stdout);
}

/* A hang: say so, with the counts, and end the process (its threads may hold locks). */
static void hang(const char *what, int thread, double dt)
{
    fprintf(stderr, "FAIL [seed %llu]: thread %d %s: hang (deadlock?)\n",
            (unsigned long long)seed0, thread, what);
    fflush(stderr);
    summary(dt);
    _exit(3);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds S] [--threads N (1-%d)] [--interval-us U] [--live N "
            "(1-%d)] [--seed X]\n", argv0, MAX_THREADS, MAX_LIVE);
    exit(2);
}

int main(int argc, char **argv)
{
    seed0 = sp_seed(0);
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage(argv[0]);
        char *end;
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--seconds"))
            seconds = strtod(v, &end);
        else if (!strcmp(a, "--threads"))
            nthreads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--interval-us"))
            interval_us = strtol(v, &end, 10);
        else if (!strcmp(a, "--live"))
            nlive = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--seed"))
            seed0 = strtoull(v, &end, 0);
        else
            usage(argv[0]);
        if (*end)
            usage(argv[0]);
    }
    if (seconds <= 0 || nthreads < 1 || nthreads > MAX_THREADS || interval_us < 1 ||
        nlive < 1 || nlive > MAX_LIVE)
        usage(argv[0]);
    if (!seed0)
        seed0 = sp_mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)) % 1000000000 + 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *rot = getenv("SYNCPOOL_ROTATE_MS");
    printf("signal_alloc: libsyncpool.so %s, SYNCPOOL_ROTATE_MS=%s; %d threads, %d live objects "
           "each, a SIGALRM every %ld us per thread, %g s; seed %llu (--seed repeats it)\n",
           sp_under_syncpool() ? "loaded" : "NOT loaded", rot ? rot : "(unset)", nthreads,
           nlive, interval_us, seconds, (unsigned long long)seed0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_crash;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);            /* the handler itself is not interrupted by another */
    sigdelset(&sa.sa_mask, SIGSEGV);
    sigdelset(&sa.sa_mask, SIGBUS);
    sigdelset(&sa.sa_mask, SIGABRT);
    sigaction(SIGALRM, &sa, NULL);
    /* main and every thread start with SIGALRM blocked; churning threads unblock it */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &s, NULL);

    pthread_t th[MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        ts[i].id = i;
        ts[i].rng = sp_mix(seed0 + (uint64_t)i * 7919) | 1;
        ts[i].hrng = sp_mix(seed0 ^ ((uint64_t)i << 40)) | 1;
        ts[i].serial = (uint64_t)i << 56;
        ts[i].hserial = ((uint64_t)i << 56) | (1ULL << 55);
        REQUIRE(pthread_create(&th[i], NULL, churn, &ts[i]) == 0, "pthread_create");
    }
    double t0 = sp_now(), last_change = t0;
    unsigned long last_progress[MAX_THREADS] = {0};
    int hung = -1;
    while (!atomic_load(&stop) && sp_now() - t0 < seconds) {
        sp_sleep_ms(50);
        int moved = 1;
        for (int i = 0; i < nthreads; i++) {
            unsigned long p = atomic_load(&ts[i].progress);
            if (p == last_progress[i])
                moved = 0, hung = i;
            last_progress[i] = p;
        }
        if (moved)
            last_change = sp_now();
        else if (sp_now() - last_change > 30)
            hang("made no progress for 30 s", hung, sp_now() - t0);
    }
    double dt = sp_now() - t0;
    atomic_store(&stop, 1);
    /* after a failure a thread may be stuck for good: wait less */
    int wait_s = atomic_load(&corruptions) + atomic_load(&duplicates) +
                 atomic_load(&other_failures) ? 10 : 30;
    for (int i = 0; i < nthreads; i++) {
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_sec += wait_s;
        if (pthread_timedjoin_np(th[i], NULL, &at) != 0)
            hang(wait_s == 10 ? "did not finish within 10 s of the end" :
                                "did not finish within 30 s of the end", i, dt);
    }
    unsigned long runs, hallocs, tallocs;
    totals(&runs, &hallocs, &tallocs);
    summary(dt);
    CHECK(atomic_load(&corruptions) == 0, "%lu corrupted objects (seed %llu)",
          atomic_load(&corruptions), (unsigned long long)seed0);
    CHECK(atomic_load(&duplicates) == 0, "%lu pointers handed out while still live (seed %llu)",
          atomic_load(&duplicates), (unsigned long long)seed0);
    CHECK(atomic_load(&other_failures) == 0, "%lu other failures", atomic_load(&other_failures));
    if (atomic_load(&corruptions) + atomic_load(&duplicates) + atomic_load(&other_failures) == 0)
        CHECK(runs >= (unsigned long)(1000 * dt), "the handler ran only %lu times in %.1f s: "
              "too few signals to test anything", runs, dt);
    return sp_report("signal_alloc");
}
