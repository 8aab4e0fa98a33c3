/* The seeds' sync.Pool example (Go), in C with syncpool_pool_*.
 *
 *   cc seeds.c $(pkg-config --cflags --libs syncpool) && ./a.out
 *
 * Go:                                     C:
 *   p := sync.Pool{New: ...}                syncpool_pool_create(&cfg)
 *   p.Get() / p.Put(x)                      syncpool_pool_get(p) / syncpool_pool_put(p, x)
 *   runtime.GC()                            syncpool_rotate_now()
 *
 * What it shows: o1 and o2 come from New; an object put and got again is the same object (o3,
 * o4); an object put before one rotation comes back from the victim (o5, o6); one put before two
 * rotations is gone (dropped with drop_object), so the next Get makes a new one.  The background
 * rotation (SYNCPOOL_ROTATE_MS, 100 ms by default) may add rotations of its own; the program
 * checks the last two steps only when it did not (run it with SYNCPOOL_ROTATE_MS=0 to be sure).
 * Exits 0 when everything is as Go's comments say. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <syncpool.h>

struct object {
    char name[32];
};

static int made, dropped;

static void *new_object(void *arg)
{
    (void)arg;
    made++;
    return calloc(1, sizeof(struct object));
}

static void drop_object(void *obj, void *arg)
{
    (void)arg;
    dropped++;
    free(obj);
}

static int failures;
static void expect(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    failures += !ok;
}

int main(void)
{
    struct syncpool_pool_config cfg = {.new_object = new_object, .drop_object = drop_object,
                                       .object_size_hint = sizeof(struct object),
                                       .name = "seeds-objects"};
    syncpool_pool *p = syncpool_pool_create(&cfg);
    if (!p) {
        perror("syncpool_pool_create");
        return 1;
    }

    struct object *o1 = syncpool_pool_get(p);
    strcpy(o1->name, "object 1");
    struct object *o2 = syncpool_pool_get(p);
    printf("%p------%p-----o1.name=%s\n", (void *)o1, (void *)o2, o1->name);
    expect(o1 != o2 && made == 2, "o1 and o2 are two objects from New");

    struct object *o3 = syncpool_pool_get(p);
    strcpy(o3->name, "object 3");
    syncpool_pool_put(p, o3);
    struct object *o4 = syncpool_pool_get(p);
    printf("%p------%p------o4.name=%s\n", (void *)o3, (void *)o4, o4->name);
    expect(o4 == o3, "Put o3 then Get gives o3 back");

    unsigned long long r0 = syncpool_rotations();
    struct object *o5 = syncpool_pool_get(p);
    strcpy(o5->name, "object 5");
    syncpool_pool_put(p, o5);
    syncpool_rotate_now();                          /* Go: runtime.GC() */
    struct object *o6 = syncpool_pool_get(p);
    printf("%p------%p------o6.name=%s\n", (void *)o5, (void *)o6, o6->name);
    int quiet = syncpool_rotations() == r0 + 1;     /* no background rotation in between */
    if (quiet) expect(o6 == o5, "Put o5, one rotation: Get gives o5 back from the victim");

    syncpool_pool_put(p, o6);
    syncpool_rotate_now();
    syncpool_rotate_now();
    int before = dropped;
    struct object *o7 = syncpool_pool_get(p);
    printf("%p------%p------o7.name=%s\n", (void *)o6, (void *)o7, o7->name);
    expect(o7->name[0] == '\0' && dropped == before + 1,
           "Put o6, two rotations: it was dropped, Get makes a new object");

    syncpool_pool_put(p, o7);
    syncpool_pool_put(p, o4);
    free(o1);                                       /* never put: the program's own */
    free(o2);
    syncpool_pool_destroy(p);
    expect(made == dropped + 2, "destroy dropped what the pool held; o1 and o2 were freed here");
    return failures ? 1 : 0;
}
