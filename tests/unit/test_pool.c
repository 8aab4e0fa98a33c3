/* The pool core without the shim: Go's TestPool semantics, victim ageing, the per-P cap, P id
 * recycling, stealing, and a multi-threaded stress with rotation every millisecond in which every
 * object must be handed to exactly one owner at a time.  CI runs it under ThreadSanitizer and
 * under AddressSanitizer (whose leak check also proves that rotation releases every object). */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "unit_thread.h"
#include "pool.h"
#include "rotate.h"
#include "stats.h"

#define CACHE_BYTES (64 * 1024)

static unsigned cls48;

static struct sp_class_stats stats_of(unsigned c)
{
    struct sp_class_stats s[SP_MAX_CLASSES];
    sp_stats_collect(s);
    return s[c];
}

static void *obj(void) { return be_alloc(sp_class_size[cls48], 0); }

/* Gets everything the pool still has for class c (from this thread's view) and frees it. */
static long drain(unsigned c)
{
    long n = 0;
    void *x;
    while ((x = sp_pool_get(c))) {
        be_free(x);
        n++;
    }
    return n;
}

static void test_pool_order(void)
{
    /* TestPool, with a private stack of k objects that hands all of itself to the shared head
     * when full and takes back batches of b = (k + 1) / 2 when empty: Put o[0..k+1] -> the first
     * k fill the stack; Put o[k] finds it full, moves o[0..k) to the shared head with one head
     * add and takes o[k]; o[k+1] goes on the stack too.  The Gets return o[k+1], o[k] (the
     * stack), then o[k-1] .. o[0]: each time the stack is empty it takes the shared chain's
     * newest b (or what is left) with one CAS, hands out the newest and keeps the rest.  Newest
     * first throughout; two shared hits for k = 7 (batches of 4 and 3). */
    unsigned k = sp_priv_cap[cls48], b = sp_priv_batch[cls48];
    CHECK(k == SP_PRIV_MAX && b == (SP_PRIV_MAX + 1) / 2,
          "class 48 keeps %u private objects, refilled %u at a time, want %d and %d", k, b,
          SP_PRIV_MAX, (SP_PRIV_MAX + 1) / 2);
    CHECK(sp_pool_get(cls48) == NULL, "empty pool returned an object");
    void *o[SP_PRIV_MAX + 2];
    struct sp_class_stats s0 = stats_of(cls48);
    for (unsigned i = 0; i < k + 2; i++) CHECK(sp_pool_put(cls48, o[i] = obj()), "put refused");
    struct sp_own *own = &sp_self.pb->own[cls48];
    CHECK(own->count == k && sp_chain_len(own->head) == k,
          "after %u Puts the shared chain holds %u (count %u), want the whole stack, %u", k + 2,
          sp_chain_len(own->head), own->count, k);
    unsigned shared_hits = 0;
    for (unsigned i = 0; i < k + 2; i++) {
        unsigned w = k + 1 - i;
        unsigned before = own->count;
        void *g = sp_pool_get(cls48);
        CHECK(g == o[w], "Get %u: %p, want o[%u]=%p", i, g, w, o[w]);
        if (own->count != before) {            /* a refill: the batch, its newest handed out */
            unsigned want = before < b ? before : b;
            shared_hits++;
            CHECK(before - own->count == want && (want == 1 || sp_self.pc->top[cls48][-1] ==
                                                                   o[w - 1]),
                  "Get %u refilled %u (want %u), stack top %p (want o[%u])", i,
                  before - own->count, want, sp_self.pc->top[cls48][-1], w - 1);
        }
    }
    CHECK(shared_hits == (k + b - 1) / b, "%u refills, want %u", shared_hits, (k + b - 1) / b);
    void *g = sp_pool_get(cls48);
    CHECK(g == NULL, "Get %u: %p, want none", k + 2, g);
    struct sp_class_stats s1 = stats_of(cls48);
    CHECK(s1.hits_private - s0.hits_private == k + 2 - shared_hits &&
              s1.hits_shared - s0.hits_shared == shared_hits && s1.puts - s0.puts == k + 2,
          "hits_private +%llu (want %u), hits_shared +%llu (want %u), puts +%llu",
          (unsigned long long)(s1.hits_private - s0.hits_private), k + 2 - shared_hits,
          (unsigned long long)(s1.hits_shared - s0.hits_shared), shared_hits,
          (unsigned long long)(s1.puts - s0.puts));
    for (unsigned i = 0; i < k + 2; i++) be_free(o[i]);
    /* From 2 KiB up a class keeps Go's single private object; the cap bounds the stack too. */
    for (unsigned c = 0; c < sp_nclasses; c++) {
        unsigned want = SP_PRIV_BYTES / sp_class_size[c];
        if (want > SP_PRIV_MAX) want = SP_PRIV_MAX;
        if (want > sp_cap[c]) want = sp_cap[c];
        if (want < 1) want = 1;
        CHECK(sp_priv_cap[c] == want, "class %u B keeps %u private objects, want %u",
              sp_class_size[c], sp_priv_cap[c], want);
        unsigned batch = want > 1 ? (want + 1) / 2 : 0;   /* 0: Go's single private slot */
        CHECK(sp_priv_batch[c] == batch, "class %u B refills %u at a time, want %u",
              sp_class_size[c], sp_priv_batch[c], batch);
    }
}

static void test_victim(void)
{
    /* 100 Puts; after one rotation a Get still finds one (victim); after a second, nothing. */
    void *objs[100];
    for (int i = 0; i < 100; i++) {
        objs[i] = obj();
        CHECK(sp_pool_put(cls48, objs[i]), "put %d refused", i);
    }
    struct sp_class_stats s0 = stats_of(cls48);
    sp_rotate_once();
    void *x = sp_pool_get(cls48);
    bool found = false;
    for (int i = 0; i < 100; i++) found |= x == objs[i];
    CHECK(found, "after one rotation Get returned %p, not one of the 100", x);
    struct sp_class_stats s1 = stats_of(cls48);
    CHECK(s1.hits_victim == s0.hits_victim + 1, "hits_victim %llu -> %llu",
          (unsigned long long)s0.hits_victim, (unsigned long long)s1.hits_victim);
    uint64_t released = sp_rotate_once();
    CHECK(released == 99, "second rotation released %llu, want 99", (unsigned long long)released);
    CHECK(sp_pool_get(cls48) == NULL, "after two rotations the pool is not empty");
    struct sp_class_stats s2 = stats_of(cls48);
    CHECK(s2.released == s1.released + 99, "released %llu -> %llu",
          (unsigned long long)s1.released, (unsigned long long)s2.released);
    CHECK(s2.cached_bytes == 0, "cached_bytes %llu after two rotations",
          (unsigned long long)s2.cached_bytes);
    be_free(x);
}

static void test_drain_unique(void)
{
    /* TestPoolRelease with drain: every object comes back exactly once, then the pool is empty. */
    enum { N = 500 };
    void *objs[N], *got[N];
    for (int i = 0; i < N; i++) sp_pool_put(cls48, objs[i] = obj());
    int n = 0;
    void *x;
    while (n < N && (x = sp_pool_get(cls48))) got[n++] = x;
    CHECK(n == N, "got %d of %d back", n, N);
    CHECK(sp_pool_get(cls48) == NULL, "pool not empty after draining");
    int dups = 0, strangers = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0, mine = 0;
        for (int j = 0; j < n; j++) seen += got[j] == got[i];
        for (int j = 0; j < N; j++) mine += objs[j] == got[i];
        dups += seen != 1;
        strangers += mine != 1;
    }
    CHECK(dups == 0 && strangers == 0, "%d duplicates, %d unknown objects", dups, strangers);
    for (int i = 0; i < n; i++) be_free(got[i]);
    CHECK(stats_of(cls48).cached_bytes == 0, "cached_bytes not 0 after draining");
}

static void test_cap(void)
{
    /* One P caches at most cap objects per class.  A Put past the cap is taken, and the oldest
     * part of the full private stack (a batch of b, at least 1) goes back to the backend: the
     * pool then holds between cap - b + 1 and cap objects, and every Put is either still
     * cached or was released (counted), newest kept. */
    uint32_t cap = sp_cap[cls48], b = sp_priv_batch[cls48] ? sp_priv_batch[cls48] : 1;
    CHECK(cap == CACHE_BYTES / 48, "cap %u", cap);
    struct sp_class_stats s0 = stats_of(cls48);
    long accepted = 0;
    void *newest = NULL;
    for (uint32_t i = 0; i < cap + 100; i++) {
        void *x = newest = obj();
        if (sp_pool_put(cls48, x)) accepted++;
        else be_free(x);
    }
    struct sp_class_stats s1 = stats_of(cls48);
    uint64_t released = s1.released - s0.released;
    CHECK(accepted == (long)cap + 100, "accepted %ld of %u Puts", accepted, cap + 100);
    CHECK(released % b == 0 && released >= 100 && released <= 100 + b - 1,
          "released %llu past the cap (batches of %u, want 100 .. %u)",
          (unsigned long long)released, b, 100 + b - 1);
    void *first = sp_pool_get(cls48);
    CHECK(first == newest, "the first Get after the flushes is not the newest Put");
    if (first) be_free(first);
    long left = drain(cls48) + (first != NULL);
    CHECK(left == (long)(cap + 100 - released), "drained %ld, want %llu (Puts not released)", left,
          (unsigned long long)(cap + 100 - released));
}

static void *put_and_exit(void *arg)
{
    attach();
    sp_pool_put(cls48, arg);
    detach();
    return NULL;
}

static void test_recycled_p(void)
{
    /* My P is 0.  Give it up; a thread takes id 0, caches x privately, exits; I take id 0 back and
     * find x: objects stay with the P id, not the thread. */
    uint32_t my = sp_self.proc->id;
    detach();
    void *x = obj();
    pthread_t t;
    pthread_create(&t, NULL, put_and_exit, x);
    pthread_join(t, NULL);
    attach();
    CHECK(sp_self.proc->id == my, "did not get my id back (%u vs %u)", sp_self.proc->id, my);
    void *y = sp_pool_get(cls48);
    CHECK(y == x, "the next owner of the P did not find its cached object (%p vs %p)", y, x);
    be_free(y);
}

/* Threads that each Put k + 1 objects (k: the private stack's size) and wait: the last Put moves
 * the full stack, objs[0 .. k), to the shared chain, where it can be stolen; objs[k] stays
 * private. */
static pthread_barrier_t bar_cached, bar_done;
static void *cache_stack_and_wait(void *arg)
{
    void **objs = arg;
    attach();
    for (unsigned i = 0; i <= sp_priv_cap[cls48]; i++) sp_pool_put(cls48, objs[i]);
    pthread_barrier_wait(&bar_cached);
    pthread_barrier_wait(&bar_done);
    detach();
    return NULL;
}

static void test_steal_many_ps(void)
{
    /* 70 other Ps (more than one chunk of ids): every shared object is stolen, none lost, and
     * no private one.  A steal takes half of what a ring holds, rounded up, at most SP_STEAL_MAX:
     * a ring of b = k takes `ops` steals to empty. */
    enum { T = 70 };
    unsigned k = sp_priv_cap[cls48], b = k, ops = 0;
    for (unsigned left = b; left; ops++) {
        unsigned half = (left + 1) / 2;
        left -= half < SP_STEAL_MAX ? half : SP_STEAL_MAX;
    }
    pthread_t th[T];
    void *cached[T][SP_PRIV_MAX + 1];
    pthread_barrier_init(&bar_cached, NULL, T + 1);
    pthread_barrier_init(&bar_done, NULL, T + 1);
    for (int i = 0; i < T; i++) {
        for (unsigned j = 0; j <= k; j++) cached[i][j] = obj();
        pthread_create(&th[i], NULL, cache_stack_and_wait, cached[i]);
    }
    pthread_barrier_wait(&bar_cached);
    struct sp_class_stats s0 = stats_of(cls48);
    int stolen = 0, wrong = 0;
    void *x;
    while ((x = sp_pool_get(cls48))) {
        int ok = 0;
        for (int i = 0; i < T; i++)
            for (unsigned j = 0; j < b; j++) ok += x == cached[i][j];
        wrong += ok != 1;
        stolen++;
        be_free(x);
    }
    CHECK(stolen == T * (int)b && wrong == 0, "stole %d (want %d), %d not a shared object",
          stolen, T * (int)b, wrong);
    CHECK(stats_of(cls48).steals - s0.steals == (uint64_t)T * ops, "steals +%llu, want %u",
          (unsigned long long)(stats_of(cls48).steals - s0.steals), T * ops);
    pthread_barrier_wait(&bar_done);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    /* The private objects stay with their (now free) P ids until two rotations. */
    sp_rotate_once();
    sp_rotate_once();
    CHECK(stats_of(cls48).cached_bytes == 0, "private objects not released by rotation");
    pthread_barrier_destroy(&bar_cached);
    pthread_barrier_destroy(&bar_done);
}

/* ---- stress: ownership hand-over under rotation -------------------------------------------- */

enum { ST_FREE = 0, ST_POOLED = 1 };
struct tracked { _Atomic int state; _Atomic int owner; };
static _Atomic long stress_errors;
static long stress_iters;

/* The malloc front end's Get and Put (pool.h, sp_pool_alloc and sp_pool_free), which odd-numbered
 * stress threads use instead of sp_pool_get / sp_pool_put: the backend behind the pools then
 * runs under the sanitizers too.  A Get that ends in a miss returns a fresh backend object:
 * *fresh says so (my P's miss counter moved). */
static void *shim_get(size_t c, bool *fresh)
{
    uint64_t *misses = &sp_self.proc->cnt[SP_C_MISS][c];
    uint64_t m0 = __atomic_load_n(misses, __ATOMIC_RELAXED);
    void *x = sp_pool_alloc(c);
    *fresh = x && __atomic_load_n(misses, __ATOMIC_RELAXED) != m0;
    return x;
}

static void *stress_thread(void *arg)
{
    int me = (int)(intptr_t)arg;
    unsigned seed = 12345u + (unsigned)me;
    attach();
    enum { HOLD = 512 };
    struct tracked *held[HOLD] = {0};
    for (long i = 0; i < stress_iters; i++) {
        /* Phases of 2048 ops that mostly Get, then mostly Put: the live set and the pool swing
         * between empty and HOLD, past the private stack both ways. */
        unsigned r = (unsigned)rand_r(&seed);
        bool getting = (i >> 11) & 1, want_get = (r & 7) < 6 ? getting : !getting;
        int k = (int)((r >> 3) % HOLD);
        for (int probe = 0; probe < HOLD && (held[k] != NULL) == want_get; probe++)
            k = (k + 1) % HOLD;
        if (held[k]) {
            struct tracked *t = held[k];
            atomic_store(&t->owner, -1);
            atomic_store(&t->state, ST_POOLED);
            if (!(me & 1 ? (sp_pool_free(cls48, t), true) : sp_pool_put(cls48, t))) {
                atomic_store(&t->state, ST_FREE);
                be_free(t);
            }
            held[k] = NULL;
        } else {
            bool fresh = false;
            struct tracked *t = me & 1 ? shim_get(cls48, &fresh) : sp_pool_get(cls48);
            if (t && !fresh) {
                /* It must have been in the pool, and now it is mine alone. */
                if (atomic_exchange(&t->state, ST_FREE) != ST_POOLED ||
                    atomic_exchange(&t->owner, me) != -1)
                    atomic_fetch_add(&stress_errors, 1);
            } else {
                if (!t) t = be_alloc(sp_class_size[cls48], 0);
                atomic_init(&t->state, ST_FREE);
                atomic_init(&t->owner, me);
            }
            held[k] = t;
        }
    }
    for (int k = 0; k < HOLD; k++)
        if (held[k]) be_free(held[k]);
    detach();
    return NULL;
}

static void test_stress_rotation(void)
{
    enum { T = 4 };
    stress_iters = check_scale(400000);
    sp_rotator_configure(1, false);
    sp_self.state = SP_T_BUSY;
    sp_rotator_user_add();
    sp_self.state = SP_T_ACTIVE;
    sp_rotator_arm();   /* the thread runs from here (the shim arms it when the pools are warm) */
    uint64_t r0 = sp_rotations();
    pthread_t th[T];
    for (int i = 0; i < T; i++) pthread_create(&th[i], NULL, stress_thread, (void *)(intptr_t)i);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    sp_rotator_stop();
    CHECK(atomic_load(&stress_errors) == 0, "%ld objects handed to two owners",
          atomic_load(&stress_errors));
    CHECK(sp_rotations() > r0, "no rotation happened during the stress");
    struct sp_class_stats st = stats_of(cls48);
    CHECK(st.hits_shared > 0, "the stress never refilled a private stack from a shared chain");
    sp_rotate_once();
    sp_rotate_once();
    CHECK(stats_of(cls48).cached_bytes == 0, "objects left after two final rotations");
    printf("stress: %d threads x %ld ops, %llu rotations, %llu shared hits, %llu steals\n", T,
           stress_iters, (unsigned long long)(sp_rotations() - r0),
           (unsigned long long)st.hits_shared, (unsigned long long)st.steals);
}

int main(void)
{
    be_init();
    sp_max_size = sp_sizeclass_init(SP_MAX_POOLED);
    CHECK(sp_max_size == SP_MAX_POOLED && sp_nclasses == 36, "classes: max %zu, %u classes",
          sp_max_size, sp_nclasses);
    cls48 = sp_size_class(48);
    CHECK(sp_class_size[cls48] == 48 && sp_size_class(33) == cls48 && sp_size_class(49) != cls48,
          "class of 48");
    CHECK(sp_pool_init(CACHE_BYTES), "pool init");
    attach();
    test_pool_order();
    test_victim();
    test_drain_unique();
    test_cap();
    test_recycled_p();
    test_steal_many_ps();
    test_stress_rotation();
    detach();
    /* Leave nothing behind for the leak checker: everything cached goes back. */
    sp_rotate_once();
    sp_rotate_once();
    sp_chain_retired_free(sp_chain_retired_take());
    return check_done();
}
