// prodcons: producer/consumer.  For each of PAIRS pairs, one thread allocates messages and passes
// them through a bounded single-producer/single-consumer ring to a second thread, which checks
// and frees them.  Every object dies on a thread other than the one that made it, and the
// consumer's thread never allocates: the hard case for thread caches and per-thread pools.
// Written in C++ with ::operator new and sized ::operator delete, the way C++ containers do it.
//
// usage: prodcons MESSAGES [PAIRS] [same|split]   (MESSAGES in total, default 1 pair)
// Sizes are 16..512 bytes, skewed to the small end; the ring holds 1024 messages.
// The scheduler decides where the two threads of a pair run, unless the third argument pins them:
// `same` puts both on one CPU (pair i on CPU i), `split` on two (CPUs 2i and 2i + 1), modulo the
// CPUs the process may use.  On a 2-CPU machine the unpinned run is bimodal (docs/performance.md).
#include "bench.h"

#include <atomic>
#include <cstring>
#include <new>
#include <pthread.h>
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

// The two threads share only the ring and its two indices, and each rereads the other's index
// only when the ring looks full (producer) or empty (consumer).  The message count is read into a
// local and the consumer's tally is written once at the end.  Before, the count and the tally
// shared a cache line the consumer wrote and the producer read for every message, and each thread
// read the other's index for every message: the channel's own cache-line traffic, a cost of the
// benchmark and not of the allocator, took most of the time (docs/performance.md, section 4).
struct Channel {
    Msg ring[kRing];
    Index head;  // written by the consumer
    Index tail;  // written by the producer
    alignas(64) size_t count = 0;
    size_t checked = 0;
};

void produce(Channel *ch, uint64_t seed)
{
    uint64_t rng = rng_seed(seed);
    size_t tail = 0, count = ch->count;
    size_t head = 0;   // the consumer's index as last read: reread only when the ring looks full
    for (size_t i = 0; i < count; i++) {
        Msg m;
        m.n = static_cast<uint32_t>(rng_small_size(&rng, 16, 512));
        m.tag = static_cast<uint32_t>(i + 1);
        m.p = ::operator new(m.n);
        obj_fill(m.p, m.n, m.tag);
        while (tail - head == kRing) {
            head = ch->head.v.load(std::memory_order_acquire);
            if (tail - head == kRing)
                sched_yield();
        }
        ch->ring[tail % kRing] = m;
        ch->tail.v.store(++tail, std::memory_order_release);
    }
}

void consume(Channel *ch)
{
    size_t head = 0, count = ch->count, checked = 0;
    size_t tail = 0;   // the producer's index as last read: reread only when the ring looks empty
    uint32_t expect = 1;
    while (head < count) {
        while (tail == head) {
            tail = ch->tail.v.load(std::memory_order_acquire);
            if (tail == head)
                sched_yield();
        }
        Msg m = ch->ring[head % kRing];
        ch->head.v.store(++head, std::memory_order_release);
        if (m.tag != expect++ || obj_check(m.p, m.n, m.tag) != 0)
            bench_fail(prog, "message %u (size %u) arrived damaged or out of order", m.tag, m.n);
        ::operator delete(m.p, m.n);
        checked++;
    }
    ch->checked = checked;
}

// Pins thread t to the k-th CPU (modulo their number) of the process's affinity mask.
void pin(std::thread &t, size_t k)
{
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        bench_fail(prog, "sched_getaffinity failed");
    size_t n = static_cast<size_t>(CPU_COUNT(&allowed)), seen = 0;
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        if (seen++ == k % n) {
            CPU_SET(cpu, &one);
            break;
        }
    }
    if (pthread_setaffinity_np(t.native_handle(), sizeof one, &one) != 0)
        bench_fail(prog, "pthread_setaffinity_np failed");
}

}  // namespace

int main(int argc, char **argv)
{
    size_t total = bench_arg(argc, argv, 1, 3000000, "MESSAGES [PAIRS] [same|split]");
    const char *usage = "MESSAGES [PAIRS] [same|split]";
    size_t pairs = bench_arg(argc, argv, 2, 1, usage);
    int placement = 0;   // 0: the scheduler's, 1: same CPU, 2: split
    if (argc > 3) {
        if (!strcmp(argv[3], "same")) {
            placement = 1;
        } else if (!strcmp(argv[3], "split")) {
            placement = 2;
        } else {
            fprintf(stderr, "usage: %s %s\n", argv[0], usage);
            return 2;
        }
    }
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
        if (placement) {
            pin(threads[2 * i], placement == 1 ? i : 2 * i);
            pin(threads[2 * i + 1], placement == 1 ? i : 2 * i + 1);
        }
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
    printf("placement=%s\n", placement == 0 ? "scheduler" : placement == 1 ? "same" : "split");
    bench_report(static_cast<double>(checked), dt);
    return 0;
}
