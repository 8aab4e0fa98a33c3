// oom_cxx: C++ out of memory under a small RLIMIT_AS (issue #5).
//
//   sp_oom_cxx [HEADROOM_MIB]            driver: every scenario in a fresh child process
//   sp_oom_cxx --scenario NAME HEADROOM  one scenario
//
// As in oom.c, each scenario runs in its own process, which sets RLIMIT_AS to its size plus
// HEADROOM_MIB (default 96) once set up.  Scenarios:
//   new-1M, new-small (48-byte objects), new-aligned (align_val_t(64), 4 KiB): operator new
//     until it throws std::bad_alloc (nothing else, no crash); memory stays exhausted for 0.3 s
//     (rotation runs meanwhile; small requests may fail, nothing may crash); everything is
//     deleted; then half as many objects must be allocatable again (retried for up to 3 s,
//     because freed memory can take a purge period to become reusable).
//   nothrow: new (std::nothrow) of 1 MiB and then of 32 bytes until nullptr; half again.
//   vector: push_back until bad_alloc; the vector keeps every element (strong guarantee).
//   string: append until bad_alloc; the string keeps its contents.
//   map: std::map<long, std::string> inserts until bad_alloc; size and contents consistent.
//   new-handler: with memory exhausted, operator new calls the installed handler, which frees
//     a reserve and uninstalls itself; the allocation then succeeds; the next one throws.
//   threads: 4 threads make strings, vectors and map nodes until bad_alloc, release half and
//     go on, 20 rounds each; all caught, nothing corrupted.  Run with MALLOC_CONF=narenas:1
//     (jemalloc 5.3's own multi-arena out-of-memory crash, docs/reliability.md).
// The driver checks each child: exit 0 within 120 s, no signal, its "ok" line.
#include "sp_test.h"
#include "sp_scenario.h"

#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <map>
#include <new>
#include <pthread.h>
#include <string>
#include <thread>
#include <vector>

static const size_t MAXOBJ = 8u << 20;
static void **objs; // pointer array, mmap'ed: outside the allocator

struct Small {
    uint64_t a[6]; // 48 bytes
};

static long vm_kib()
{
    long pages = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld", &pages) != 1)
        pages = -1;
    fclose(f);
    return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

static void set_limit(long headroom_mib)
{
    sp_sleep_ms(20);
    long vm = vm_kib();
    REQUIRE(vm > 0, "cannot read /proc/self/statm");
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(vm + headroom_mib * 1024) * 1024;
    REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS): %s", strerror(errno));
}

static void hold_exhausted()
{
    for (int i = 0; i < 30; i++) {
        sp_sleep_ms(10);
        try {
            std::string s(16 + (size_t)i * 100, 'h');
            CHECK(s.size() == 16 + (size_t)i * 100, "string size");
        } catch (const std::bad_alloc &) {
        }
    }
}

// Runs f (which allocates, and may throw bad_alloc) until it succeeds, for up to 3 s: freed
// memory can take a purge period to become reusable.  Returns the seconds it took, or -1.
template <class F> static double eventually(F f)
{
    double t0 = sp_now();
    for (;;) {
        try {
            f();
            return sp_now() - t0;
        } catch (const std::bad_alloc &) {
        }
        if (sp_now() - t0 > 3)
            return -1;
        sp_sleep_ms(50);
    }
}

// kinds of objects for the fill/release/again scenarios
enum Kind { K_BIG, K_SMALL, K_ALIGNED, K_NOTHROW_BIG, K_NOTHROW_SMALL };
static const char *const kind_name[] = {"new char[1 MiB]", "new Small (48 B)",
                                        "new (align_val_t 64) char[4096]",
                                        "new (nothrow) char[1 MiB]", "new (nothrow) char[32]"};

static void *make(Kind k, size_t i) // throws bad_alloc, or returns nullptr for nothrow kinds
{
    switch (k) {
    case K_BIG: {
        char *p = new char[1 << 20];
        p[0] = (char)i;
        p[(1 << 20) - 1] = (char)(i >> 8);
        return p;
    }
    case K_SMALL: {
        Small *p = new Small;
        p->a[0] = i;
        p->a[5] = ~i;
        return p;
    }
    case K_ALIGNED: {
        char *p = new (std::align_val_t(64)) char[4096];
        CHECK(((uintptr_t)p & 63) == 0, "aligned new: %p", (void *)p);
        p[0] = (char)i;
        return p;
    }
    case K_NOTHROW_BIG: {
        char *p = new (std::nothrow) char[1 << 20];
        if (p) {
            p[0] = (char)i;
            p[(1 << 20) - 1] = (char)(i >> 8);
        }
        return p;
    }
    case K_NOTHROW_SMALL: {
        char *p = new (std::nothrow) char[32];
        if (p)
            p[0] = p[31] = (char)i;
        return p;
    }
    }
    return nullptr;
}

static bool intact(Kind k, void *v, size_t i)
{
    char *p = (char *)v;
    switch (k) {
    case K_BIG:
    case K_NOTHROW_BIG:
        return p[0] == (char)i && p[(1 << 20) - 1] == (char)(i >> 8);
    case K_SMALL:
        return ((Small *)v)->a[0] == i && ((Small *)v)->a[5] == ~(uint64_t)i;
    case K_ALIGNED:
        return p[0] == (char)i;
    case K_NOTHROW_SMALL:
        return p[0] == (char)i && p[31] == (char)i;
    }
    return false;
}

static void destroy(Kind k, void *v)
{
    switch (k) {
    case K_BIG:
    case K_NOTHROW_BIG:
    case K_NOTHROW_SMALL:
        delete[] (char *)v;
        break;
    case K_SMALL:
        delete (Small *)v;
        break;
    case K_ALIGNED:
        operator delete[](v, std::align_val_t(64));
        break;
    }
}

// Allocates until failure; returns the count; *threw says how it ended.
static size_t fill(Kind k, bool *threw)
{
    size_t n = 0;
    *threw = false;
    try {
        for (; n < MAXOBJ; n++) {
            void *p = make(k, n);
            if (!p)
                break;
            objs[n] = p;
        }
    } catch (const std::bad_alloc &) {
        *threw = true;
    }
    return n;
}

static void release(Kind k, size_t n, const char *what)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!intact(k, objs[i], i))
            bad++;
        destroy(k, objs[i]);
    }
    CHECK(bad == 0, "%s: %zu of %zu objects corrupted", what, bad, n);
}

static void one_kind(Kind k)
{
    const char *what = kind_name[k];
    bool nothrow = k == K_NOTHROW_BIG || k == K_NOTHROW_SMALL, threw;
    size_t count = fill(k, &threw);
    CHECK(count < MAXOBJ, "%s: %zu objects and no failure: is the limit in place?", what, count);
    CHECK(threw == !nothrow, "%s: ended %s", what,
          threw ? "with bad_alloc (nothrow must return nullptr)" : "with nullptr (must throw)");
    CHECK(count >= 1000 || (k != K_SMALL && k != K_NOTHROW_SMALL && count >= 4),
          "%s: failed after only %zu objects", what, count);
    hold_exhausted();
    release(k, count, what);
    size_t again = count / 2, i = 0, first = 0;
    int tries = 0;
    double t0 = sp_now();
    for (;;) {
        i = 0;
        try {
            for (; i < again; i++) {
                void *p = make(k, i);
                if (!p)
                    break;
                objs[i] = p;
            }
        } catch (const std::bad_alloc &) {
        }
        if (tries++ == 0)
            first = i;
        if (i >= again || sp_now() - t0 > 3)
            break;
        release(k, i, what);
        sp_sleep_ms(50);
    }
    CHECK(i >= again, "%s: after deleting everything only %zu of %zu allocations succeed, even "
          "after %.1f s", what, i, again, sp_now() - t0);
    release(k, i, what);
    printf("%s: %s after %zu objects; after deleting them %zu of %zu again at once, %zu after "
           "%.2f s\n", what, nothrow ? "nullptr" : "std::bad_alloc", count, first, again, i,
           sp_now() - t0);
}

static void vector_growth()
{
    std::vector<uint64_t> v;
    size_t last = 0;
    try {
        for (uint64_t i = 0;; i++) {
            v.push_back(i * 3);
            last = v.size();
        }
    } catch (const std::bad_alloc &) {
    }
    CHECK(v.size() == last && last > (1u << 20), "vector: size %zu after bad_alloc, %zu pushed",
          v.size(), last);
    size_t bad = 0;
    for (size_t i = 0; i < v.size(); i++)
        bad += v[i] != i * 3;
    CHECK(bad == 0, "vector: %zu elements wrong after bad_alloc", bad);
    hold_exhausted();
    printf("vector: bad_alloc at %zu elements (%zu MiB), contents intact\n", last, last >> 17);
    std::vector<uint64_t>().swap(v);
    double t = eventually([&] { // works again
        std::vector<uint64_t> w(last / 4, 7);
        CHECK(w.size() == last / 4 && w[last / 8] == 7, "vector after freeing");
    });
    CHECK(t >= 0, "vector: %zu elements cannot be allocated after freeing %zu", last / 4, last);
}

static void string_growth()
{
    std::string s;
    const std::string chunk(4000, 'q');
    size_t appended = 0;
    try {
        for (;;) {
            s += chunk;
            s.back() = (char)('a' + appended % 26);
            appended++;
        }
    } catch (const std::bad_alloc &) {
    }
    CHECK(s.size() == appended * 4000 && appended > 100, "string: size %zu, %zu appends",
          s.size(), appended);
    size_t bad = 0;
    for (size_t i = 0; i < appended; i++)
        bad += s[i * 4000 + 3999] != (char)('a' + i % 26) || s[i * 4000] != 'q';
    CHECK(bad == 0, "string: %zu chunks wrong after bad_alloc", bad);
    printf("string: bad_alloc at %zu MiB, contents intact\n", s.size() >> 20);
    std::string().swap(s);
    double t = eventually([&] {
        std::string u(appended * 1000, 'z');
        CHECK(u.size() == appended * 1000, "string after freeing");
    });
    CHECK(t >= 0, "string: %zu bytes cannot be allocated after freeing", appended * 1000);
}

static void map_inserts()
{
    std::map<long, std::string> m;
    long n = 0;
    try {
        for (;; n++)
            m.emplace(n * 7919 % 1000003 + n * 1000003, std::string(40, (char)('a' + n % 26)));
    } catch (const std::bad_alloc &) {
    }
    CHECK((long)m.size() == n && n > 10000, "map: size %zu after %ld inserts", m.size(), n);
    long seen = 0;
    size_t bad = 0;
    long prev = -1;
    for (auto &kv : m) {
        bad += kv.first <= prev || kv.second.size() != 40;
        prev = kv.first;
        seen++;
    }
    CHECK(bad == 0 && seen == n, "map: %zu bad entries, %ld of %ld seen", bad, seen, n);
    hold_exhausted();
    printf("map: bad_alloc after %ld inserts, map consistent\n", n);
    m.clear();
    double t = eventually([&] {
        std::map<long, std::string> m2;
        for (long i = 0; i < n / 2; i++)
            m2.emplace(i, std::string(40, 'x'));
        CHECK((long)m2.size() == n / 2, "map after clearing");
    });
    CHECK(t >= 0, "map: %ld inserts fail after clearing a map of %ld", n / 2, n);
    printf("map: after clear(), %ld inserts succeed (after %.2f s)\n", n / 2, t);
}

static char *reserve;
static int handler_calls;
static void handler()
{
    handler_calls++;
    delete[] reserve;
    reserve = nullptr;
    std::set_new_handler(nullptr);
}

static void new_handler_test()
{
    reserve = new char[8 << 20];
    reserve[0] = 1;
    bool threw;
    size_t count = fill(K_NOTHROW_BIG, &threw);
    std::set_new_handler(handler);
    char *p = nullptr;
    try {
        p = new char[1 << 20];
        p[0] = 2;
    } catch (const std::bad_alloc &) {
        CHECK(0, "new threw although the handler freed 8 MiB");
    }
    CHECK(handler_calls == 1 && p, "new-handler called %d times, result %p", handler_calls,
          (void *)p);
    bool threw2 = false;
    std::vector<char *> more;
    try {
        for (int i = 0; i < 100; i++)
            more.push_back(new char[1 << 20]);
    } catch (const std::bad_alloc &) {
        threw2 = true;
    }
    CHECK(threw2 && handler_calls == 1, "after the handler uninstalled itself: threw %d, "
          "handler calls %d", threw2, handler_calls);
    for (char *q : more)
        delete[] q;
    delete[] p;
    release(K_NOTHROW_BIG, count, "new-handler fill");
    printf("new-handler: called once with memory exhausted, freed its reserve, new succeeded; "
           "then bad_alloc\n");
}

// ---- threads -----------------------------------------------------------------------------------

static pthread_barrier_t go;
static std::atomic<unsigned long> t_caught, t_bad, t_objects;

static void thread_main(int id)
{
    std::string warm(1000, 'w');
    std::vector<std::string> strs;
    std::map<int, std::vector<int>> m;
    strs.reserve(1 << 18); // before the limit: emplace_back below never reallocates
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&go);
    uint64_t rng = (uint64_t)id * 31 + 7;
    for (int round = 0; round < 20; round++) {
        try {
            for (int i = 0; strs.size() < (1u << 18); i++) {
                size_t len = 1 + sp_rand(&rng) % 3000;
                strs.emplace_back(len, (char)('a' + len % 26));
                int key = (int)(sp_rand(&rng) % 1000000);
                m[key].assign(1 + key % 50, key);
                t_objects++;
            }
        } catch (const std::bad_alloc &) {
            t_caught++;
        }
        for (auto &s : strs)
            if (s.empty() || s[0] != (char)('a' + s.size() % 26) || s.back() != s[0])
                t_bad++;
        for (auto &kv : m) // empty: the assign that threw (it left the vector as it was)
            if (!kv.second.empty() && (kv.second.size() != (size_t)(1 + kv.first % 50) ||
                                       kv.second.front() != kv.first ||
                                       kv.second.back() != kv.first))
                t_bad++;
        strs.resize(strs.size() / 2);
        for (auto it = m.begin(); it != m.end();)
            it = (it->first & 1) ? m.erase(it) : std::next(it);
    }
}

static void threads_test(long headroom)
{
    pthread_barrier_init(&go, nullptr, 5);
    std::vector<std::thread> th;
    for (int i = 0; i < 4; i++)
        th.emplace_back(thread_main, i);
    pthread_barrier_wait(&go);
    set_limit(headroom);
    pthread_barrier_wait(&go);
    for (auto &t : th)
        t.join();
    printf("threads: %lu objects, %lu bad_alloc caught, %lu corrupted\n",
           (unsigned long)t_objects, (unsigned long)t_caught, (unsigned long)t_bad);
    CHECK(t_caught >= 4 * 20, "threads: only %lu bad_alloc caught", (unsigned long)t_caught);
    CHECK(t_bad == 0, "threads: %lu corrupted objects", (unsigned long)t_bad);
}

static int scenario(const char *name, long headroom)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    printf("[%s] ", name);
    objs = (void **)mmap(nullptr, MAXOBJ * sizeof(void *), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(objs != MAP_FAILED, "mmap");
    for (int i = 0; i < 2000; i++)
        delete[] new char[(size_t)i * 13 % 14336 + 1];
    std::string n = name;
    if (n == "threads")
        threads_test(headroom);
    else {
        set_limit(headroom);
        if (n == "new-1M")
            one_kind(K_BIG);
        else if (n == "new-small")
            one_kind(K_SMALL);
        else if (n == "new-aligned")
            one_kind(K_ALIGNED);
        else if (n == "nothrow") {
            one_kind(K_NOTHROW_BIG);
            one_kind(K_NOTHROW_SMALL);
        } else if (n == "vector")
            vector_growth();
        else if (n == "string")
            string_growth();
        else if (n == "map")
            map_inserts();
        else if (n == "new-handler")
            new_handler_test();
        else {
            fprintf(stderr, "unknown scenario %s\n", name);
            return 2;
        }
    }
    if (sp_failures() == 0)
        printf("[%s] ok\n", name);
    return sp_failures() ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--scenario"))
        return scenario(argv[2], atol(argv[3]));
    long headroom = argc > 1 ? atol(argv[1]) : 96;
    if (headroom < 16) {
        fprintf(stderr, "usage: %s [HEADROOM_MIB >= 16]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, nullptr, _IOLBF, 0);
    printf("oom_cxx: libsyncpool.so %s; SYNCPOOL_ROTATE_MS=%s; RLIMIT_AS = size after set-up + "
           "%ld MiB\n", sp_under_syncpool() ? "loaded" : "NOT loaded",
           getenv("SYNCPOOL_ROTATE_MS") ? getenv("SYNCPOOL_ROTATE_MS") : "(unset)", headroom);
    static const char *const names[] = {"new-1M", "new-small", "new-aligned", "nothrow", "vector",
                                        "string", "map", "new-handler", "threads"};
    char head[32];
    snprintf(head, sizeof head, "%ld", headroom);
    int bad = sp_run_scenarios(names, sizeof names / sizeof names[0], head);
    printf("oom_cxx: %d of %zu scenarios failed\n", bad, sizeof names / sizeof names[0]);
    return sp_report("oom_cxx");
}
