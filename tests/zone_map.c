/* zone_map: the zone's page map stays exact when pages change class (docs/design.md, "The zone").
 * Must run with SYNCPOOL_ROTATE_MS=0: the test drives rotation with syncpool_rotate_now().
 *
 * free() takes a pooled object's class from a byte per 4 KiB page, written when the object is
 * handed out.  Pages go from class to class as jemalloc reuses emptied slabs, so for each pair of
 * classes (A, B) below, in rounds:
 *   1. allocate N objects of class A (many slabs' worth), stamp them, free them all;
 *   2. two rotations hand every pooled object back to jemalloc (its slabs empty out);
 *   3. allocate N objects of class B: some land on pages that held A objects (the test checks
 *      that this happened often enough over all pairs, or it proves nothing), and for every one
 *      malloc_usable_size() must be B's size: a stale map byte would say A's;
 *      and no object may be handed out twice (most of these are misses);
 *   4. each B object is filled to its end and freed; then allocating class B again must give
 *      back objects whose usable size is still B's (a Put into the wrong class's pool would
 *      hand out a short object here: the fill of step 3 would overrun it under a checker, and
 *      the size check catches it here).
 * The classes are chosen so that A objects and B objects sit on different page offsets. */
#define _GNU_SOURCE
#include "sp_stats.h"

#include <malloc.h>

#define N 20000

static void *objs[N];
static uintptr_t pages_a[N];   /* first page of each A object, sorted */

static int cmp_uptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static int on_a_page(uintptr_t page)
{
    return bsearch(&page, pages_a, N, sizeof pages_a[0], cmp_uptr) != NULL;
}

static int round_trip(size_t a, size_t b)
{
    size_t ua = 0, ub = 0;
    for (int i = 0; i < N; i++) {
        objs[i] = malloc(a);
        REQUIRE(objs[i] != NULL, "malloc(%zu) failed", a);
        memset(objs[i], 0xa5, a);
        pages_a[i] = (uintptr_t)objs[i] >> 12;
        ua = malloc_usable_size(objs[i]);
    }
    for (int i = 0; i < N; i++)
        free(objs[i]);
    qsort(pages_a, N, sizeof pages_a[0], cmp_uptr);
    syncpool_rotate_now();
    syncpool_rotate_now();

    int reused = 0, wrong = 0;
    for (int i = 0; i < N; i++) {
        objs[i] = malloc(b);
        REQUIRE(objs[i] != NULL, "malloc(%zu) failed", b);
        size_t u = malloc_usable_size(objs[i]);
        if (i == 0) ub = u;
        if (u != ub && wrong++ < 5)
            CHECK(0, "malloc(%zu) #%d at %p: usable size %zu, the first one's was %zu", b, i,
                  objs[i], u, ub);
        memset(objs[i], 0x5a, u);
        reused += on_a_page((uintptr_t)objs[i] >> 12);
    }
    CHECK(ub >= b && ub != ua, "sizes %zu and %zu: usable sizes %zu and %zu", a, b, ua, ub);
    /* Every one distinct (most of these are misses, fresh from the zone). */
    for (int i = 0; i < N; i++)
        pages_a[i] = (uintptr_t)objs[i];
    qsort(pages_a, N, sizeof pages_a[0], cmp_uptr);
    int dup = 0;
    for (int i = 1; i < N; i++)
        dup += pages_a[i] == pages_a[i - 1];
    CHECK(dup == 0, "%zu then %zu: %d objects handed out twice", a, b, dup);
    CHECK(wrong == 0, "%zu then %zu: %d objects with another usable size", a, b, wrong);
    for (int i = 0; i < N; i++)
        free(objs[i]);
    for (int i = 0; i < N; i++) {
        objs[i] = malloc(b);
        size_t u = malloc_usable_size(objs[i]);
        if (u != ub && wrong++ < 5)
            CHECK(0, "malloc(%zu) again #%d at %p: usable size %zu, not %zu", b, i, objs[i], u, ub);
    }
    CHECK(wrong == 0, "%zu then %zu, again: %d objects with another usable size", a, b, wrong);
    for (int i = 0; i < N; i++)
        free(objs[i]);
    syncpool_rotate_now();
    syncpool_rotate_now();
    printf("zone_map: %zu B then %zu B: %d of %d objects of the second class on pages of the "
           "first\n", a, b, reused, N);
    return reused;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("zone_map: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");
    const char *rm = getenv("SYNCPOOL_ROTATE_MS");
    REQUIRE(rm && strcmp(rm, "0") == 0, "run with SYNCPOOL_ROTATE_MS=0 (got %s)", rm ? rm : "unset");
    /* Whether jemalloc reuses the emptied pages for the next class depends on its extent choice;
     * over these pairs it must happen often enough for the test to mean something. */
    int reused = round_trip(48, 80) + round_trip(80, 48) + round_trip(1280, 96) +
                 round_trip(96, 3072) + round_trip(640, 1024) + round_trip(3072, 256);
    CHECK(reused > N / 50, "only %d objects landed on pages of another class (the test needs "
          "page reuse)", reused);
    return sp_report("zone_map");
}
