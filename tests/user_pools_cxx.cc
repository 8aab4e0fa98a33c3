// The program pools' API from C++ (include/syncpool.h is extern "C"): a pool of request contexts
// with a constructor and a destructor, used by 4 std::threads.  Exits 0 if every context came
// back intact and every one made was destroyed once.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <syncpool.h>

namespace {
std::atomic<long> made{0}, destroyed{0}, bad{0};

struct Ctx {
    std::string path;
    std::vector<int> headers;
    Ctx() { made++; }
    ~Ctx() { destroyed++; }
};

struct CtxPool {
    syncpool_pool *pool;
    CtxPool()
    {
        syncpool_pool_config cfg{};
        cfg.new_object = [](void *) -> void * { return new Ctx; };
        cfg.drop_object = [](void *obj, void *) { delete static_cast<Ctx *>(obj); };
        cfg.object_size_hint = sizeof(Ctx);
        cfg.name = "cxx-contexts";
        pool = syncpool_pool_create(&cfg);
    }
    ~CtxPool() { syncpool_pool_destroy(pool); }
    Ctx *get() { return static_cast<Ctx *>(syncpool_pool_get(pool)); }
    void put(Ctx *c)
    {
        c->path.clear();                  // reset before it goes back, as Go programs do
        c->headers.clear();
        syncpool_pool_put(pool, c);
    }
};
}  // namespace

int main()
{
    {
        CtxPool pool;
        if (!pool.pool) return 2;
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; t++)
            ts.emplace_back([&pool, t] {
                for (int i = 0; i < 100000; i++) {
                    Ctx *c = pool.get();
                    if (!c->path.empty() || !c->headers.empty()) bad++;
                    c->path = "/req/" + std::to_string(t) + "/" + std::to_string(i);
                    c->headers.assign(8, i);
                    if (c->headers[7] != i) bad++;
                    pool.put(c);
                }
            });
        for (auto &th : ts) th.join();
    }
    std::printf("user_pools_cxx: %ld made, %ld destroyed, %ld bad\n", made.load(),
                destroyed.load(), bad.load());
    return made == destroyed && bad == 0 && made > 0 ? 0 : 1;
}
