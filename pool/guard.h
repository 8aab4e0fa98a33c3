/* guard.h — "this thread is inside the allocator": the re-entry guard of every Get, Put and
 * backend pass-through (design decision 6).
 *
 * A signal handler that interrupts the allocator and allocates itself must touch neither the
 * thread's own caches (an owner-only step may be half done) nor the backend (its thread cache
 * may be half updated, or one of its locks held): it is served by nested.h instead.  The guard
 * tells it so: a counter owned by the thread, odd while the thread is inside the allocator.
 *
 * It is not a read-side section: nothing waits for it (the rotation only looks at it, to leave
 * alone the private stacks of an owner that is inside the allocator: gen.c).  What other
 * threads may retire is read inside liburcu's sections (rcu.h), which the slow paths open and
 * close around those reads; the fast paths touch only the P's own private cache, which no other
 * thread frees or writes (pool.h). */
#ifndef SYNCPOOL_GUARD_H
#define SYNCPOOL_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_assert.h"

/* sp_guard_enter returns false when the thread was outside the allocator (the guard is now
 * held), and true, changing nothing, when it was inside already: only a signal handler that
 * interrupted the allocator can get there.  Such a caller must not use what the interrupted code
 * may be changing (nested.h) and must not call sp_guard_exit: the interrupted code does.
 *
 * Only the owner writes the counter, and a signal handler runs on the owner's thread, between
 * its instructions: one that lands between the test and the add finds the guard free and runs
 * whole Gets and Puts of its own, which leave it even again.  So plain instructions suffice, no
 * locked one and no fence; what must not happen is the compiler moving the cache's loads and
 * stores across them ("memory" clobber, signal fences). */
#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer does not see the rotation's handshake with an idle owner (gen.c, "Idle Ps"),
 * which rests on a process-wide fence: each exit releases the guard's clock, which the rotation
 * acquires when it finds the guard free. */
void __tsan_release(void *addr);
#define SP_GUARD_TSAN_RELEASE(g) __tsan_release(g)
#else
#define SP_GUARD_TSAN_RELEASE(g) ((void)0)
#endif

#if defined(__x86_64__)
/* A test of bit 0 and one `addq` to enter, one `addq` to leave.  (`btsq $0` would test and set in
 * one instruction, but it made a malloc+free pair 2.4 times slower on the AMD EPYC these machines
 * have: docs/performance.md.) */
static inline bool sp_guard_enter(uint64_t *g)
{
    bool inside;
    __asm__ __volatile__("testb $1, %1" : "=@ccnz"(inside) : "m"(*g) : "memory");
    if (__builtin_expect(inside, 0)) return true;
    __asm__ __volatile__("addq $1, %0" : "+m"(*g) : : "memory");
    return false;
}
static inline void sp_guard_exit(uint64_t *g)
{
    sp_assert(*g & 1);                      /* held */
    SP_GUARD_TSAN_RELEASE(g);
    __asm__ __volatile__("addq $1, %0" : "+m"(*g) : : "memory");
}
#else
static inline bool sp_guard_enter(uint64_t *g)
{
    uint64_t s = __atomic_load_n(g, __ATOMIC_RELAXED);
    if (s & 1) return true;
    __atomic_store_n(g, s + 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return false;
}
static inline void sp_guard_exit(uint64_t *g)
{
    sp_assert(__atomic_load_n(g, __ATOMIC_RELAXED) & 1);   /* held */
    SP_GUARD_TSAN_RELEASE(g);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(g, __atomic_load_n(g, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}
#endif

static inline bool sp_guard_held(const uint64_t *g) { return __atomic_load_n(g, __ATOMIC_RELAXED) & 1; }

#endif
