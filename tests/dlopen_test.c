/* dlopen_test: dlopen/dlclose under the preloaded allocator (research.md 1.4: "dlopen of many
 * TLS-using libraries while other threads allocate").  argv[1] = path of libdlalloc.so.
 *
 * 1. 200 x dlopen / dlclose: the library's constructor allocations are intact while it is
 *    loaded and at destructor time (the destructor reports through counters, checked after
 *    every dlclose); memory malloc'ed by the library is used and freed by main after dlclose
 *    (half immediately, half kept across the later cycles); the library frees memory main
 *    allocated.  A failing dlopen (dlerror allocates) is exercised too.
 * 2. 24 distinct copies of the library loaded at once (each is a new TLS module, so the DTV
 *    grows and TLS blocks are malloc'ed lazily), TLS touched from main and from a new thread.
 * 3. The same while two other threads allocate continuously and a third thread
 *    dlopens/dlcloses copies, and main dlopens/dlcloses the original. */
#define _GNU_SOURCE
#include "sp_test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define NCOPIES 24

struct lib {
    void *h;
    int (*check_ctor)(void);
    void (*set_counters)(int *, int *);
    void *(*make)(size_t, uint64_t);
    int (*check)(const void *, size_t, uint64_t);
    void (*lfree)(void *);
    int (*tls_touch)(uint64_t);
    void (*tls_release)(void);
};

static int dtor_ok, dtor_bad; /* updated atomically by the libraries' destructors */

static int load(const char *path, struct lib *l)
{
    l->h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!l->h) {
        CHECK(0, "dlopen(%s): %s", path, dlerror());
        return -1;
    }
    l->check_ctor = (int (*)(void))dlsym(l->h, "dlalloc_check_ctor");
    l->set_counters = (void (*)(int *, int *))dlsym(l->h, "dlalloc_set_counters");
    l->make = (void *(*)(size_t, uint64_t))dlsym(l->h, "dlalloc_make");
    l->check = (int (*)(const void *, size_t, uint64_t))dlsym(l->h, "dlalloc_check");
    l->lfree = (void (*)(void *))dlsym(l->h, "dlalloc_free");
    l->tls_touch = (int (*)(uint64_t))dlsym(l->h, "dlalloc_tls_touch");
    l->tls_release = (void (*)(void))dlsym(l->h, "dlalloc_tls_release");
    if (!l->check_ctor || !l->set_counters || !l->make || !l->check || !l->lfree ||
        !l->tls_touch || !l->tls_release) {
        CHECK(0, "dlsym in %s failed", path);
        return -1;
    }
    l->set_counters(&dtor_ok, &dtor_bad);
    CHECK(l->check_ctor() == 0, "%s: constructor allocations not intact after dlopen", path);
    return 0;
}

static int ok_now(void) { return __atomic_load_n(&dtor_ok, __ATOMIC_SEQ_CST); }

/* ---- phase 1 ---- */
struct kept {
    void *p;
    size_t n;
    uint64_t seed;
};

static int check_pattern(const void *p, size_t n, uint64_t seed)
{
    /* the library's pattern, recomputed here: the library may be unloaded */
    const unsigned char *b = p;
    for (size_t k = 0; k < n; k++)
        if (b[k] != (unsigned char)((seed * 131 + k * 7 + (k >> 8)) ^ (seed >> 3)))
            return -1;
    return 0;
}

static void phase1(const char *path)
{
    enum { N = 200 };
    static struct kept kept[N];
    int nkept = 0;
    for (int i = 0; i < N; i++) {
        struct lib l;
        if (load(path, &l))
            return;
        size_t n = 1 + ((size_t)i * 7919) % 20000;
        uint64_t seed = 1000 + (uint64_t)i;
        void *p = l.make(n, seed);
        CHECK(p != NULL, "dlalloc_make(%zu) returned NULL", n);
        /* memory main allocated, freed by the library */
        void *m = malloc(n);
        REQUIRE(m != NULL, "malloc");
        memset(m, 0x3c, n);
        l.lfree(m);
        CHECK(l.tls_touch(seed) == 0, "TLS touch failed");
        CHECK(l.tls_touch(seed + 1) == 0, "TLS value of this thread not intact");
        l.tls_release();
        int before = ok_now();
        CHECK(dlclose(l.h) == 0, "dlclose: %s", dlerror());
        CHECK(ok_now() == before + 1, "cycle %d: destructor did not report success (ok %d -> %d, "
              "bad %d)", i, before, ok_now(), dtor_bad);
        if (p) {
            CHECK(check_pattern(p, n, seed) == 0, "cycle %d: library memory (%zu bytes) "
                  "changed after dlclose", i, n);
            if (i % 2) {
                free(p);
            } else {
                kept[nkept].p = p;
                kept[nkept].n = n;
                kept[nkept].seed = seed;
                nkept++;
            }
        }
        if (i % 20 == 0) {
            void *bad = dlopen("/nonexistent/libnothere.so", RTLD_NOW);
            CHECK(bad == NULL, "dlopen of a missing file succeeded");
            const char *e = dlerror();
            CHECK(e != NULL && strstr(e, "libnothere") != NULL, "dlerror() = %s",
                  e ? e : "(null)");
        }
    }
    for (int i = 0; i < nkept; i++) {
        CHECK(check_pattern(kept[i].p, kept[i].n, kept[i].seed) == 0,
              "kept block %d (%zu bytes) changed across later dlopen cycles", i, kept[i].n);
        free(kept[i].p);
    }
    CHECK(dtor_bad == 0, "%d destructors found their allocations corrupted", dtor_bad);
}

/* ---- copies ---- */
static char tmpdir[64];
static char copies[NCOPIES][128];

static int make_copies(const char *path)
{
    strcpy(tmpdir, "/tmp/sp_dlopen_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return -1;
    }
    int in = open(path, O_RDONLY);
    if (in < 0) {
        CHECK(0, "open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    fstat(in, &st);
    char *buf = malloc((size_t)st.st_size);
    REQUIRE(buf != NULL, "malloc");
    REQUIRE(read(in, buf, (size_t)st.st_size) == st.st_size, "read %s", path);
    close(in);
    for (int i = 0; i < NCOPIES; i++) {
        snprintf(copies[i], sizeof copies[i], "%s/libdlalloc_%02d.so", tmpdir, i);
        int out = open(copies[i], O_WRONLY | O_CREAT | O_TRUNC, 0755);
        REQUIRE(out >= 0, "create %s", copies[i]);
        REQUIRE(write(out, buf, (size_t)st.st_size) == st.st_size, "write %s", copies[i]);
        close(out);
    }
    free(buf);
    return 0;
}

static void remove_copies(void)
{
    for (int i = 0; i < NCOPIES; i++)
        unlink(copies[i]);
    rmdir(tmpdir);
}

struct touch_arg {
    struct lib *libs;
    int n;
    int fails;
};

static void *touch_thread(void *arg)
{
    struct touch_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        if (a->libs[i].tls_touch(77 + (uint64_t)i) != 0)
            a->fails++;
        if (a->libs[i].tls_touch(78 + (uint64_t)i) != 0)
            a->fails++;
        a->libs[i].tls_release();
    }
    return NULL;
}

static void phase2(void)
{
    static struct lib libs[NCOPIES];
    for (int round = 0; round < 4; round++) {
        int n = 0;
        for (; n < NCOPIES; n++)
            if (load(copies[n], &libs[n]))
                break;
        for (int i = 0; i < n; i++)
            CHECK(libs[i].tls_touch((uint64_t)i) == 0, "main TLS touch of copy %d", i);
        struct touch_arg ta = {libs, n, 0};
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, touch_thread, &ta) == 0, "pthread_create");
        pthread_join(t, NULL);
        CHECK(ta.fails == 0, "round %d: %d TLS checks failed in the helper thread", round,
              ta.fails);
        for (int i = 0; i < n; i++) {
            CHECK(libs[i].tls_touch((uint64_t)i + 100) == 0, "main TLS of copy %d not intact", i);
            libs[i].tls_release();
        }
        int before = ok_now();
        for (int i = n - 1; i >= 0; i--)
            CHECK(dlclose(libs[i].h) == 0, "dlclose copy %d: %s", i, dlerror());
        CHECK(ok_now() == before + n, "round %d: %d of %d destructors reported success", round,
              ok_now() - before, n);
    }
}

/* ---- phase 3 ---- */
static atomic_int stop;

static void *alloc_thread(void *arg)
{
    uint64_t rng = (uint64_t)(intptr_t)arg * 977 + 5;
    void *slot[64] = {0};
    size_t sz[64];
    uint64_t sd[64];
    long fails = 0;
    uint64_t serial = 0;
    while (!atomic_load(&stop)) {
        uint64_t r = sp_rand(&rng);
        int k = (int)(r % 64);
        if (slot[k]) {
            if (sp_verify(slot[k], sz[k], sd[k]) >= 0)
                fails++;
            free(slot[k]);
            slot[k] = NULL;
        } else {
            sz[k] = 1 + (r >> 8) % ((r >> 40) % 8 == 0 ? 100000 : 2048);
            sd[k] = ++serial;
            slot[k] = malloc(sz[k]);
            if (!slot[k])
                fails++;
            else
                sp_fill(slot[k], sz[k], sd[k]);
        }
    }
    for (int k = 0; k < 64; k++)
        if (slot[k]) {
            if (sp_verify(slot[k], sz[k], sd[k]) >= 0)
                fails++;
            free(slot[k]);
        }
    return (void *)fails;
}

static void *dlopen_thread(void *arg)
{
    (void)arg;
    long fails = 0;
    for (int round = 0; round < 40; round++) {
        struct lib libs[8];
        int n = 0;
        for (; n < 8; n++)
            if (load(copies[(round + n) % NCOPIES], &libs[n]))
                break;
        for (int i = 0; i < n; i++) {
            if (libs[i].tls_touch((uint64_t)round) != 0)
                fails++;
            void *p = libs[i].make(500, (uint64_t)round);
            if (!p || libs[i].check(p, 500, (uint64_t)round) != 0)
                fails++;
            free(p);
            libs[i].tls_release();
        }
        for (int i = 0; i < n; i++)
            if (dlclose(libs[i].h) != 0)
                fails++;
    }
    return (void *)fails;
}

static void phase3(const char *path)
{
    pthread_t a[2], d;
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&a[i], NULL, alloc_thread, (void *)(intptr_t)i) == 0,
                "pthread_create");
    REQUIRE(pthread_create(&d, NULL, dlopen_thread, NULL) == 0, "pthread_create");
    for (int i = 0; i < 100; i++) {
        struct lib l;
        if (load(path, &l))
            break;
        void *p = l.make(3000 + (size_t)i, (uint64_t)i);
        CHECK(l.tls_touch((uint64_t)i) == 0, "TLS touch");
        l.tls_release();
        dlclose(l.h);
        CHECK(p && check_pattern(p, 3000 + (size_t)i, (uint64_t)i) == 0,
              "library memory changed after dlclose (concurrent phase)");
        free(p);
    }
    void *res;
    pthread_join(d, &res);
    CHECK(res == NULL, "dlopen thread: %ld failures", (long)(intptr_t)res);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(a[i], &res);
        CHECK(res == NULL, "allocating thread %d: %ld bad blocks", i, (long)(intptr_t)res);
    }
    CHECK(dtor_bad == 0, "%d destructors found their allocations corrupted", dtor_bad);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s /path/to/libdlalloc.so\n", argv[0]);
        return 2;
    }
    printf("dlopen_test: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");
    double t0 = sp_now();
    phase1(argv[1]);
    printf("  phase 1 (200 dlopen/dlclose cycles): %.2f s\n", sp_now() - t0);
    if (make_copies(argv[1]) == 0) {
        t0 = sp_now();
        phase2();
        printf("  phase 2 (%d copies at once, TLS): %.2f s\n", NCOPIES, sp_now() - t0);
        t0 = sp_now();
        phase3(argv[1]);
        printf("  phase 3 (concurrent): %.2f s\n", sp_now() - t0);
        remove_copies();
    }
    printf("  destructors: %d ok, %d reported corruption\n", dtor_ok, dtor_bad);
    return sp_report("dlopen_test");
}
