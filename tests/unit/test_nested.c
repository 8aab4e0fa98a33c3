/* test_nested — the region for allocations nested inside the allocator (pool/nested.h).
 *
 * Single thread: sizes and alignments as asked, usable sizes, a block freed is reused by its
 * list, a block over 64 KiB, and ENOMEM for more than the region.  Then threads allocate and
 * free blocks for a while, each keeping live blocks filled with its own tag and a serial,
 * checked before the block is freed: a block handed to two owners at once (a broken pop, the
 * ABA problem of the lock-free lists) shows as a wrong tag, or as a crash once a list is
 * corrupt.  First 4 threads with 64 live blocks of random sizes and alignments; then 8 threads
 * with 4 live blocks each, all from one list, where preemption between a pop's read of `next`
 * and its CAS is frequent enough that the lists without their tags fail (checked when this was
 * written: a crash within seconds).  Under ThreadSanitizer in CI. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nested.h"

static void test_single(void)
{
    void *a = sp_nested_alloc(1, 0), *b = sp_nested_alloc(100, 0), *c = sp_nested_alloc(100, 256);
    CHECK(a && b && c, "allocations failed");
    CHECK(sp_nested_owns(a) && sp_nested_owns(b) && sp_nested_owns(c), "not in the region");
    CHECK(!sp_nested_owns(&a), "a stack address is in the region");
    CHECK(((uintptr_t)a & 15) == 0 && ((uintptr_t)b & 15) == 0, "not 16-aligned");
    CHECK(((uintptr_t)c & 255) == 0, "not 256-aligned: %p", c);
    CHECK(sp_nested_size(a) >= 1 && sp_nested_size(b) >= 100 && sp_nested_size(c) >= 100,
          "usable sizes %zu %zu %zu", sp_nested_size(a), sp_nested_size(b), sp_nested_size(c));
    memset(b, 0xab, sp_nested_size(b));
    memset(c, 0xcd, sp_nested_size(c));
    sp_nested_free(b);
    void *b2 = sp_nested_alloc(100, 0);
    CHECK(b2 == b, "a freed block of the same list is not reused (%p, %p)", b, b2);
    void *big = sp_nested_alloc(200000, 0);
    CHECK(big && sp_nested_size(big) >= 200000, "a large block");
    if (big) memset(big, 1, 200000);
    sp_nested_free(big);
    errno = 0;
    CHECK(sp_nested_alloc(SP_NESTED_BYTES, 0) == NULL && errno == ENOMEM,
          "more than the region: NULL with ENOMEM");
    sp_nested_free(a);
    sp_nested_free(b2);
    sp_nested_free(c);
}

enum { MAX_T = 8, LIVE = 64 };
static long rounds;
static int live_n;          /* live blocks per thread: LIVE, or 4 for the one-list phase */
static size_t size_spread;  /* sizes 8 .. 8 + size_spread - 1 */
static _Atomic long bad, done_ops;

struct live { uint64_t *p; size_t n; uint64_t tag; };

static void *churn(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (id + 1), serial = 0;
    struct live l[LIVE] = {{0}};
    for (long i = 0; i < rounds; i++) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        struct live *s = &l[rng % (uint64_t)live_n];
        if (s->p) {
            for (size_t k = 0; k < s->n; k++)
                if (s->p[k] != s->tag + k) {
                    atomic_fetch_add(&bad, 1);
                    break;
                }
            sp_nested_free(s->p);
            s->p = NULL;
        } else {
            size_t bytes = 8 + (rng >> 20) % size_spread;
            s->p = sp_nested_alloc(bytes, size_spread > 8 && (rng >> 40) % 4 == 0 ? 64 : 0);
            if (!s->p) {
                atomic_fetch_add(&bad, 1);
                continue;
            }
            s->n = bytes / 8;
            s->tag = (id << 56) | (++serial << 16);
            for (size_t k = 0; k < s->n; k++) s->p[k] = s->tag + k;
        }
        atomic_fetch_add_explicit(&done_ops, 1, memory_order_relaxed);
    }
    for (int k = 0; k < LIVE; k++)
        if (l[k].p) sp_nested_free(l[k].p);
    return NULL;
}

static void run(int threads, int live, size_t spread, long steps)
{
    rounds = steps;
    live_n = live;
    size_spread = spread;
    atomic_store(&bad, 0);
    atomic_store(&done_ops, 0);
    pthread_t th[MAX_T];
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)i);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&bad) == 0, "%ld blocks had another owner's contents (or failed)",
          atomic_load(&bad));
    CHECK(atomic_load(&done_ops) == threads * rounds, "ops %ld", atomic_load(&done_ops));
    printf("nested region: %d threads x %ld alloc/free steps, %d live blocks each\n", threads,
           rounds, live);
}

int main(void)
{
    test_single();
    run(4, LIVE, 3000, check_scale(200000));
    run(MAX_T, 4, 8, check_scale(1000000));
    return check_done();
}
