/* The program pools (syncpool_pool_*, pool/upool.c) on the core, without the shim: Go's
 * TestPool and the seeds' example (New, own Puts first, the victim, gone after two rotations),
 * bad input, the cap, what an exiting or idle thread leaves, destroy, statistics, and a
 * multi-threaded stress with rotation every millisecond in which every object carries a state
 * word that each get, put and drop changes with an exchange: an object handed out twice, put
 * twice, or dropped while out (or used after its drop, which frees it: AddressSanitizer) fails.
 * CI runs it under ThreadSanitizer and AddressSanitizer too. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "unit_thread.h"
#include "pool.h"
#include "rotate.h"
#include "syncpool.h"
#include "upool.h"

enum { ST_OUT = 0x07, ST_IN = 0x1a, ST_DEAD = 0xdd };

struct obj {
    _Atomic uint32_t state;
    uint32_t canary;
    long serial;
};
#define CANARY 0x5eed900du

static _Atomic long made, dropped, bad;

static void *new_obj(void *arg)
{
    struct obj *o = be_alloc(sizeof *o, 0);
    if (!o) return NULL;
    atomic_store(&o->state, ST_OUT);
    o->canary = CANARY;
    o->serial = atomic_fetch_add(&made, 1) + 1;
    if (arg) atomic_fetch_add((_Atomic long *)arg, 1);
    return o;
}

static void drop_obj(void *x, void *arg)
{
    struct obj *o = x;
    if (atomic_exchange(&o->state, ST_DEAD) != ST_IN || o->canary != CANARY) atomic_fetch_add(&bad, 1);
    o->canary = 0;
    atomic_fetch_add(&dropped, 1);
    be_free(o);
}

/* The program's side of get and put: the state must go IN -> OUT -> IN. */
static struct obj *get(syncpool_pool *p)
{
    struct obj *o = syncpool_pool_get(p);
    if (o && (atomic_exchange(&o->state, ST_OUT) == ST_DEAD || o->canary != CANARY))
        atomic_fetch_add(&bad, 1);
    return o;
}
static void put(syncpool_pool *p, struct obj *o)
{
    if (atomic_exchange(&o->state, ST_IN) != ST_OUT) atomic_fetch_add(&bad, 1);
    syncpool_pool_put(p, o);
}

static syncpool_pool *make(size_t hint, size_t cap, const char *name)
{
    struct syncpool_pool_config cfg = {.new_object = new_obj, .drop_object = drop_obj,
                                       .object_size_hint = hint, .max_cached_bytes_per_p = cap,
                                       .name = name};
    syncpool_pool *p = syncpool_pool_create(&cfg);
    CHECK(p != NULL, "create %s", name);
    return p;
}

struct pool_stats { struct sp_class_stats st; const char *name; int found; };
static void find_stats(const char *name, const struct sp_class_stats *s, void *arg)
{
    struct pool_stats *ps = arg;
    if (strcmp(name, ps->name) == 0) {
        ps->st = *s;
        ps->found++;
    }
}
static struct sp_class_stats stats_of(const char *name)
{
    struct pool_stats ps = {.name = name};
    sp_upools_each_stats(find_stats, &ps);
    CHECK(ps.found == 1, "pool %s in the statistics %d times", name, ps.found);
    return ps.st;
}

/* The seeds' example, in C: New makes o1 and o2; Put o3 then Get gives o3; Put o5, rotate, Get
 * gives o5 (from the victim); Put o6, two rotations, Get gives a new object (o6 was dropped). */
static void test_seeds_example(void)
{
    syncpool_pool *p = make(0, 0, "seeds");   /* no size: Go's single private slot */
    long m0 = atomic_load(&made), d0 = atomic_load(&dropped);
    struct obj *o1 = get(p), *o2 = get(p);
    CHECK(o1 && o2 && o1 != o2 && atomic_load(&made) == m0 + 2, "o1, o2 from New");
    put(p, o1);
    struct obj *o3 = get(p);
    CHECK(o3 == o1, "Put then Get gives the same object");
    put(p, o3);
    sp_rotate_once();
    struct obj *o5 = get(p);
    CHECK(o5 == o1, "after one rotation, Get finds the object in the victim");
    put(p, o5);
    sp_rotate_once();
    sp_rotate_once();
    /* It was on this thread's private stack, which the rotation leaves alone: this thread's next
     * call drops it, as Go's two poolCleanups would have. */
    struct obj *o6 = get(p);
    CHECK(atomic_load(&dropped) == d0 + 1, "after two rotations the object was dropped (%ld)",
          atomic_load(&dropped) - d0);
    /* (o6 may reuse o1's memory: drop_obj freed it.) */
    CHECK(o6 && o6->serial == m0 + 3, "a Get after two rotations calls New (serial %ld)",
          o6 ? o6->serial : -1);
    /* Own Puts first: with a private slot and a shared chain, the newest comes back first. */
    put(p, o2);
    put(p, o6);
    struct obj *a = get(p), *b = get(p);
    CHECK(a && b && a != b && (a == o6 || a == o2) && (b == o6 || b == o2), "both come back");
    put(p, a);
    put(p, b);
    struct sp_class_stats s = stats_of("seeds");
    CHECK(s.gets == 7 && s.puts == 7 && s.misses == 3 && s.hits_victim == 1 && s.released == 1 &&
              s.cached_objects == 2,
          "stats: gets %llu puts %llu misses %llu victim %llu released %llu cached %llu",
          (unsigned long long)s.gets, (unsigned long long)s.puts, (unsigned long long)s.misses,
          (unsigned long long)s.hits_victim, (unsigned long long)s.released,
          (unsigned long long)s.cached_objects);
    syncpool_pool_destroy(p);
    CHECK(atomic_load(&dropped) == d0 + 3, "destroy drops what the pool held");
    syncpool_pool_destroy(p);                 /* twice: ignored (the header says so) */
}

static void test_bad_input(void)
{
    errno = 0;
    CHECK(syncpool_pool_create(NULL) == NULL && errno == EINVAL, "create(NULL): EINVAL");
    struct syncpool_pool_config cfg = {.object_size_hint = 4096, .max_cached_bytes_per_p = 100};
    errno = 0;
    CHECK(syncpool_pool_create(&cfg) == NULL && errno == EINVAL, "a cap below one object: EINVAL");
    CHECK(syncpool_pool_get(NULL) == NULL, "get(NULL)");
    syncpool_pool_put(NULL, &cfg);            /* ignored */
    /* No New: a miss is NULL; Put(NULL) is ignored. */
    struct syncpool_pool_config bare = {.name = "bare"};
    syncpool_pool *p = syncpool_pool_create(&bare);
    CHECK(p && syncpool_pool_get(p) == NULL, "a pool without New misses with NULL");
    syncpool_pool_put(p, NULL);
    CHECK(syncpool_pool_get(p) == NULL, "Put(NULL) is ignored");
    int x;
    syncpool_pool_put(p, &x);
    CHECK(syncpool_pool_get(p) == &x, "any pointer may be pooled");
    syncpool_pool_destroy(p);
}

/* The cap: with 64-byte objects and 1 KiB per P, one P keeps 16 objects; the 17th put is
 * dropped at once. */
static void test_cap(void)
{
    syncpool_pool *p = make(64, 1024, "cap");
    long d0 = atomic_load(&dropped);
    struct obj *o[20];
    for (int i = 0; i < 20; i++) o[i] = get(p);
    for (int i = 0; i < 20; i++) put(p, o[i]);
    CHECK(atomic_load(&dropped) - d0 == 4, "20 puts over a cap of 16: 4 dropped (%ld)",
          atomic_load(&dropped) - d0);
    struct sp_class_stats s = stats_of("cap");
    CHECK(s.cached_objects == 16 && s.cached_bytes == 16 * 64, "16 cached (%llu)",
          (unsigned long long)s.cached_objects);
    syncpool_pool_destroy(p);
    CHECK(atomic_load(&dropped) - d0 == 20, "destroy dropped the rest");
}

/* A thread that puts a burst and exits: its private objects go to its shared chain, where this
 * thread steals them; after two rotations without use the pool holds nothing. */
struct burst { syncpool_pool *p; int n; struct obj **o; };
static void *burst_thread(void *arg)
{
    struct burst *b = arg;
    attach();
    for (int i = 0; i < b->n; i++) b->o[i] = get(b->p);
    for (int i = 0; i < b->n; i++) put(b->p, b->o[i]);
    detach();
    return NULL;
}

static void test_exit_and_idle(void)
{
    enum { N = 100 };
    syncpool_pool *p = make(256, 0, "burst");
    struct obj *o[N];
    struct burst b = {p, N, o};
    pthread_t th;
    pthread_create(&th, NULL, burst_thread, &b);
    pthread_join(th, NULL);
    CHECK(stats_of("burst").cached_objects == N, "the exited thread's objects are cached");
    /* A steal from the exited thread's P finds them, its private ones included. */
    int got = 0;
    struct obj *back[N];
    for (int i = 0; i < N; i++) {
        back[i] = get(p);
        for (int j = 0; j < N; j++) got += back[i] == o[j];
    }
    CHECK(got == N, "all %d objects came back (%d)", N, got);
    for (int i = 0; i < N; i++) put(p, back[i]);
    long d0 = atomic_load(&dropped);
    /* This thread is now idle: two rotations drop everything but its private stack. */
    sp_rotate_once();
    sp_rotate_once();
    uint64_t left = stats_of("burst").cached_objects;
    CHECK(left <= 8, "after two rotations the idle thread keeps only its private stack (%llu)",
          (unsigned long long)left);
    CHECK(atomic_load(&dropped) - d0 == (long)(N - left), "the rest was dropped");
    /* Once it calls the pool again, the stack ages too. */
    struct obj *x = get(p);
    CHECK(x && stats_of("burst").cached_objects == 0, "its next get ages the stack");
    put(p, x);
    syncpool_pool_destroy(p);
}

/* ---- stress: exactly once, under rotation every millisecond ------------------------------ */

#define T 6
static long stress_iters = 1000000;
static syncpool_pool *stress_pool[2];

static void *stress_thread(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint64_t r = 0x9e3779b97f4a7c15ull * (id + 1);
    struct obj *held[16];
    int nheld = 0;
    attach();
    for (long i = 0; i < stress_iters; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        syncpool_pool *p = stress_pool[r & 1];
        if (nheld < 16 && ((r >> 8) & 3) != 0) {
            struct obj *o = get(p);
            if (o) held[nheld++] = o;
        } else if (nheld) {
            /* Put to either pool: objects are interchangeable (and the cross puts exercise
             * another P's chains and the victim). */
            put(p, held[--nheld]);
        }
        if ((r >> 20) % 4096 == 0) sched_yield();
    }
    while (nheld) put(stress_pool[0], held[--nheld]);
    detach();
    return NULL;
}

static void test_stress(void)
{
    stress_pool[0] = make(sizeof(struct obj), 4096, "stress0");
    stress_pool[1] = make(0, 0, "stress1");
    sp_rotator_configure(1, false);
    sp_rotator_user_add();
    sp_rotator_arm();   /* the thread runs from here (the shim arms it when the pools are warm) */
    pthread_t th[T];
    for (uintptr_t i = 0; i < T; i++) pthread_create(&th[i], NULL, stress_thread, (void *)i);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    sp_rotator_user_drop();
    sp_rotator_stop();
    struct sp_class_stats a = stats_of("stress0"), b = stats_of("stress1");
    syncpool_pool_destroy(stress_pool[0]);
    syncpool_pool_destroy(stress_pool[1]);
    CHECK(atomic_load(&bad) == 0, "%ld objects seen twice, used after drop or dropped while out",
          atomic_load(&bad));
    CHECK(atomic_load(&made) == atomic_load(&dropped), "made %ld, dropped %ld",
          atomic_load(&made), atomic_load(&dropped));
    printf("stress: %d threads x %ld ops, %llu rotations; gets %llu (private %llu, shared %llu, "
           "steals %llu, victim %llu, new %llu), dropped %llu\n",
           T, stress_iters, (unsigned long long)sp_rotations(),
           (unsigned long long)(a.gets + b.gets),
           (unsigned long long)(a.hits_private + b.hits_private),
           (unsigned long long)(a.hits_shared + b.hits_shared),
           (unsigned long long)(a.steals + b.steals),
           (unsigned long long)(a.hits_victim + b.hits_victim),
           (unsigned long long)(a.misses + b.misses),
           (unsigned long long)(a.released + b.released));
    CHECK(a.steals + b.steals > 0 && a.hits_victim + b.hits_victim > 0,
          "the stress reached steals and the victim");
}

int main(void)
{
    be_init();
    sp_max_size = sp_sizeclass_init(SP_MAX_POOLED);
    CHECK(sp_pool_init(64 * 1024), "pool init");
    stress_iters = check_scale(stress_iters);
    attach();
    test_seeds_example();
    test_bad_input();
    test_cap();
    test_exit_and_idle();
    detach();
    test_stress();
    CHECK(atomic_load(&bad) == 0, "state errors: %ld", atomic_load(&bad));
    CHECK(atomic_load(&made) == atomic_load(&dropped), "every object made was dropped once");
    sp_rotate_once();
    sp_rotate_once();
    sp_chain_retired_free(sp_chain_retired_take());
    return check_done();
}
