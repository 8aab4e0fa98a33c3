/* stress: randomised multi-threaded allocator stress (issue #5).
 *
 *   sp_stress [--threads N] [--seconds S] [--seed X] [--live N] [--rotate-now-ms M] [--quiet]
 *
 * N threads (default 8) run a seeded random mix of malloc, calloc, realloc (growing, shrinking,
 * within the same class, to 0), reallocarray, posix_memalign, aligned_alloc, memalign and free
 * over every pooled size (1 ... 14336, every jemalloc small class) and large sizes (up to 2 MiB),
 * plus bursts (allocate up to 1500 objects of one class, then free them all), and hand objects
 * to other threads, which verify them and free them or keep them.
 *
 * Every object carries a pattern that depends on its size, its owner thread and a per-thread
 * sequence number: a header {tag = owner<<48 | seq, size} (objects of 16 bytes or more) and a
 * position-dependent fill of every other byte.  It is verified completely before every free,
 * realloc and hand-over, on receipt by another thread, at random spot checks of live objects,
 * and at the end; a realloc must keep the old pattern in the common prefix; calloc must return
 * zeros; every result must be aligned (8 for n <= 8, else 16, or the requested alignment) and
 * malloc_usable_size() must cover the request.  An object handed out twice, reused while cached,
 * released to jemalloc while a pool still holds it, or overlapping another object, shows up as a
 * pattern mismatch (the report says whose header is found there).
 *
 * The seed is printed at the start and with every failure (SP_SEED=X or --seed X repeats the
 * per-thread operation sequences; thread interleaving is up to the scheduler).  A watchdog fails
 * the run when no thread makes progress for 60 s (hang), and a crash prints the seed too.
 * Exit status 0 only if there was no failure, every thread made progress, objects did cross
 * threads, and (with libsyncpool.so loaded) rotation ran as SYNCPOOL_ROTATE_MS says: at least
 * one rotation when the period is at most half the run, none when it is 0 (and no
 * --rotate-now-ms).  At the end, with the library loaded, two rotations must leave nothing
 * cached (every pooled object was given back to jemalloc: none lost, none counted twice).
 *
 * Runs over any malloc (plain glibc too), so the test itself can be checked without syncpool. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#define MAX_THREADS 256
#define INBOX_CAP 256
#define BATCH 16

struct obj {
    unsigned char *p;
    size_t size;
    uint64_t tag; /* owner << 48 | seq */
};

struct inbox {
    pthread_mutex_t m;
    int n;
    struct obj e[INBOX_CAP];
} __attribute__((aligned(128)));

enum { OP_MALLOC, OP_CALLOC, OP_REALLOC_NULL, OP_REALLOCARRAY, OP_POSIX_MEMALIGN,
       OP_ALIGNED_ALLOC, OP_MEMALIGN, OP_FREE, OP_REALLOC, OP_REALLOC_SAME, OP_REALLOC_0,
       OP_HANDOVER, OP_REFUSED, OP_RECEIVED, OP_SPOT, OP_BURST, NOPS };
static const char *const op_names[NOPS] = {
    "malloc", "calloc", "realloc(NULL)", "reallocarray", "posix_memalign", "aligned_alloc",
    "memalign", "free", "realloc", "realloc(same class)", "realloc(p,0)", "hand-over",
    "hand-over refused (inbox full)", "received", "spot-check", "burst"};

enum { MODE_MIXED, MODE_PRODUCER, MODE_CONSUMER, NMODES };

struct tstate {
    int id;
    unsigned long phases[NMODES];
    int small_phase;
    uint64_t rng;
    uint64_t seq;
    struct obj *live;
    unsigned long ops[NOPS];
    unsigned long calls, allocs, burst_objs;
    unsigned long long bytes;
    struct obj out[BATCH];
    int nout, out_to;
    _Atomic unsigned long progress;
} __attribute__((aligned(128)));

static int nthreads = 8, nlive = 1024, quiet;
static double seconds = 5;
static long rotate_now_ms;
static uint64_t seed0;
static struct inbox inboxes[MAX_THREADS];
static struct tstate ts[MAX_THREADS];
static atomic_int stop, failed;
static atomic_ulong nfail;
static pthread_barrier_t end_barrier;
static unsigned long (*rotate_now)(void);
static unsigned long long (*rotations)(void);
static unsigned long long (*cached_bytes)(void);
static char **g_argv;

/* ---- failure reporting ------------------------------------------------------------------- */

static void print_repro(void)
{
    const char *r = getenv("SYNCPOOL_ROTATE_MS");
    fprintf(stderr, "  reproduce: SYNCPOOL_ROTATE_MS=%s LD_PRELOAD=%s %s --seed %llu --threads %d "
            "--seconds %g --live %d --rotate-now-ms %ld\n", r ? r : "(unset)",
            getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "(none)", g_argv[0],
            (unsigned long long)seed0, nthreads, seconds, nlive, rotate_now_ms);
}

__attribute__((format(printf, 2, 3))) static void fail(struct tstate *t, const char *fmt, ...)
{
    static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
    unsigned long n = atomic_fetch_add(&nfail, 1) + 1;
    atomic_store(&failed, 1);
    atomic_store(&stop, 1);
    if (n > 20)
        return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lk);
    fprintf(stderr, "FAIL [seed %llu, thread %d]: %s\n", (unsigned long long)seed0,
            t ? t->id : -1, msg);
    if (n == 1)
        print_repro();
    fflush(stderr);
    pthread_mutex_unlock(&lk);
}

static void on_crash(int sig)
{
    char buf[200];
    int n = snprintf(buf, sizeof buf, "stress: CRASH: signal %d (%s); seed %llu, %d threads\n",
                     sig, strsignal(sig), (unsigned long long)seed0, nthreads);
    if (n > 0 && write(2, buf, (size_t)n) < 0) {
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- the per-object pattern ---------------------------------------------------------------- */

static uint64_t pat_seed(uint64_t tag) { return sp_mix(tag ^ 0x5f3759df5f3759dfULL); }

static void pat_fill(unsigned char *p, size_t size, uint64_t tag)
{
    if (size >= 16) {
        uint64_t h[2] = {tag, size};
        memcpy(p, h, 16);
        sp_fill(p + 16, size - 16, pat_seed(tag));
    } else {
        sp_fill(p, size, pat_seed(tag));
    }
}

/* Checks the first n bytes of an object of `size` bytes written with pat_fill(.., size, tag).
 * Returns true if intact; otherwise reports (with what is found instead). */
static bool pat_check(struct tstate *t, const unsigned char *p, size_t n, size_t size,
                      uint64_t tag, const char *when)
{
    long bad = -1;
    uint64_t h[2] = {0, 0};
    if (size >= 16) {
        const uint64_t want[2] = {tag, size};
        size_t m = n < 16 ? n : 16;
        memcpy(h, p, m);
        for (size_t i = 0; i < m && bad < 0; i++)
            if (((const unsigned char *)h)[i] != ((const unsigned char *)want)[i])
                bad = (long)i;
        if (bad < 0 && n > 16) {
            long b = sp_verify(p + 16, n - 16, pat_seed(tag));
            if (b >= 0)
                bad = b + 16;
        }
    } else {
        bad = sp_verify(p, n, pat_seed(tag));
    }
    if (bad < 0)
        return true;
    uint64_t fowner = h[0] >> 48, fseq = h[0] & ((1ULL << 48) - 1);
    char found[160] = "";
    if (size >= 16 && n >= 16 && h[0] != tag) {
        if (fowner < (uint64_t)nthreads && fseq > 0)
            snprintf(found, sizeof found, "; its header now names thread %llu seq %llu size %llu "
                     "(another owner: handed out twice or overlapping)",
                     (unsigned long long)fowner, (unsigned long long)fseq,
                     (unsigned long long)h[1]);
        else
            snprintf(found, sizeof found, "; its header now holds %#llx %#llx (overwritten: "
                     "reused or released while in use)", (unsigned long long)h[0],
                     (unsigned long long)h[1]);
    }
    fail(t, "%s: object %p of %zu bytes (owner %llu, seq %llu): pattern broken at byte %ld%s",
         when, (const void *)p, size, (unsigned long long)(tag >> 48),
         (unsigned long long)(tag & ((1ULL << 48) - 1)), bad, found);
    return false;
}

/* ---- sizes and allocation ------------------------------------------------------------------ */

static size_t class_of(size_t n)
{
    for (size_t i = 0; i < SP_NCLASSES; i++)
        if (n <= sp_classes[i])
            return i;
    return SP_NCLASSES;
}

static size_t size_in_class(uint64_t r, size_t ci)
{
    size_t hi = sp_classes[ci], lo = ci ? sp_classes[ci - 1] + 1 : 1;
    return lo + (size_t)(r % (hi - lo + 1));
}

static size_t pick_size(const struct tstate *t, uint64_t r)
{
    if (t->small_phase) /* cheap objects: many more pool operations per second */
        return 1 + (size_t)(r % 512);
    unsigned k = (unsigned)(r % 10000);
    r >>= 14;
    if (k < 6000)                       /* a random class, a random size inside it */
        return size_in_class(r, (size_t)((r >> 20) % SP_NCLASSES));
    if (k < 9500)                       /* small sizes, weighted like real programs */
        return 1 + (size_t)(r % 256);
    if (k < 9950)                       /* just past the pooled range */
        return 14337 + (size_t)(r % 65536);
    if (k < 9995)
        return 80000 + (size_t)(r % 320000);
    return 400000 + (size_t)(r % 1700000); /* up to ~2 MiB */
}

static bool check_new(struct tstate *t, void *p, size_t n, size_t align, const char *what)
{
    if (!p) {
        fail(t, "%s(%zu) returned NULL (errno %d)", what, n, errno);
        return false;
    }
    size_t want = align ? align : (n <= 8 ? 8 : 16);
    if ((uintptr_t)p & (want - 1)) {
        fail(t, "%s(%zu%s): %p is not %zu-aligned", what, n, align ? ", aligned" : "", p, want);
        return false;
    }
    size_t us = malloc_usable_size(p);
    if (us < n) {
        fail(t, "%s(%zu): malloc_usable_size = %zu", what, n, us);
        return false;
    }
    return true;
}

static struct obj new_obj(struct tstate *t, size_t n, int how)
{
    struct obj o = {NULL, n, ((uint64_t)t->id << 48) | ++t->seq};
    void *p = NULL;
    size_t align = 0;
    uint64_t r = sp_rand(&t->rng);
    switch (how) {
    case OP_CALLOC: {
        size_t a = 1, b = n;
        if (n % 4 == 0 && (r & 1)) { a = 4; b = n / 4; }
        p = calloc(a, b);
        if (!check_new(t, p, n, 0, "calloc"))
            break;
        const unsigned char *c = p;
        for (size_t i = 0; i < n; i++)
            if (c[i]) {
                fail(t, "calloc(%zu, %zu) = %p: byte %zu is %#x, not 0", a, b, p, i, c[i]);
                break;
            }
        break;
    }
    case OP_REALLOC_NULL:
        p = realloc(NULL, n);
        check_new(t, p, n, 0, "realloc(NULL)");
        break;
    case OP_REALLOCARRAY:
        p = reallocarray(NULL, 1, n);
        check_new(t, p, n, 0, "reallocarray(NULL, 1)");
        break;
    case OP_POSIX_MEMALIGN: {
        align = sizeof(void *) << (r % 10); /* 8 ... 4096 */
        int rc = posix_memalign(&p, align, n);
        if (rc) {
            fail(t, "posix_memalign(%zu, %zu) = %d", align, n, rc);
            p = NULL;
        } else {
            check_new(t, p, n, align, "posix_memalign");
        }
        break;
    }
    case OP_ALIGNED_ALLOC: {
        align = (size_t)1 << (r % 13);      /* 1 ... 4096 */
        size_t m = (n + align - 1) & ~(align - 1);
        o.size = n = m;
        p = aligned_alloc(align, n);
        check_new(t, p, n, align < 8 ? (n <= 8 ? 8 : 16) : align, "aligned_alloc");
        break;
    }
    case OP_MEMALIGN:
        align = (size_t)16 << (r % 6);      /* 16 ... 512 */
        p = memalign(align, n);
        check_new(t, p, n, align, "memalign");
        break;
    default:
        p = malloc(n);
        check_new(t, p, n, 0, "malloc");
        break;
    }
    t->ops[how]++;
    t->allocs++;
    t->calls++;
    t->bytes += n;
    if (p)
        pat_fill(p, n, o.tag);
    o.p = p;
    return o;
}

static void free_obj(struct tstate *t, struct obj *o, const char *when)
{
    if (pat_check(t, o->p, o->size, o->size, o->tag, when)) {
        free(o->p);
        t->calls++;
    }
    /* a broken object is leaked: freeing it would only produce a crash instead of the report */
    o->p = NULL;
}

static void do_realloc(struct tstate *t, struct obj *o, int kind)
{
    if (!pat_check(t, o->p, o->size, o->size, o->tag, "before realloc")) {
        o->p = NULL;
        return;
    }
    uint64_t r = sp_rand(&t->rng);
    size_t n;
    if (kind == OP_REALLOC_0) {
        void *q = realloc(o->p, 0);
        t->ops[OP_REALLOC_0]++;
        t->calls++;
        if (q) /* glibc 2.36 frees and returns NULL; accept a live minimal block too */
            free(q);
        o->p = NULL;
        return;
    }
    if (kind == OP_REALLOC_SAME && o->size <= 14336)
        n = size_in_class(r, class_of(o->size));
    else
        n = pick_size(t, r);
    unsigned char *q = realloc(o->p, n);
    t->ops[kind]++;
    t->calls++;
    if (!check_new(t, q, n, 0, "realloc")) {
        o->p = NULL;
        return;
    }
    size_t keep = n < o->size ? n : o->size;
    if (!pat_check(t, q, keep, o->size, o->tag, "after realloc (contents kept?)")) {
        o->p = NULL;
        return;
    }
    o->p = q;
    o->size = n;
    o->tag = ((uint64_t)t->id << 48) | ++t->seq;
    t->bytes += n;
    pat_fill(q, n, o->tag);
}

/* ---- hand-over ----------------------------------------------------------------------------- */

static void flush_out(struct tstate *t)
{
    if (!t->nout)
        return;
    struct inbox *ib = &inboxes[t->out_to];
    int i = 0;
    pthread_mutex_lock(&ib->m);
    for (; i < t->nout && ib->n < INBOX_CAP; i++)
        ib->e[ib->n++] = t->out[i];
    pthread_mutex_unlock(&ib->m);
    for (; i < t->nout; i++) { /* the receiver is behind: free it ourselves */
        free_obj(t, &t->out[i], "hand-over refused (inbox full), before free");
        t->ops[OP_REFUSED]++;
    }
    t->nout = 0;
}

static void hand_over(struct tstate *t, struct obj *o)
{
    if (!pat_check(t, o->p, o->size, o->size, o->tag, "before hand-over")) {
        o->p = NULL;
        return;
    }
    if (t->nout == 0) {
        int to = (int)(sp_rand(&t->rng) % (uint64_t)(nthreads - 1));
        t->out_to = to >= t->id ? to + 1 : to;
    }
    t->out[t->nout++] = *o;
    o->p = NULL;
    t->ops[OP_HANDOVER]++;
    if (t->nout == BATCH)
        flush_out(t);
}

static void receive(struct tstate *t, bool keep)
{
    struct obj got[INBOX_CAP];
    struct inbox *ib = &inboxes[t->id];
    pthread_mutex_lock(&ib->m);
    int n = ib->n;
    memcpy(got, ib->e, (size_t)n * sizeof got[0]);
    ib->n = 0;
    pthread_mutex_unlock(&ib->m);
    for (int i = 0; i < n; i++) {
        t->ops[OP_RECEIVED]++;
        if (!pat_check(t, got[i].p, got[i].size, got[i].size, got[i].tag,
                       "received from another thread"))
            continue;
        int k = (int)(sp_rand(&t->rng) % (uint64_t)nlive);
        if (keep && !t->live[k].p && (got[i].tag & 3) == 0)
            t->live[k] = got[i]; /* adopt: later freed, realloc'ed or passed on by us */
        else {
            free(got[i].p);
            t->calls++;
        }
    }
}

/* ---- the worker ---------------------------------------------------------------------------- */

static void burst(struct tstate *t)
{
    static const int nburst = 1500;
    struct obj *v = malloc(sizeof *v * (size_t)nburst);
    if (!v) {
        fail(t, "malloc of the burst array failed");
        return;
    }
    uint64_t r = sp_rand(&t->rng);
    size_t ci = (size_t)(r % SP_NCLASSES);
    int n = 8 + (int)((r >> 8) % (uint64_t)(ci > 24 ? 64 : nburst - 8));
    for (int i = 0; i < n; i++)
        v[i] = new_obj(t, size_in_class(r >> 20, ci), (r >> 40) % 4 ? OP_MALLOC : OP_CALLOC);
    t->burst_objs += (unsigned long)n;
    /* free all (a third handed to another thread), newest or oldest first */
    bool fwd = (r >> 50) & 1;
    for (int j = 0; j < n; j++) {
        struct obj *o = &v[fwd ? j : n - 1 - j];
        if (!o->p)
            continue;
        if (j % 3 == 0 && nthreads > 1)
            hand_over(t, o);
        else
            free_obj(t, o, "burst, before free");
    }
    flush_out(t);
    free(v);
    t->ops[OP_BURST]++;
}

static void *worker(void *arg)
{
    struct tstate *t = arg;
    t->rng = sp_mix(seed0 * 0x9E3779B97F4A7C15ULL + (uint64_t)t->id + 1) | 1;
    t->live = calloc((size_t)nlive, sizeof *t->live);
    if (!t->live) {
        fail(t, "calloc of the live table failed");
        _exit(1);
    }
    double next_rot = sp_now() + rotate_now_ms / 1000.0;
    unsigned long iter = 0;
    int mode = MODE_MIXED;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        iter++;
        uint64_t r = sp_rand(&t->rng);
        if ((iter & 4095) == 0) { /* a new phase: mixed, producer or consumer */
            unsigned m = (unsigned)((r >> 32) % 4);
            mode = m < 2 ? MODE_MIXED : m == 2 ? MODE_PRODUCER : MODE_CONSUMER;
            t->phases[mode]++;
            t->small_phase = (r >> 40) & 1;
        }
        int k = (int)((r >> 8) % (uint64_t)nlive);
        unsigned op = (unsigned)(r % 1000);
        struct obj *o = &t->live[k];
        if (mode == MODE_PRODUCER && o->p && op < 600)
            op = 700;                   /* hand it over instead of freeing it */
        else if (mode == MODE_CONSUMER && o->p && op >= 600 && op < 880)
            op = 100;                   /* free it instead of handing it over */
        if (!o->p) {
            if (mode == MODE_CONSUMER && op < 800)
                ;                       /* consumers allocate less: they free what they get */
            else {
                static const int how[] = {OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_MALLOC,
                                          OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_CALLOC, OP_CALLOC,
                                          OP_REALLOC_NULL, OP_REALLOCARRAY, OP_POSIX_MEMALIGN,
                                          OP_ALIGNED_ALLOC, OP_MEMALIGN, OP_MALLOC};
                *o = new_obj(t, pick_size(t, sp_rand(&t->rng)), how[(r >> 40) % 16]);
            }
        } else if (op < 400) {
            free_obj(t, o, "before free");
            t->ops[OP_FREE]++;
        } else if (op < 520) {
            do_realloc(t, o, OP_REALLOC);
        } else if (op < 600) {
            do_realloc(t, o, OP_REALLOC_SAME);
        } else if (op < 605) {
            do_realloc(t, o, OP_REALLOC_0);
        } else if (op < 880) {
            if (nthreads > 1)
                hand_over(t, o);
        } else if (op < 999) {
            t->ops[OP_SPOT]++;
            pat_check(t, o->p, o->size, o->size, o->tag, "spot check of a live object");
            if (r & (1ULL << 60))
                free(NULL);
        } else {
            burst(t);
        }
        if ((iter & (mode == MODE_CONSUMER ? 7 : 63)) == 0) {
            flush_out(t);
            receive(t, mode != MODE_CONSUMER);
            atomic_store_explicit(&t->progress, iter, memory_order_relaxed);
        }
        if (rotate_now && t->id == 0 && (iter & 255) == 0 && sp_now() >= next_rot) {
            rotate_now();
            next_rot = sp_now() + rotate_now_ms / 1000.0;
        }
    }
    flush_out(t);
    /* Everyone has stopped sending once all threads pass the barrier. */
    pthread_barrier_wait(&end_barrier);
    receive(t, false);
    for (int k = 0; k < nlive; k++)
        if (t->live[k].p)
            free_obj(t, &t->live[k], "final check");
    free(t->live);
    atomic_store_explicit(&t->progress, iter, memory_order_relaxed);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: sp_stress [--threads N] [--seconds S] [--seed X] [--live N] "
            "[--rotate-now-ms M] [--quiet]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    g_argv = argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    seed0 = sp_seed(0);
    bool seed_given = seed0 != 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        char *end;
        errno = 0;
        if (!strcmp(a, "--threads")) nthreads = (int)strtol(v, &end, 0);
        else if (!strcmp(a, "--seconds")) seconds = strtod(v, &end);
        else if (!strcmp(a, "--seed")) { seed0 = strtoull(v, &end, 0); seed_given = true; }
        else if (!strcmp(a, "--live")) nlive = (int)strtol(v, &end, 0);
        else if (!strcmp(a, "--rotate-now-ms")) rotate_now_ms = strtol(v, &end, 0);
        else usage();
        if (*end || errno)
            usage();
    }
    if (nthreads < 1 || nthreads > MAX_THREADS || nlive < 1 || seconds <= 0 || rotate_now_ms < 0)
        usage();
    if (!seed_given) { /* a fresh seed each run, printed so that a failure can be repeated */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        seed0 = sp_mix((uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 20) ^
                       (uint64_t)getpid() << 40) % 1000000000ULL + 1;
    }
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGABRT, on_crash);
    signal(SIGILL, on_crash);
    signal(SIGFPE, on_crash);

    bool lib = sp_under_syncpool();
    if (lib) {
        rotations = (unsigned long long (*)(void))dlsym(RTLD_DEFAULT, "syncpool_rotations");
        cached_bytes = (unsigned long long (*)(void))dlsym(RTLD_DEFAULT, "syncpool_cached_bytes");
        if (rotate_now_ms)
            rotate_now = (unsigned long (*)(void))dlsym(RTLD_DEFAULT, "syncpool_rotate_now");
    }
    const char *renv = getenv("SYNCPOOL_ROTATE_MS");
    printf("stress: seed %llu (repeat with --seed %llu); %d threads, %g s, %d live slots per "
           "thread; libsyncpool.so %s; SYNCPOOL_ROTATE_MS=%s%s\n", (unsigned long long)seed0,
           (unsigned long long)seed0, nthreads, seconds, nlive, lib ? "loaded" : "NOT loaded",
           renv ? renv : "(unset: 100)", rotate_now_ms ? "; plus syncpool_rotate_now()" : "");
    fflush(stdout);

    unsigned long long rot0 = rotations ? rotations() : 0;
    pthread_barrier_init(&end_barrier, NULL, (unsigned)nthreads);
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        pthread_mutex_init(&inboxes[i].m, NULL);
        ts[i].id = i;
    }
    double t0 = sp_now();
    for (int i = 0; i < nthreads; i++) {
        int rc = pthread_create(&th[i], NULL, worker, &ts[i]);
        if (rc) {
            fprintf(stderr, "FAIL: pthread_create: %s\n", strerror(rc));
            return 2;
        }
    }
    /* watchdog: every thread must make progress; report at most every 60 s in long runs */
    unsigned long last[MAX_THREADS] = {0};
    double last_move = sp_now(), next_report = t0 + 60;
    while (!atomic_load(&stop)) {
        sp_sleep_ms(100);
        double now = sp_now();
        bool moved = false;
        for (int i = 0; i < nthreads; i++) {
            unsigned long p = atomic_load_explicit(&ts[i].progress, memory_order_relaxed);
            if (p != last[i]) moved = true;
            last[i] = p;
        }
        if (moved)
            last_move = now;
        else if (now - last_move > 60) {
            fail(NULL, "no thread made progress for 60 s: hang (deadlock?)");
            fflush(stderr);
            _exit(1);
        }
        if (now - t0 >= seconds)
            atomic_store(&stop, 1);
        if (!quiet && seconds >= 120 && now >= next_report) {
            unsigned long ops = 0;
            for (int i = 0; i < nthreads; i++)
                ops += atomic_load_explicit(&ts[i].progress, memory_order_relaxed);
            printf("  ... %.0f s: %lu iterations, rotations %llu, failures %lu\n", now - t0, ops,
                   rotations ? rotations() - rot0 : 0, atomic_load(&nfail));
            next_report += 60;
        }
    }
    /* joining too has a deadline */
    for (int i = 0; i < nthreads; i++) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 60;
        int rc = pthread_timedjoin_np(th[i], NULL, &dl);
        if (rc) {
            fail(NULL, "thread %d did not finish within 60 s of the stop signal (%s): hang", i,
                 strerror(rc));
            fflush(stderr);
            _exit(1);
        }
    }
    double dt = sp_now() - t0;

    unsigned long tot[NOPS] = {0}, allocs = 0, bursts = 0, ops = 0;
    unsigned long long bytes = 0;
    int idle_threads = 0;
    for (int i = 0; i < nthreads; i++) {
        for (int k = 0; k < NOPS; k++)
            tot[k] += ts[i].ops[k];
        allocs += ts[i].allocs;
        bursts += ts[i].burst_objs;
        bytes += ts[i].bytes;
        ops += ts[i].calls;
        if (ts[i].allocs < 100)
            idle_threads++;
    }
    unsigned long long rots = rotations ? rotations() - rot0 : 0;
    printf("stress: %lu allocator calls (%lu allocations, %.1f GiB written, %lu in bursts), "
           "%lu objects passed to and checked by another thread, %llu rotations, %d threads, "
           "%.1f s, %lu failures\n", ops, allocs, (double)bytes / (1 << 30), bursts,
           tot[OP_RECEIVED], rots, nthreads, dt, atomic_load(&nfail));
    if (!quiet) {
        printf("  by kind:");
        for (int k = 0; k < NOPS; k++)
            printf(" %s %lu%s", op_names[k], tot[k], k + 1 < NOPS ? "," : "\n");
    }

    /* the run must have done what it claims */
    if (!atomic_load(&failed)) {
        if (idle_threads)
            fail(NULL, "%d threads made fewer than 100 allocations", idle_threads);
        if (nthreads > 1 && tot[OP_RECEIVED] < 100)
            fail(NULL, "only %lu objects crossed threads", tot[OP_RECEIVED]);
        if (lib) {
            long period = renv ? atol(renv) : 100;
            if (period > 0 && period * 2 <= dt * 1000 && rots == 0)
                fail(NULL, "no rotation in %.1f s with SYNCPOOL_ROTATE_MS=%ld", dt, period);
            if (renv && period == 0 && !rotate_now_ms && rots != 0)
                fail(NULL, "%llu rotations with SYNCPOOL_ROTATE_MS=0", rots);
            /* every pooled object is back with jemalloc after two rotations */
            unsigned long (*rn)(void) =
                (unsigned long (*)(void))dlsym(RTLD_DEFAULT, "syncpool_rotate_now");
            if (rn && cached_bytes) {
                rn();
                rn();
                unsigned long long c = cached_bytes();
                if (c != 0)
                    fail(NULL, "%llu bytes still cached after all threads ended and two "
                         "rotations", c);
            }
        }
    }
    unsigned long nf = atomic_load(&nfail);
    printf("stress: %s (seed %llu)\n", nf ? "FAIL" : "OK", (unsigned long long)seed0);
    return nf ? 1 : 0;
}
