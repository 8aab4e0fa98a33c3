/* The program's own pools (syncpool_pool_*) through the preloaded library: statistics (the
 * "pools" list of the JSON, with the name escaped, and the table), fork (the child's pool holds
 * the parent's objects and rotates on its own), a signal handler that uses a pool of its own while
 * the interrupted thread is inside another pool or the allocator (exactly once: objects carry a
 * state word), and, with the
 * argument `disabled` (run with SYNCPOOL_DISABLE=1), that a pool without Ps is New and drop.
 * Exits 0 if every check passed. */
#include <signal.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "sp_test.h"
#include <syncpool.h>

enum { OUT = 1, IN = 2, DEAD = 3 };
struct obj { _Atomic int state; int serial; };
static _Atomic long made, dropped, bad;

static void *new_obj(void *arg)
{
    (void)arg;
    struct obj *o = malloc(sizeof *o);
    if (!o) return NULL;
    atomic_init(&o->state, IN);
    o->serial = (int)atomic_fetch_add(&made, 1);
    return o;
}
static void drop_obj(void *x, void *arg)
{
    (void)arg;
    struct obj *o = x;
    if (atomic_exchange(&o->state, DEAD) != IN) atomic_fetch_add(&bad, 1);
    atomic_fetch_add(&dropped, 1);
    free(o);
}
static struct obj *get(syncpool_pool *p)
{
    struct obj *o = syncpool_pool_get(p);
    if (o && atomic_exchange(&o->state, OUT) != IN) atomic_fetch_add(&bad, 1);
    return o;
}
static void put(syncpool_pool *p, struct obj *o)
{
    if (atomic_exchange(&o->state, IN) != OUT) atomic_fetch_add(&bad, 1);
    syncpool_pool_put(p, o);
}

static syncpool_pool *make(const char *name)
{
    struct syncpool_pool_config cfg = {.new_object = new_obj, .drop_object = drop_obj,
                                       .object_size_hint = sizeof(struct obj), .name = name};
    syncpool_pool *p = syncpool_pool_create(&cfg);
    REQUIRE(p != NULL, "create %s", name);
    return p;
}

static char *stats(int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(f != NULL, "open_memstream");
    int rc = json ? syncpool_stats_json(f) : syncpool_stats_print(f);
    fclose(f);
    CHECK(rc == 0, "stats written");
    return buf;
}

static void test_stats(void)
{
    syncpool_pool *p = make("web \"ctx\"\n");
    struct obj *o[10];
    for (int i = 0; i < 10; i++) o[i] = get(p);
    for (int i = 0; i < 10; i++) put(p, o[i]);
    for (int i = 0; i < 10; i++) o[i] = get(p);
    for (int i = 0; i < 10; i++) put(p, o[i]);
    char *j = stats(1);
    const char *q = strstr(j, "\"pools\":[");
    CHECK(q != NULL, "the JSON has a pools list: %s", j);
    const char *e = q ? strstr(q, "{\"name\":\"web \\\"ctx\\\"\\u000a\",\"size\":8,\"gets\":20,"
                                  "\"puts\":20,") : NULL;
    CHECK(e != NULL, "the pool's entry, name escaped, 20 gets and puts: %s", q ? q : "");
    CHECK(e && strstr(e, "\"misses\":10,") && strstr(e, "\"cached_objects\":10}"),
          "10 misses, 10 objects cached: %s", e ? e : "");
    free(j);
    char *t = stats(0);
    CHECK(strstr(t, "\npool ") && strstr(t, "\nweb \\\"ctx\\\"\\x0a"), "the table has the pool: %s",
          t);
    free(t);
    syncpool_pool_destroy(p);
    j = stats(1);
    CHECK(strstr(j, "web") == NULL, "a destroyed pool leaves the statistics");
    free(j);
}

/* The child inherits the parent's pool and what it holds (its own copy), and rotates it. */
static void test_fork(void)
{
    syncpool_pool *p = make("forked");
    struct obj *x = get(p);
    x->serial = 4242;
    put(p, x);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        sp_counts_reset();
        struct obj *y = get(p);
        CHECK(y == x && y->serial == 4242, "the child gets the parent's object");
        put(p, y);
        long d0 = atomic_load(&dropped);
        syncpool_rotate_now();
        syncpool_rotate_now();
        struct obj *z = get(p);               /* ages the private stack: y is dropped */
        CHECK(atomic_load(&dropped) == d0 + 1 && z && z->serial != 4242,
              "two rotations in the child drop it");
        put(p, z);
        syncpool_pool_destroy(p);
        CHECK(atomic_load(&bad) == 0, "no state errors in the child");
        _exit(sp_report("user_pools child"));
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child passed");
    struct obj *y = get(p);
    CHECK(y == x, "the parent still has its object");
    put(p, y);
    syncpool_pool_destroy(p);
}

/* A timer's handler gets and puts on a pool of its own (the header allows that: the code it
 * interrupts never uses that pool), often while main is inside another pool's slow path or the
 * allocator, whose state the handler's slow path must not touch (it then uses New and drop). */
static syncpool_pool *sig_pool;
static _Atomic long handled;
static void on_alarm(int sig)
{
    (void)sig;
    struct obj *a = get(sig_pool), *b = get(sig_pool);
    if (a) put(sig_pool, a);
    if (b) put(sig_pool, b);
    atomic_fetch_add(&handled, 1);
}

static void test_signals(void)
{
    sig_pool = make("signals");
    syncpool_pool *main_pool = make("signals-main");
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct obj *held[24];
    for (long i = 0; i < 3000000 && atomic_load(&handled) < 5000; i++) {
        int n = (int)(i % 24) + 1;
        for (int k = 0; k < n; k++) held[k] = get(main_pool);
        void *m = malloc(48 + (size_t)(i % 200));
        for (int k = 0; k < n; k++) put(main_pool, held[k]);
        free(m);
        if (i % 100000 == 0) syncpool_rotate_now();
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    printf("signals: %ld handlers ran\n", atomic_load(&handled));
    CHECK(atomic_load(&handled) > 0, "the timer fired");
    syncpool_pool_destroy(sig_pool);
    syncpool_pool_destroy(main_pool);
}

/* SYNCPOOL_DISABLE=1: no thread has a P, so get is New and put is drop. */
static void test_disabled(void)
{
    syncpool_pool *p = make("disabled");
    struct obj *a = get(p);
    put(p, a);
    struct obj *b = get(p);
    CHECK(atomic_load(&made) == 2 && atomic_load(&dropped) == 1, "get is New, put is drop");
    put(p, b);
    CHECK(atomic_load(&dropped) == 2, "put is drop");
    syncpool_pool_destroy(p);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "disabled") == 0) {
        test_disabled();
    } else {
        test_stats();
        test_fork();
        test_signals();
    }
    CHECK(atomic_load(&bad) == 0, "%ld objects handed out twice, put twice or dropped while out",
          atomic_load(&bad));
    CHECK(atomic_load(&made) == atomic_load(&dropped), "made %ld, dropped %ld", atomic_load(&made),
          atomic_load(&dropped));
    return sp_report("user_pools");
}
