// cxx_containers: a multithreaded C++ program built from std containers, printing checksums
// that do not depend on thread scheduling, so that its output under the preloaded library can
// be compared byte for byte with its output without it (tests/real/cxx_containers.sh).
//
//   sp_cxx_containers [SCALE]     (default 1; work grows linearly)
//
// Phases (each prints one line with a checksum):
//   1. local:   4 threads each build std::map<std::string, std::vector<int>>,
//               std::unordered_map<uint64_t, std::string>, std::set<std::string> and
//               std::vector<std::shared_ptr<Node>> from their own seeded RNG, erase and rebuild
//               parts, sort, and hash the result in order.
//   2. queue:   3 producers make std::shared_ptr<Item> (a string, a vector, a map each) and push
//               them through a mutex+condvar queue to 3 consumers, which hash and drop them (the
//               objects die in another thread); producers keep some references a while so the
//               last owner, and so the freeing thread, varies.  Sum of hashes (commutative).
//   3. shared:  4 threads insert/erase in one mutex-guarded std::unordered_map<std::string,
//               std::string> (each thread its own keys; rehashes move every node); the final
//               content, sorted, is hashed.
//   4. strings: std::to_string, concatenation, substr, std::sort of a vector<std::string>,
//               std::list splicing between threads (nodes allocated in one thread, freed in
//               another), std::deque.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "sp_test.h"

static uint64_t mix(uint64_t x) { return sp_mix(x); }

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(mix(seed) | 1) {}
    uint64_t next()
    {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545F4914F6CDD1DULL;
    }
};

static uint64_t hstr(const std::string &s, uint64_t h = 1469598103934665603ULL)
{
    for (unsigned char c : s)
        h = (h ^ c) * 1099511628211ULL;
    return h;
}

static std::string word(Rng &r, size_t maxlen)
{
    size_t n = 1 + r.next() % maxlen;
    std::string w;
    for (size_t i = 0; i < n; i++)
        w += (char)('a' + r.next() % 26);
    return w;
}

static int scale = 1;

// ---- phase 1 ------------------------------------------------------------------------------------
struct Node {
    uint64_t id;
    std::string name;
    std::vector<uint64_t> data;
};

static uint64_t local_work(int id)
{
    Rng r(1000 + (uint64_t)id);
    uint64_t h = 0;
    for (int rep = 0; rep < 3 * scale; rep++) {
        std::map<std::string, std::vector<int>> m;
        std::unordered_map<uint64_t, std::string> um;
        std::set<std::string> st;
        std::vector<std::shared_ptr<Node>> nodes;
        for (int i = 0; i < 20000; i++) {
            std::string w = word(r, 24);
            m[w].push_back(i);
            um[r.next() % 50000] = w + std::to_string(i);
            st.insert(w.substr(0, 1 + w.size() / 2));
            if (i % 3 == 0) {
                auto n = std::make_shared<Node>();
                n->id = (uint64_t)i;
                n->name = w;
                n->data.assign(1 + i % 40, (uint64_t)i * 7);
                nodes.push_back(std::move(n));
            }
        }
        for (auto it = m.begin(); it != m.end();)
            it = (it->second.size() % 2 == 0) ? m.erase(it) : std::next(it);
        for (uint64_t k = 0; k < 50000; k += 3)
            um.erase(k);
        nodes.erase(std::remove_if(nodes.begin(), nodes.end(),
                                   [](const std::shared_ptr<Node> &n) { return n->id % 7 == 1; }),
                    nodes.end());
        std::sort(nodes.begin(), nodes.end(),
                  [](const std::shared_ptr<Node> &a, const std::shared_ptr<Node> &b) {
                      return a->name < b->name || (a->name == b->name && a->id < b->id);
                  });
        for (auto &kv : m) {
            h = hstr(kv.first, h);
            for (int v : kv.second)
                h = mix(h + (uint64_t)v);
        }
        std::vector<std::pair<uint64_t, std::string>> flat(um.begin(), um.end());
        std::sort(flat.begin(), flat.end());
        for (auto &kv : flat)
            h = hstr(kv.second, mix(h + kv.first));
        for (auto &s : st)
            h = hstr(s, h);
        for (auto &n : nodes) {
            h = hstr(n->name, mix(h + n->id));
            for (uint64_t d : n->data)
                h = mix(h ^ d);
        }
    }
    return h;
}

// ---- phase 2 ------------------------------------------------------------------------------------
struct Item {
    uint64_t seq;
    std::string text;
    std::vector<uint64_t> vals;
    std::map<int, int> kv;
};

static uint64_t hitem(const Item &it)
{
    uint64_t h = hstr(it.text, mix(it.seq));
    for (uint64_t v : it.vals)
        h = mix(h + v);
    for (auto &p : it.kv)
        h = mix(h + (uint64_t)p.first * 31 + (uint64_t)p.second);
    return h;
}

static std::mutex qm;
static std::condition_variable qcv;
static std::deque<std::shared_ptr<Item>> q;
static int producers_left;
static std::atomic<uint64_t> consumed_sum, consumed_n;

static void producer(int id)
{
    Rng r(2000 + (uint64_t)id);
    std::deque<std::shared_ptr<Item>> keep; // some references outlive the hand-over
    for (int i = 0; i < 20000 * scale; i++) {
        auto it = std::make_shared<Item>();
        it->seq = (uint64_t)id * 1000000 + (uint64_t)i;
        it->text = word(r, 200);
        it->vals.resize(r.next() % 64);
        for (auto &v : it->vals)
            v = r.next() % 1000;
        for (int k = 0, n = (int)(r.next() % 12); k < n; k++)
            it->kv[(int)(r.next() % 100)] = k;
        if (i % 4 == 0)
            keep.push_back(it);
        if (keep.size() > 64)
            keep.pop_front();
        {
            std::lock_guard<std::mutex> g(qm);
            q.push_back(std::move(it));
        }
        qcv.notify_one();
        if (i % 1000 == 999) { // stay within the consumers' reach
            std::unique_lock<std::mutex> g(qm);
            qcv.wait(g, [] { return q.size() < 4000; });
        }
    }
    std::lock_guard<std::mutex> g(qm);
    producers_left--;
    qcv.notify_all();
}

static void consumer()
{
    uint64_t sum = 0, n = 0;
    for (;;) {
        std::shared_ptr<Item> it;
        {
            std::unique_lock<std::mutex> g(qm);
            qcv.wait(g, [] { return !q.empty() || producers_left == 0; });
            if (q.empty())
                break;
            it = std::move(q.front());
            q.pop_front();
            if (q.size() < 4000)
                qcv.notify_all();
        }
        sum += hitem(*it);
        n++;
        it->text += "x"; // touch it, then (usually) the last reference dies here
    }
    consumed_sum += sum;
    consumed_n += n;
}

// ---- phase 3 ------------------------------------------------------------------------------------
static std::mutex um_lock;
static std::unordered_map<std::string, std::string> shared_map;

static void shared_work(int id)
{
    Rng r(3000 + (uint64_t)id);
    for (int i = 0; i < 30000 * scale; i++) {
        uint64_t k = r.next() % 20000;
        std::string key = "t" + std::to_string(id) + ":" + std::to_string(k);
        std::lock_guard<std::mutex> g(um_lock);
        if (r.next() % 3 == 0)
            shared_map.erase(key);
        else
            shared_map[key] = std::string(1 + k % 90, (char)('A' + (i + id) % 26));
    }
}

// ---- phase 4 ------------------------------------------------------------------------------------
static std::mutex list_lock;
static std::list<std::string> shared_list;

static uint64_t string_work(int id)
{
    Rng r(4000 + (uint64_t)id);
    uint64_t h = 0;
    std::vector<std::string> v;
    std::deque<std::string> dq;
    for (int i = 0; i < 40000 * scale; i++) {
        std::string s = std::to_string(r.next() % 1000000) + "-" + word(r, 30);
        if (s.size() > 10)
            s = s.substr(2, s.size() - 4) + s.substr(0, 2);
        v.push_back(s);
        dq.push_back(s + s);
        if (dq.size() > 100)
            dq.pop_front();
    }
    std::sort(v.begin(), v.end());
    for (auto &s : v)
        h = hstr(s, h);
    for (auto &s : dq)
        h = hstr(s, h);
    // list nodes made here, spliced into a shared list; whoever runs last frees them all
    std::list<std::string> mine;
    for (int i = 0; i < 5000 * scale; i++)
        mine.push_back(std::to_string(id) + "/" + std::to_string(i));
    std::lock_guard<std::mutex> g(list_lock);
    shared_list.splice(shared_list.end(), mine);
    if (shared_list.size() > 12000)
        shared_list.erase(shared_list.begin(), std::next(shared_list.begin(), 6000));
    return h;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        scale = std::max(1, atoi(argv[1]));
    setvbuf(stdout, nullptr, _IOLBF, 0);

    {
        std::vector<uint64_t> res(4);
        std::vector<std::thread> th;
        for (int i = 0; i < 4; i++)
            th.emplace_back([&res, i] { res[i] = local_work(i); });
        for (auto &t : th)
            t.join();
        printf("local:   %016llx %016llx %016llx %016llx\n", (unsigned long long)res[0],
               (unsigned long long)res[1], (unsigned long long)res[2],
               (unsigned long long)res[3]);
    }
    {
        producers_left = 3;
        std::vector<std::thread> th;
        for (int i = 0; i < 3; i++)
            th.emplace_back(consumer);
        for (int i = 0; i < 3; i++)
            th.emplace_back(producer, i);
        for (auto &t : th)
            t.join();
        printf("queue:   %llu items, sum %016llx\n", (unsigned long long)consumed_n.load(),
               (unsigned long long)consumed_sum.load());
    }
    {
        std::vector<std::thread> th;
        for (int i = 0; i < 4; i++)
            th.emplace_back(shared_work, i);
        for (auto &t : th)
            t.join();
        std::vector<std::pair<std::string, std::string>> flat(shared_map.begin(),
                                                              shared_map.end());
        std::sort(flat.begin(), flat.end());
        uint64_t h = 0;
        for (auto &kv : flat)
            h = hstr(kv.second, hstr(kv.first, h));
        printf("shared:  %zu keys, %016llx\n", flat.size(), (unsigned long long)h);
        shared_map.clear();
    }
    {
        std::vector<uint64_t> res(4);
        std::vector<std::thread> th;
        for (int i = 0; i < 4; i++)
            th.emplace_back([&res, i] { res[i] = string_work(i); });
        for (auto &t : th)
            t.join();
        size_t n = shared_list.size(); // depends on order only through which 6000 were dropped
        printf("strings: %016llx %016llx %016llx %016llx; list %zu\n",
               (unsigned long long)res[0], (unsigned long long)res[1],
               (unsigned long long)res[2], (unsigned long long)res[3], n);
        shared_list.clear();
    }
    return 0;
}
