/* oom: out of memory under a small RLIMIT_AS (issue #5).
 *
 *   sp_oom [HEADROOM_MIB]           driver: runs every scenario in a fresh child process
 *   sp_oom --scenario NAME HEADROOM one scenario (the driver runs these)
 *
 * Each scenario runs in its own process (exec'ed by the driver, with the driver's LD_PRELOAD
 * and SYNCPOOL_* environment), which sets RLIMIT_AS to its current size plus HEADROOM_MIB
 * (default 96) after its threads, stdio and the pools are set up.  A fresh process per
 * scenario because jemalloc does not give address space that one size has exhausted back to
 * other sizes (with or without syncpool; see docs/reliability.md).  Scenarios:
 *   malloc-N (N = 16, 48, 256, 4096, 14336: pooled classes; 100000, 1 MiB: large), calloc-48,
 *   calloc-1M, memalign-200, memalign-1M (posix_memalign(64)), aligned-64K (aligned_alloc 4096):
 *     allocate (touching the first and last bytes) until the allocator says no; the failure
 *     must be NULL with errno ENOMEM (posix_memalign: returns ENOMEM and leaves *memptr alone)
 *     and come after at least 4 MiB; every block keeps its stamp; all are freed; then half as
 *     many blocks of the same kind must succeed again.
 *   realloc: a block grown by doubling until realloc returns NULL/ENOMEM; the old block must
 *     still hold its contents.  strings: with memory exhausted, strdup and asprintf fail cleanly.
 *   threads: 4 threads (started before the limit) allocate random pooled sizes until they fail,
 *     free half, 20 rounds each, while rotation runs: every failure NULL/ENOMEM, every block
 *     intact; then, all freed, the same mix must allocate at least half of round 1's count.
 *     Run with MALLOC_CONF=narenas:1: Debian's jemalloc 5.3 itself segfaults when a thread on
 *     another arena has to grow while the address space is exhausted (docs/reliability.md).
 * The driver checks that each child exits 0 within 120 s, is not killed by a signal, and
 * printed its "ok" line.  Runs over any malloc. */
#define _GNU_SOURCE
#include "sp_test.h"
#include "sp_scenario.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define MAXBLK (8u << 20) /* pointer slots (in an mmap'ed array, outside the allocator) */

static void **blk;
static size_t *blk_size;

static long vm_kib(void)
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld", &pages) != 1)
        pages = -1;
    fclose(f);
    return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* stamp: first and last 8 bytes (or the first byte) hold a value derived from the index */
static void stamp(void *p, size_t n, size_t i)
{
    uint64_t v = sp_mix(i + 1);
    if (n >= 16) {
        memcpy(p, &v, 8);
        memcpy((char *)p + n - 8, &v, 8);
    } else {
        *(unsigned char *)p = (unsigned char)v;
    }
}

static int stamp_ok(const void *p, size_t n, size_t i)
{
    uint64_t v = sp_mix(i + 1), a, b;
    if (n >= 16) {
        memcpy(&a, p, 8);
        memcpy(&b, (const char *)p + n - 8, 8);
        return a == v && b == v;
    }
    return *(const unsigned char *)p == (unsigned char)v;
}

enum kind { K_MALLOC, K_CALLOC, K_MEMALIGN, K_ALIGNED };

static void *alloc_kind(enum kind k, size_t n, int *err)
{
    void *p = NULL;
    errno = 0;
    switch (k) {
    case K_MALLOC:
        p = malloc(n);
        break;
    case K_CALLOC:
        p = calloc(1, n);
        if (p && ((unsigned char *)p)[n - 1]) {
            CHECK(0, "calloc(1, %zu): last byte not zero", n);
        }
        break;
    case K_MEMALIGN: {
        void *sentinel = (void *)0x1234;
        p = sentinel;
        int rc = posix_memalign(&p, 64, n);
        if (rc) {
            CHECK(rc == ENOMEM, "posix_memalign(64, %zu) returned %d, expected ENOMEM", n, rc);
            CHECK(p == sentinel, "posix_memalign failed but changed *memptr to %p", p);
            *err = rc;
            return NULL;
        }
        CHECK(((uintptr_t)p & 63) == 0, "posix_memalign(64): %p", p);
        break;
    }
    case K_ALIGNED:
        p = aligned_alloc(4096, n);
        if (p)
            CHECK(((uintptr_t)p & 4095) == 0, "aligned_alloc(4096): %p", p);
        break;
    }
    *err = errno;
    return p;
}

static const char *const kind_name[] = {"malloc", "calloc", "posix_memalign(64)",
                                        "aligned_alloc(4096)"};

/* Allocates up to max blocks of kind k into blk[], stamping each; returns how many succeeded
 * (*err: errno of the failure). */
static size_t alloc_blocks(enum kind k, size_t n, size_t max, int *err)
{
    size_t i = 0;
    for (; i < max; i++) {
        void *p = alloc_kind(k, n, err);
        if (!p)
            break;
        stamp(p, n, i);
        blk[i] = p;
        blk_size[i] = n;
    }
    return i;
}

/* Allocates until failure; returns the count. */
static size_t fill(enum kind k, size_t n, const char *what)
{
    int err = 0;
    size_t i = alloc_blocks(k, n, MAXBLK, &err);
    CHECK(i < MAXBLK, "%s: %zu blocks and no failure: is the limit in place?", what, i);
    CHECK(err == ENOMEM, "%s: failed after %zu blocks with errno %d (%s), expected ENOMEM", what,
          i, err, strerror(err));
    CHECK(i * n >= (4u << 20), "%s: failed after only %zu blocks (%zu KiB)", what, i,
          i * n / 1024);
    return i;
}

static void release(size_t count, const char *what)
{
    size_t bad = 0;
    for (size_t i = 0; i < count; i++) {
        if (!stamp_ok(blk[i], blk_size[i], i))
            bad++;
        free(blk[i]);
        blk[i] = NULL;
    }
    CHECK(bad == 0, "%s: %zu of %zu blocks lost their stamp", what, bad, count);
}

/* Memory stays exhausted for a while (the background rotation keeps running meanwhile), as in
 * a program that keeps going near its limit: small requests may fail, nothing may crash. */
static void hold_exhausted(const char *what)
{
    unsigned long got = 0, failed = 0;
    for (int i = 0; i < 30; i++) {
        sp_sleep_ms(10);
        errno = 0;
        void *p = malloc(16 + (size_t)i * 100);
        if (p) {
            got++;
            free(p);
        } else {
            failed++;
            CHECK(errno == ENOMEM, "%s: malloc while exhausted failed with errno %d", what,
                  errno);
        }
    }
    (void)got;
    (void)failed;
}

static void one_kind(enum kind k, size_t n)
{
    char what[80];
    snprintf(what, sizeof what, "%s(%zu)", kind_name[k], n);
    size_t count = fill(k, n, what);
    hold_exhausted(what);
    release(count, what);
    /* Works again: half as many blocks of the same kind.  Freed memory can take a moment to
     * become reusable (syncpool's rotation thread purges jemalloc's dirty pages every
     * max(1 s, 2 rotation periods), the zone's over max(500 ms, 2 periods), and a failed
     * allocation purges at once; jemalloc alone decays them over seconds), so a short
     * attempt is retried for up to 3 s; the first attempt's count is printed too. */
    size_t again = count / 2, i = 0, first = 0;
    int err = 0, tries = 0;
    double t0 = sp_now();
    for (;;) {
        i = alloc_blocks(k, n, again, &err);
        if (tries++ == 0)
            first = i;
        if (i == again || sp_now() - t0 > 3)
            break;
        release(i, what);
        sp_sleep_ms(50);
    }
    CHECK(i == again, "%s: after freeing everything only %zu of %zu allocations succeed "
          "(errno %d), even after %.1f s", what, i, again, err, sp_now() - t0);
    release(i, what);
    printf("%s failed cleanly (NULL, ENOMEM) after %zu blocks (%zu MiB); after freeing them, "
           "%zu of %zu again at once, %zu after %.2f s\n", what, count, count * n >> 20, first,
           again, i, sp_now() - t0);
}

static void realloc_growth(void)
{
    size_t n = 1 << 16;
    char *p = malloc(n);
    REQUIRE(p != NULL, "malloc(64 KiB) before the realloc test");
    sp_fill(p, n, 77);
    for (;;) {
        errno = 0;
        char *q = realloc(p, n * 2);
        if (!q) {
            CHECK(errno == ENOMEM, "realloc(%zu) failed with errno %d, expected ENOMEM", n * 2,
                  errno);
            CHECK(sp_verify(p, n, 77) < 0, "realloc failed and the old block (%zu bytes) lost "
                  "its contents", n);
            break;
        }
        CHECK(sp_verify(q, n, 77) < 0, "realloc to %zu lost the contents", n * 2);
        sp_fill(q, n * 2, 77); /* the same pattern, now over the whole block */
        p = q;
        n *= 2;
        if (n > ((size_t)1 << 40)) {
            CHECK(0, "realloc grew to %zu bytes: is the limit in place?", n);
            break;
        }
    }
    printf("realloc growth stopped at %zu MiB with NULL/ENOMEM, old block intact\n", n >> 20);
    free(p);
}

static void string_functions(void)
{
    /* fill memory with 1 MiB blocks, leaving little, then strdup/asprintf of big strings */
    size_t n = 1 << 20, count = fill(K_MALLOC, n, "malloc(1 MiB) before strdup");
    static char big[4 << 20];
    memset(big, 'x', sizeof big - 1);
    errno = 0;
    char *s = strdup(big);
    CHECK(s == NULL && errno == ENOMEM, "strdup(4 MiB) with memory exhausted: %p, errno %d",
          (void *)s, errno);
    free(s);
    char *a = NULL;
    int rc = asprintf(&a, "%s", big);
    CHECK(rc == -1, "asprintf(4 MiB) with memory exhausted returned %d", rc);
    if (rc >= 0)
        free(a);
    release(count, "malloc(1 MiB) before strdup");
    printf("strdup and asprintf of 4 MiB failed cleanly with memory exhausted\n");
}

/* ---- threads -------------------------------------------------------------------------------- */

#define NTH 4
#define TSLOTS (1u << 20)
static pthread_barrier_t go;
static atomic_ulong t_fail_ok, t_fail_bad, t_corrupt, t_first_round, t_again;

static size_t pooled_size(uint64_t *rng)
{
    size_t s = sp_classes[sp_rand(rng) % SP_NCLASSES];
    return s - sp_rand(rng) % (s / 2 + 1);
}

static void *thread_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    void **mine = mmap(NULL, TSLOTS * sizeof(void *), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    size_t *sz = mmap(NULL, TSLOTS * sizeof(size_t), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    for (int i = 0; i < 2000; i++) /* set this thread up in the allocator */
        free(malloc((size_t)i * 7 % 14336 + 1));
    pthread_barrier_wait(&go); /* the limit is set after this */
    pthread_barrier_wait(&go);
    if (mine == MAP_FAILED || sz == MAP_FAILED) {
        atomic_fetch_add(&t_fail_bad, 1);
        return NULL;
    }
    const size_t tag = (size_t)id << 40;
    uint64_t rng = (uint64_t)id * 7919 + 1;
    size_t n = 0;
    for (int round = 0; round < 20; round++) {
        while (n < TSLOTS) {
            size_t s = pooled_size(&rng);
            errno = 0;
            void *p = malloc(s);
            if (!p) {
                atomic_fetch_add(errno == ENOMEM ? &t_fail_ok : &t_fail_bad, 1);
                break;
            }
            stamp(p, s, n + tag);
            mine[n] = p;
            sz[n++] = s;
        }
        if (round == 0)
            atomic_fetch_add(&t_first_round, n);
        /* free a random half (swap-remove), checking stamps */
        size_t target = n / 2;
        while (n > target) {
            size_t k = (size_t)(sp_rand(&rng) % n);
            if (!stamp_ok(mine[k], sz[k], k + tag))
                atomic_fetch_add(&t_corrupt, 1);
            free(mine[k]);
            mine[k] = mine[--n];
            sz[k] = sz[n];
            if (k < n) { /* the last block moved to slot k: check it, restamp it for k */
                if (!stamp_ok(mine[k], sz[k], n + tag))
                    atomic_fetch_add(&t_corrupt, 1);
                stamp(mine[k], sz[k], k + tag);
            }
        }
    }
    for (size_t k = 0; k < n; k++) {
        if (!stamp_ok(mine[k], sz[k], k + tag))
            atomic_fetch_add(&t_corrupt, 1);
        free(mine[k]);
    }
    pthread_barrier_wait(&go); /* everything is freed in every thread */
    /* works again: the same mix, until failure */
    for (n = 0; n < TSLOTS; n++) {
        void *p = malloc(sz[n] = pooled_size(&rng));
        if (!p)
            break;
        stamp(p, sz[n], n + tag);
        mine[n] = p;
    }
    atomic_fetch_add(&t_again, n);
    pthread_barrier_wait(&go); /* nobody frees before everybody has failed */
    for (size_t k = 0; k < n; k++) {
        if (!stamp_ok(mine[k], sz[k], k + tag))
            atomic_fetch_add(&t_corrupt, 1);
        free(mine[k]);
    }
    munmap(mine, TSLOTS * sizeof(void *));
    munmap(sz, TSLOTS * sizeof(size_t));
    return NULL;
}

/* ---- scenarios and driver ------------------------------------------------------------------ */

static void set_limit(long headroom_mib)
{
    sp_sleep_ms(20); /* let the rotation thread settle too */
    long vm = vm_kib();
    REQUIRE(vm > 0, "cannot read /proc/self/statm");
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(vm + headroom_mib * 1024) * 1024;
    REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS): %s", strerror(errno));
}

static int scenario(const char *name, long headroom_mib)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("[%s] ", name); /* stdio's buffer exists before the limit */
    blk = mmap(NULL, MAXBLK * sizeof(void *), PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    blk_size = mmap(NULL, MAXBLK * sizeof(size_t), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(blk != MAP_FAILED && blk_size != MAP_FAILED, "mmap of the pointer arrays");
    for (int i = 0; i < 2000; i++)
        free(malloc((size_t)i * 13 % 14336 + 1));

    static const struct { const char *name; enum kind k; size_t n; } kinds[] = {
        {"malloc-16", K_MALLOC, 16},         {"malloc-48", K_MALLOC, 48},
        {"malloc-256", K_MALLOC, 256},       {"malloc-4096", K_MALLOC, 4096},
        {"malloc-14336", K_MALLOC, 14336},   {"malloc-100000", K_MALLOC, 100000},
        {"malloc-1M", K_MALLOC, 1 << 20},    {"calloc-48", K_CALLOC, 48},
        {"calloc-1M", K_CALLOC, 1 << 20},    {"memalign-200", K_MEMALIGN, 200},
        {"memalign-1M", K_MEMALIGN, 1 << 20}, {"aligned-64K", K_ALIGNED, 1 << 16}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(name, kinds[i].name)) {
            set_limit(headroom_mib);
            one_kind(kinds[i].k, kinds[i].n);
            goto done;
        }
    if (!strcmp(name, "realloc")) {
        set_limit(headroom_mib);
        realloc_growth();
    } else if (!strcmp(name, "strings")) {
        set_limit(headroom_mib);
        string_functions();
    } else if (!strcmp(name, "threads")) {
        pthread_barrier_init(&go, NULL, NTH + 1);
        pthread_t th[NTH];
        for (int i = 0; i < NTH; i++)
            REQUIRE(pthread_create(&th[i], NULL, thread_main, (void *)(intptr_t)i) == 0,
                    "pthread_create");
        pthread_barrier_wait(&go);
        set_limit(headroom_mib);
        pthread_barrier_wait(&go);
        pthread_barrier_wait(&go);
        pthread_barrier_wait(&go);
        for (int i = 0; i < NTH; i++)
            pthread_join(th[i], NULL);
        printf("%d threads x 20 rounds: %lu clean failures (NULL/ENOMEM), %lu other failures, "
               "%lu corrupted blocks; round 1 %lu blocks, after freeing all %lu blocks\n", NTH,
               (unsigned long)t_fail_ok, (unsigned long)t_fail_bad, (unsigned long)t_corrupt,
               (unsigned long)t_first_round, (unsigned long)t_again);
        CHECK(t_fail_ok >= NTH * 20, "threads: only %lu clean out-of-memory failures",
              (unsigned long)t_fail_ok);
        CHECK(t_fail_bad == 0, "threads: %lu failures without ENOMEM", (unsigned long)t_fail_bad);
        CHECK(t_corrupt == 0, "threads: %lu blocks corrupted", (unsigned long)t_corrupt);
        CHECK(t_again * 2 >= t_first_round, "threads: after freeing everything only %lu blocks "
              "(round 1: %lu)", (unsigned long)t_again, (unsigned long)t_first_round);
    } else {
        fprintf(stderr, "unknown scenario %s\n", name);
        return 2;
    }
done:
    if (sp_failures() == 0)
        printf("[%s] ok\n", name);
    return sp_failures() ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--scenario"))
        return scenario(argv[2], atol(argv[3]));
    long headroom_mib = argc > 1 ? atol(argv[1]) : 96;
    if (headroom_mib < 16) {
        fprintf(stderr, "usage: %s [HEADROOM_MIB >= 16]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("oom: libsyncpool.so %s; SYNCPOOL_ROTATE_MS=%s; RLIMIT_AS = size after set-up + %ld "
           "MiB\n", sp_under_syncpool() ? "loaded" : "NOT loaded",
           getenv("SYNCPOOL_ROTATE_MS") ? getenv("SYNCPOOL_ROTATE_MS") : "(unset)",
           headroom_mib);
    static const char *const names[] = {
        "malloc-16", "malloc-48", "malloc-256", "malloc-4096", "malloc-14336", "malloc-100000",
        "malloc-1M", "calloc-48", "calloc-1M", "memalign-200", "memalign-1M", "aligned-64K",
        "realloc", "strings", "threads"};
    char head[32];
    snprintf(head, sizeof head, "%ld", headroom_mib);
    int bad = sp_run_scenarios(names, sizeof names / sizeof names[0], head);
    printf("oom: %d of %zu scenarios failed\n", bad, sizeof names / sizeof names[0]);
    return sp_report("oom");
}
