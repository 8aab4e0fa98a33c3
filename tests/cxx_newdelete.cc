// cxx_newdelete: every form of operator new/delete under the preloaded library.
//
// 8 threads allocate with each of the 8 operator-new forms and free with the matching operator
// delete forms (12 of them: plain, sized, nothrow, aligned, aligned+sized, aligned+nothrow,
// scalar and array), plus ordinary new-expressions (virtual destructors -> sized delete,
// arrays with cookies, alignas types -> aligned new, std::string / std::vector / std::map).
// Half of the objects are handed through a locked queue to another thread, which checks the
// fill pattern and deletes them.  Then: failure semantics (std::bad_alloc, nullptr for
// nothrow, the new-handler loop) and operator new(0).
#include "sp_test.h"

#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

size_t vsize(size_t x)
{
    volatile size_t v = x;
    return v;
}

bool aligned(const void *p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

enum Form {
    PLAIN,            // new(n)              / delete(p)
    PLAIN_SIZED,      // new(n)              / delete(p, n)
    ARRAY,            // new[](n)            / delete[](p)
    ARRAY_SIZED,      // new[](n)            / delete[](p, n)
    NOTHROW,          // new(n, nothrow)     / delete(p, nothrow)
    ARRAY_NOTHROW,    // new[](n, nothrow)   / delete[](p, nothrow)
    AL,               // new(n, al)          / delete(p, al)
    AL_SIZED,         // new(n, al)          / delete(p, n, al)
    AL_ARRAY,         // new[](n, al)        / delete[](p, al)
    AL_ARRAY_SIZED,   // new[](n, al)        / delete[](p, n, al)
    AL_NOTHROW,       // new(n, al, nothrow) / delete(p, al, nothrow)
    AL_ARRAY_NOTHROW, // new[](n, al, nothrow) / delete[](p, al, nothrow)
    NFORMS
};

const char *const form_name[NFORMS] = {"new/delete",       "new/sized delete",
                                       "new[]/delete[]",   "new[]/sized delete[]",
                                       "nothrow new",      "nothrow new[]",
                                       "aligned new",      "aligned new/sized delete",
                                       "aligned new[]",    "aligned new[]/sized delete[]",
                                       "aligned nothrow new", "aligned nothrow new[]"};

struct Item {
    void *p;
    size_t n, al;
    int form;
    uint64_t seed;
};

void *do_new(int form, size_t n, size_t al)
{
    std::align_val_t a = static_cast<std::align_val_t>(al);
    switch (form) {
    case PLAIN:
    case PLAIN_SIZED: return ::operator new(n);
    case ARRAY:
    case ARRAY_SIZED: return ::operator new[](n);
    case NOTHROW: return ::operator new(n, std::nothrow);
    case ARRAY_NOTHROW: return ::operator new[](n, std::nothrow);
    case AL:
    case AL_SIZED: return ::operator new(n, a);
    case AL_ARRAY:
    case AL_ARRAY_SIZED: return ::operator new[](n, a);
    case AL_NOTHROW: return ::operator new(n, a, std::nothrow);
    case AL_ARRAY_NOTHROW: return ::operator new[](n, a, std::nothrow);
    }
    return nullptr;
}

void do_delete(const Item &it)
{
    std::align_val_t a = static_cast<std::align_val_t>(it.al);
    switch (it.form) {
    case PLAIN: ::operator delete(it.p); break;
    case PLAIN_SIZED: ::operator delete(it.p, it.n); break;
    case ARRAY: ::operator delete[](it.p); break;
    case ARRAY_SIZED: ::operator delete[](it.p, it.n); break;
    case NOTHROW: ::operator delete(it.p, std::nothrow); break;
    case ARRAY_NOTHROW: ::operator delete[](it.p, std::nothrow); break;
    case AL: ::operator delete(it.p, a); break;
    case AL_SIZED: ::operator delete(it.p, it.n, a); break;
    case AL_ARRAY: ::operator delete[](it.p, a); break;
    case AL_ARRAY_SIZED: ::operator delete[](it.p, it.n, a); break;
    case AL_NOTHROW: ::operator delete(it.p, a, std::nothrow); break;
    case AL_ARRAY_NOTHROW: ::operator delete[](it.p, a, std::nothrow); break;
    }
}

// Objects created by new-expressions (the compiler picks the operator forms).
struct Base {
    uint64_t tag;
    explicit Base(uint64_t t) : tag(t) {}
    virtual ~Base() = default;
    virtual bool ok() const = 0;
};
template <size_t N> struct Obj : Base {
    unsigned char data[N];
    explicit Obj(uint64_t t) : Base(t) { sp_fill(data, N, t); }
    bool ok() const override { return sp_verify(data, N, tag) < 0; }
};
struct alignas(256) Al256 {
    unsigned char data[300];
    uint64_t tag;
};
struct WithDtor { // array new-expression of this type stores a cookie -> sized delete[]
    uint64_t v[5];
    ~WithDtor() { v[0] = 0; }
};

std::mutex qlock;
std::deque<Item> queue;            // cross-thread raw blocks
std::deque<Base *> objq;           // cross-thread objects
std::deque<std::string *> strq;    // cross-thread strings

void verify_and_delete(const Item &it, const char *who)
{
    long bad = sp_verify(it.p, it.n, it.seed);
    CHECK(bad < 0, "%s: %s block of %zu bytes (align %zu) corrupted at byte %ld", who,
          form_name[it.form], it.n, it.al, bad);
    do_delete(it);
}

void worker(int id, int iters)
{
    uint64_t rng = sp_seed(0xC0FFEE) + static_cast<uint64_t>(id) * 7919 + 1;
    std::vector<Item> mine;
    std::vector<Base *> myobjs;
    for (int i = 0; i < iters; i++) {
        uint64_t r = sp_rand(&rng);
        Item it;
        it.form = static_cast<int>(r % NFORMS);
        uint64_t r2 = sp_rand(&rng);
        it.n = (r2 % 100) < 85 ? 1 + (r2 >> 10) % 512
               : (r2 % 100) < 98 ? 513 + (r2 >> 10) % 13824
                                 : 14337 + (r2 >> 10) % 100000;
        it.al = it.form >= AL ? static_cast<size_t>(16) << ((r2 >> 40) % 9) : 0; // 16..4096
        it.seed = (static_cast<uint64_t>(id) << 40) | static_cast<uint64_t>(i);
        it.p = do_new(it.form, it.n, it.al ? it.al : 16);
        if (it.form < AL) // fundamental alignment; jemalloc's 8-byte class (weak alignment,
            it.al = it.n >= 16 ? 16 : 8; // C DR 445) serves requests below 16 with 8
        CHECK(it.p != nullptr, "%s(%zu) returned null", form_name[it.form], it.n);
        if (!it.p)
            continue;
        CHECK(aligned(it.p, it.al), "%s(%zu, align %zu) returned misaligned %p",
              form_name[it.form], it.n, it.al, it.p);
        sp_fill(it.p, it.n, it.seed);
        if (r & (1ULL << 50)) {
            std::lock_guard<std::mutex> g(qlock);
            queue.push_back(it);
        } else {
            mine.push_back(it);
        }
        if (mine.size() > 64) {
            size_t k = (r >> 20) % mine.size();
            verify_and_delete(mine[k], "own");
            mine[k] = mine.back();
            mine.pop_back();
        }
        // delete something another thread allocated
        Item other;
        bool have = false;
        if (r & (1ULL << 51)) {
            std::lock_guard<std::mutex> g(qlock);
            if (!queue.empty()) {
                other = queue.front();
                queue.pop_front();
                have = true;
            }
        }
        if (have)
            verify_and_delete(other, "cross-thread");

        // new-expressions
        if (i % 8 == 0) {
            Base *b;
            switch ((r >> 30) % 4) {
            case 0: b = new Obj<24>(it.seed); break;
            case 1: b = new Obj<200>(it.seed); break;
            case 2: b = new Obj<3000>(it.seed); break;
            default: b = new (std::nothrow) Obj<20000>(it.seed); break;
            }
            CHECK(b != nullptr, "new-expression returned null");
            if (b) {
                if (r & (1ULL << 52)) {
                    std::lock_guard<std::mutex> g(qlock);
                    objq.push_back(b);
                } else {
                    myobjs.push_back(b);
                }
            }
            Base *o = nullptr;
            {
                std::lock_guard<std::mutex> g(qlock);
                if (!objq.empty()) {
                    o = objq.front();
                    objq.pop_front();
                }
            }
            if (o) {
                CHECK(o->ok(), "object from another thread corrupted (tag %llu)",
                      static_cast<unsigned long long>(o->tag));
                delete o; // virtual dtor: sized delete of the dynamic type
            }
            if (myobjs.size() > 16) {
                CHECK(myobjs.front()->ok(), "own object corrupted");
                delete myobjs.front();
                myobjs.erase(myobjs.begin());
            }
        }
        if (i % 16 == 1) {
            Al256 *a = new Al256;
            CHECK(aligned(a, 256), "new of an alignas(256) type returned %p", static_cast<void *>(a));
            a->tag = it.seed;
            sp_fill(a->data, sizeof a->data, it.seed);
            Al256 *arr = new Al256[3];
            CHECK(aligned(arr, 256), "new[] of an alignas(256) type returned %p",
                  static_cast<void *>(arr));
            for (int k = 0; k < 3; k++)
                sp_fill(arr[k].data, sizeof arr[k].data, it.seed + static_cast<uint64_t>(k));
            for (int k = 0; k < 3; k++)
                CHECK(sp_verify(arr[k].data, sizeof arr[k].data, it.seed + static_cast<uint64_t>(k)) < 0,
                      "alignas(256) array element %d corrupted", k);
            CHECK(sp_verify(a->data, sizeof a->data, it.seed) < 0, "alignas(256) object corrupted");
            delete[] arr;
            delete a;
            size_t cnt = 1 + (r >> 33) % 300;
            WithDtor *w = new WithDtor[cnt];
            for (size_t k = 0; k < cnt; k++)
                for (int j = 0; j < 5; j++)
                    w[k].v[j] = it.seed + k * 5 + static_cast<uint64_t>(j);
            bool ok = true;
            for (size_t k = 0; k < cnt; k++)
                for (int j = 0; j < 5; j++)
                    ok = ok && w[k].v[j] == it.seed + k * 5 + static_cast<uint64_t>(j);
            CHECK(ok, "WithDtor[%zu] array corrupted", cnt);
            delete[] w;
        }
        if (i % 32 == 2) {
            std::string *s = new std::string(10 + (r >> 12) % 2000, static_cast<char>('a' + id));
            {
                std::lock_guard<std::mutex> g(qlock);
                strq.push_back(s);
            }
            std::string *t = nullptr;
            {
                std::lock_guard<std::mutex> g(qlock);
                if (!strq.empty()) {
                    t = strq.front();
                    strq.pop_front();
                }
            }
            if (t) {
                bool same = !t->empty();
                for (char c : *t)
                    same = same && c == (*t)[0];
                CHECK(same, "std::string from another thread corrupted");
                delete t;
            }
            std::map<int, std::vector<int>> m;
            for (int k = 0; k < 50; k++)
                m[k].assign(static_cast<size_t>(k), k);
            long sum = 0;
            for (auto &kv : m)
                for (int v : kv.second)
                    sum += v;
            CHECK(sum == 40425, "std::map/vector sum %ld, expected 40425", sum);
        }
    }
    for (auto &it : mine)
        verify_and_delete(it, "own (final)");
    for (Base *b : myobjs) {
        CHECK(b->ok(), "own object corrupted (final)");
        delete b;
    }
}

int handler_calls;
int handler_limit;
void counting_handler()
{
    if (++handler_calls >= handler_limit)
        std::set_new_handler(nullptr); // uninstall: the next failure throws bad_alloc
}
struct HandlerThrew {};
void throwing_handler()
{
    ++handler_calls;
    throw HandlerThrew();
}

void test_failures()
{
    const size_t huge = vsize(SIZE_MAX / 2);
    const std::align_val_t a64 = static_cast<std::align_val_t>(64);

    // throwing forms
    struct {
        const char *name;
        void *(*fn)(size_t);
    } throwing[] = {
        {"operator new", [](size_t n) { return ::operator new(n); }},
        {"operator new[]", [](size_t n) { return ::operator new[](n); }},
        {"aligned operator new", [](size_t n) { return ::operator new(n, std::align_val_t(64)); }},
        {"aligned operator new[]",
         [](size_t n) { return ::operator new[](n, std::align_val_t(64)); }},
    };
    for (auto &t : throwing) {
        for (size_t n : {huge, vsize(SIZE_MAX), vsize(SIZE_MAX - 4096)}) {
            bool threw = false;
            void *p = nullptr;
            try {
                p = t.fn(n);
            } catch (const std::bad_alloc &) {
                threw = true;
            }
            // (libstdc++'s own aligned new fails this for SIZE_MAX: its size rounding
            // overflows to 0; the preloaded library must not copy that)
            CHECK(threw && p == nullptr, "%s(%zu) did not throw std::bad_alloc (returned %p)",
                  t.name, n, p);
        }
        // new-handler called until it uninstalls itself, then bad_alloc
        handler_calls = 0;
        handler_limit = 3;
        std::set_new_handler(counting_handler);
        bool threw = false;
        try {
            void *p = t.fn(huge);
            CHECK(p == nullptr, "%s(huge) with handler returned %p", t.name, p);
        } catch (const std::bad_alloc &) {
            threw = true;
        }
        std::set_new_handler(nullptr);
        CHECK(threw, "%s(huge) with a new-handler did not end in std::bad_alloc", t.name);
        CHECK(handler_calls == 3, "%s: new-handler called %d times, expected 3", t.name,
              handler_calls);
        // a handler that throws: its exception propagates out of operator new
        handler_calls = 0;
        std::set_new_handler(throwing_handler);
        bool got = false;
        try {
            (void)t.fn(huge);
        } catch (const HandlerThrew &) {
            got = true;
        } catch (...) {
        }
        std::set_new_handler(nullptr);
        CHECK(got && handler_calls == 1,
              "%s: exception from the new-handler did not propagate (calls %d)", t.name,
              handler_calls);
    }

    // nothrow forms: nullptr, and the new-handler is honoured too
    struct {
        const char *name;
        void *(*fn)(size_t);
    } nothrow[] = {
        {"nothrow operator new", [](size_t n) { return ::operator new(n, std::nothrow); }},
        {"nothrow operator new[]", [](size_t n) { return ::operator new[](n, std::nothrow); }},
        {"aligned nothrow operator new",
         [](size_t n) { return ::operator new(n, std::align_val_t(128), std::nothrow); }},
        {"aligned nothrow operator new[]",
         [](size_t n) { return ::operator new[](n, std::align_val_t(128), std::nothrow); }},
    };
    for (auto &t : nothrow) {
        void *p = (void *)1;
        try {
            p = t.fn(huge);
        } catch (...) {
            CHECK(0, "%s(huge) threw", t.name);
        }
        CHECK(p == nullptr, "%s(huge) returned %p, expected nullptr", t.name, p);
        handler_calls = 0;
        handler_limit = 2;
        std::set_new_handler(counting_handler);
        p = (void *)1;
        try {
            p = t.fn(huge);
        } catch (...) {
            CHECK(0, "%s(huge) with a new-handler threw", t.name);
        }
        std::set_new_handler(nullptr);
        CHECK(p == nullptr, "%s(huge) with handler returned %p", t.name, p);
        CHECK(handler_calls == 2, "%s: new-handler called %d times, expected 2", t.name,
              handler_calls);
        // a throwing handler inside a nothrow new: the result is nullptr, no exception escapes
        handler_calls = 0;
        std::set_new_handler([] { ++handler_calls; throw std::bad_alloc(); });
        p = (void *)1;
        bool escaped = false;
        try {
            p = t.fn(huge);
        } catch (...) {
            escaped = true;
        }
        std::set_new_handler(nullptr);
        CHECK(!escaped && p == nullptr && handler_calls == 1,
              "%s with a handler throwing bad_alloc: escaped %d, result %p, calls %d", t.name,
              escaped, p, handler_calls);
    }

    // an installed handler is not called when the allocation succeeds
    handler_calls = 0;
    handler_limit = 1;
    std::set_new_handler(counting_handler);
    void *ok = ::operator new(vsize(1000));
    std::set_new_handler(nullptr);
    CHECK(ok != nullptr && handler_calls == 0, "operator new(1000) with an idle handler: %p, %d "
          "handler calls", ok, handler_calls);
    ::operator delete(ok, 1000);

    // new-expression with an impossible array length
    bool threw = false;
    try {
        size_t n = vsize(SIZE_MAX / 8);
        WithDtor *w = new WithDtor[n];
        delete[] w;
    } catch (const std::bad_alloc &) { // std::bad_array_new_length is a bad_alloc
        threw = true;
    }
    CHECK(threw, "new WithDtor[SIZE_MAX/8] did not throw");
    (void)a64;
}

void test_new_zero()
{
    std::set<void *> seen;
    std::vector<void *> v;
    for (int i = 0; i < 200; i++) {
        void *p = ::operator new(vsize(0));
        void *q = ::operator new[](vsize(0));
        void *r = ::operator new(vsize(0), std::align_val_t(64));
        void *s = ::operator new(vsize(0), std::nothrow);
        CHECK(p && q && r && s, "operator new(0) variant returned null");
        CHECK(aligned(r, 64), "aligned operator new(0, 64) = %p", r);
        for (void *x : {p, q, r, s}) {
            CHECK(seen.insert(x).second, "operator new(0) returned %p twice", x);
        }
        v.push_back(p);
        v.push_back(q);
        v.push_back(r);
        v.push_back(s);
    }
    for (size_t i = 0; i < v.size(); i += 4) {
        ::operator delete(v[i]);
        ::operator delete[](v[i + 1]);
        ::operator delete(v[i + 2], std::align_val_t(64));
        ::operator delete(v[i + 3], std::nothrow);
    }
}

void test_aligned_range()
{
    for (size_t al = 16; al <= 4096; al <<= 1)
        for (size_t n : {1, 8, 100, 4096, 5000, 20000}) {
            std::align_val_t a = static_cast<std::align_val_t>(al);
            void *p = ::operator new(n, a);
            void *q = ::operator new[](n, a);
            void *r = ::operator new(n, a, std::nothrow);
            void *s = ::operator new[](n, a, std::nothrow);
            CHECK(aligned(p, al) && aligned(q, al) && aligned(r, al) && aligned(s, al),
                  "aligned new (align %zu, size %zu): %p %p %p %p", al, n, p, q, r, s);
            sp_fill(p, n, 1);
            sp_fill(q, n, 2);
            sp_fill(r, n, 3);
            sp_fill(s, n, 4);
            CHECK(sp_verify(p, n, 1) < 0 && sp_verify(q, n, 2) < 0 && sp_verify(r, n, 3) < 0 &&
                      sp_verify(s, n, 4) < 0,
                  "aligned blocks (align %zu, size %zu) overlap", al, n);
            ::operator delete(p, n, a);
            ::operator delete[](q, a);
            ::operator delete(r, a, std::nothrow);
            ::operator delete[](s, n, a);
        }
}

} // namespace

int main()
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    printf("cxx_newdelete: libsyncpool.so %s\n", sp_under_syncpool() ? "loaded" : "NOT loaded");
    double t0 = sp_now();
    test_new_zero();
    test_aligned_range();
    test_failures();
    printf("  single-thread checks done (%.2f s)\n", sp_now() - t0);

    const int nthreads = 8, iters = 60000;
    std::vector<std::thread> th;
    for (int i = 0; i < nthreads; i++)
        th.emplace_back(worker, i, iters);
    for (auto &t : th)
        t.join();
    for (auto &it : queue)
        verify_and_delete(it, "queue (final)");
    queue.clear();
    for (Base *b : objq) {
        CHECK(b->ok(), "queued object corrupted");
        delete b;
    }
    objq.clear();
    for (std::string *s : strq)
        delete s;
    strq.clear();
    printf("  %d threads x %d iterations done (%.2f s)\n", nthreads, iters, sp_now() - t0);
    return sp_report("cxx_newdelete");
}
