/* rcu.h — read-side critical sections for the pools: a test and an add to enter, an add to
 * leave.
 *
 * The protocol is liburcu's membarrier flavour reduced to what syncpool needs (design.md,
 * "Read side"; it replaced urcu-bp, whose read side cost 23 instructions per section):
 *
 *  - Each reader owns a counter `seq`, odd while it is inside a section.  Entering tests bit 0
 *    and adds 1, leaving adds 1, all plain instructions of its owner: no fence, no locked
 *    instruction.
 *  - The writer (cleanup/'s rotation, and the tests) publishes new pointers, then calls
 *    sp_rcu_synchronize():
 *      1. sp_rcu_barrier(): sys_membarrier(PRIVATE_EXPEDITED) makes every running thread of the
 *         process execute a full fence.  After it, a reader either has its odd seq visible to
 *         the writer, or starts its section after the fence and loads the new pointers.
 *      2. For every registered reader whose seq is odd, wait until seq changes: that section,
 *         which may hold an old pointer, has ended.  (Waiting for a change, not for "even",
 *         means a reader that enters sections back to back cannot starve the writer.)  The
 *         registry lock is released between looks, so a reader stopped inside a section holds
 *         up this grace period only, not the registration of other threads or fork.
 *    After it returns, no reader holds a pointer it loaded before step 1.
 *  - Sections never nest (but see sp_rcu_enter for a signal handler's) and never wait for
 *    anything the writer holds.  A reader must not enter a section after sp_rcu_unregister.
 *
 * Without sys_membarrier (old kernel, seccomp) step 1 falls back to changing the protection of
 * a dirty page, which makes the kernel interrupt every CPU running the process to flush its
 * TLB: the same full fence on each of them, only slower. */
#ifndef SYNCPOOL_RCU_H
#define SYNCPOOL_RCU_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_assert.h"

struct sp_rcu_reader {
    uint64_t seq;                       /* odd inside a section; written only by its owner */
    void *owner;                        /* what sp_rcu_each_reader hands its callback */
    struct sp_rcu_reader *next, *prev;  /* the registry, under its lock */
    uint64_t wait_seq;                  /* the seq a grace period waits to see change (its lock) */
    bool registered;
};

/* sp_rcu_enter returns false when it opened a section, and true, opening nothing, when the thread
 * was inside one already: only a signal handler that interrupted the section and calls the
 * allocator can get there, since sections never nest otherwise.  Such a caller must not use
 * what the interrupted section may be changing (nested.h), must not call sp_rcu_exit, and leaves
 * seq odd: the writer keeps waiting for the interrupted section, which the handler's own calls
 * can neither end nor make look ended. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char sp_rcu_tsan_clock;
/* ThreadSanitizer cannot see sys_membarrier: atomics it models, and an explicit release from
 * every section to the writer's acquire after its wait. */
static inline bool sp_rcu_enter(struct sp_rcu_reader *r)
{
    return __atomic_fetch_or(&r->seq, 1, __ATOMIC_SEQ_CST) & 1;
}
static inline void sp_rcu_exit(struct sp_rcu_reader *r)
{
    sp_assert(__atomic_load_n(&r->seq, __ATOMIC_RELAXED) & 1);   /* inside a section */
    __tsan_release(&sp_rcu_tsan_clock);
    __atomic_fetch_add(&r->seq, 1, __ATOMIC_RELEASE);
}
#elif defined(__x86_64__)
/* A test of bit 0 and one `addq` on the owner's own counter to enter, one `addq` to leave.  None
 * is a locked instruction: only the owner writes seq (a signal handler runs on the owner's
 * thread, between its instructions: one that lands between the test and the add runs whole
 * sections of its own, which leave seq even again), and the writer's 8-byte loads of it cannot
 * tear.  (`btsq $0` would test and set in one instruction, but it made a malloc+free pair 2.4
 * times slower on the AMD EPYC these machines have: docs/performance.md.)  The "memory" clobber
 * keeps the compiler from moving the section's loads and stores across them; the CPU keeps
 * stores in order and does not move a store before an earlier load (x86-TSO), so when the writer
 * sees seq change, everything the section did is visible.  The store-then-load order on entry,
 * the one TSO does not give, is what sp_rcu_barrier supplies. */
static inline bool sp_rcu_enter(struct sp_rcu_reader *r)
{
    bool inside;
    __asm__ __volatile__("testb $1, %1" : "=@ccnz"(inside) : "m"(r->seq) : "memory");
    if (__builtin_expect(inside, 0)) return true;
    __asm__ __volatile__("addq $1, %0" : "+m"(r->seq) : : "memory");
    return false;
}
static inline void sp_rcu_exit(struct sp_rcu_reader *r)
{
    sp_assert(r->seq & 1);                  /* inside a section */
    __asm__ __volatile__("addq $1, %0" : "+m"(r->seq) : : "memory");
}
#else
static inline bool sp_rcu_enter(struct sp_rcu_reader *r)
{
    uint64_t s = __atomic_load_n(&r->seq, __ATOMIC_RELAXED);
    if (s & 1) return true;
    __atomic_store_n(&r->seq, s + 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return false;
}
static inline void sp_rcu_exit(struct sp_rcu_reader *r)
{
    sp_assert(__atomic_load_n(&r->seq, __ATOMIC_RELAXED) & 1);   /* inside a section */
    __atomic_store_n(&r->seq, __atomic_load_n(&r->seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}
#endif

/* Registration: from the reader's own thread, outside any section.  register may be called
 * again after unregister.  owner is passed to sp_rcu_each_reader's callback. */
void sp_rcu_register(struct sp_rcu_reader *r, void *owner);
void sp_rcu_unregister(struct sp_rcu_reader *r);

/* Writer side (any thread that is not inside a section; writers serialise among themselves). */
void sp_rcu_barrier(void);
void sp_rcu_synchronize(void);
/* Calls fn(owner) for every registered reader, under the registry lock (so no reader
 * unregisters meanwhile; fn must not take locks a reader could hold). */
void sp_rcu_each_reader(void (*fn)(void *owner, void *arg), void *arg);

/* Fork: prepare takes the registry lock (held only briefly, never across a grace period's wait);
 * in the child only the forking thread exists, so the registry is emptied (that thread registers
 * again when it needs to) and a grace period that was in progress is forgotten. */
void sp_rcu_fork_prepare(void);
void sp_rcu_fork_parent(void);
void sp_rcu_fork_child(void);

/* Tests: false forces the mprotect fallback of sp_rcu_barrier. */
void sp_rcu_set_membarrier(bool use);

#endif
