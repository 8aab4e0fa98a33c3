// prodcons: producer/consumer.  For each of PAIRS pairs, one thread allocates messages and passes
// them through a bounded single-producer/single-consumer ring to a second thread, which checks
// and frees them.  Every object dies on a thread other than the one that made it, and the
// consumer's thread never allocates: the hard case for thread caches and per-thread pools.
// Written in C++ with ::operator new and sized ::operator delete, the way C++ containers do it.
//
// usage: prodcons MESSAGES [PAIRS]   (MESSAGES in total, default 1 pair)
// Sizes are 16..512 bytes, skewed to the small end; the ring holds 1024 messages.
#include "bench.h"

#include <atomic>
#include <new>
#include <sched.h>
#include <thread>
#include <vector>

namespace {

const char *prog = "prodcons";
constexpr size_t kRing = 1024;

struct Msg {
    void *p;
    uint32_t n;
    uint32_t tag;
};

struct alignas(64) Index {
    std::atomic<size_t> v{0};
};

struct Channel {
    Msg ring[kRing];
    Index head;  // written by the consumer
    Index tail;  // written by the producer
    size_t count = 0;
    size_t checked = 0;
};

void produce(Channel *ch, uint64_t seed)
{
    uint64_t rng = rng_seed(seed);
    size_t tail = 0;
    for (size_t i = 0; i < ch->count; i++) {
        Msg m;
        m.n = static_cast<uint32_t>(rng_small_size(&rng, 16, 512));
        m.tag = static_cast<uint32_t>(i + 1);
        m.p = ::operator new(m.n);
        obj_fill(m.p, m.n, m.tag);
        while (tail - ch->head.v.load(std::memory_order_acquire) == kRing)
            sched_yield();
        ch->ring[tail % kRing] = m;
        ch->tail.v.store(++tail, std::memory_order_release);
    }
}

void consume(Channel *ch)
{
    size_t head = 0;
    uint32_t expect = 1;
    while (head < ch->count) {
        while (ch->tail.v.load(std::memory_order_acquire) == head)
            sched_yield();
        Msg m = ch->ring[head % kRing];
        ch->head.v.store(++head, std::memory_order_release);
        if (m.tag != expect++ || obj_check(m.p, m.n, m.tag) != 0)
            bench_fail(prog, "message %u (size %u) arrived damaged or out of order", m.tag, m.n);
        ::operator delete(m.p, m.n);
        ch->checked++;
    }
}

}  // namespace

int main(int argc, char **argv)
{
    size_t total = bench_arg(argc, argv, 1, 3000000, "MESSAGES [PAIRS]");
    size_t pairs = bench_arg(argc, argv, 2, 1, "MESSAGES [PAIRS]");
    std::vector<Channel *> chans;
    for (size_t i = 0; i < pairs; i++) {
        chans.push_back(new Channel);
        chans.back()->count = total / pairs;
    }
    double t0 = bench_now();
    std::vector<std::thread> threads;
    for (size_t i = 0; i < pairs; i++) {
        threads.emplace_back(produce, chans[i], 100 + i);
        threads.emplace_back(consume, chans[i]);
    }
    for (auto &t : threads)
        t.join();
    double dt = bench_now() - t0;
    size_t checked = 0;
    for (auto *c : chans) {
        checked += c->checked;
        delete c;
    }
    if (checked != (total / pairs) * pairs)
        bench_fail(prog, "%zu messages checked, expected %zu", checked, (total / pairs) * pairs);
    printf("pairs=%zu\n", pairs);
    bench_report(static_cast<double>(checked), dt);
    return 0;
}
