/* rcu.h — read-side sections and grace periods, from liburcu's urcu-bp flavour (design
 * decision 4).
 *
 * What a section protects: every structure another thread may retire while this one reads it —
 * the generations (local and victim) and every P's pblock in them, the rings of every shared
 * chain (thieves unlink them, the owner walks back past its head ring), and the retire list's
 * rings.  The rotation (cleanup/) publishes, waits for a grace period (sp_rcu_synchronize), and
 * only then frees what it unpublished.  A P's private cache (pool.h, struct sp_pcache) is not in
 * that list: it belongs to the P for the life of the process and only its owner touches it, so
 * the fast paths open no section.
 *
 * Why urcu-bp: it is the flavour made for libraries that run in threads they never saw created.
 * A thread registers itself on its first section (an mmap-ed registry, no malloc), a
 * pthread-key destructor unregisters it, and its fork hooks (called from ours, cleanup/) keep the
 * registry right in a child.  The read side is inlined (_LGPL_SOURCE) and reaches its TLS
 * pointer with an initial-exec access (the library is built -ftls-model=initial-exec, and
 * liburcu-bp is loaded with us, so its TLS is in the static block): a lock+unlock pair is a
 * handful of plain instructions, and with sys_membarrier only compiler barriers (the writer
 * issues the fences).  Cost measured per section on the slow paths: docs/performance.md.
 *
 * Rules: a section is opened and closed in the same function (as Go pins and unpins in Get); it
 * never waits for anything the rotation holds; sp_rcu_synchronize is never called inside one.
 * urcu-bp's sections nest, so a signal handler's section inside an interrupted one is harmless,
 * but the re-entry guard (guard.h) keeps handlers away from the pools in the first place.
 * call_rcu and defer_rcu are not used: they allocate and start threads. */
#ifndef SYNCPOOL_RCU_H
#define SYNCPOOL_RCU_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-bp.h>

#include <stdbool.h>

#include "sp_assert.h"

#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer does not see inside liburcu (not instrumented) nor the membarrier it relies
 * on: each section's end releases, and the end of each grace period acquires, one clock. */
void __tsan_release(void *addr);
extern char sp_rcu_tsan_clock;
#define SP_RCU_TSAN_RELEASE() __tsan_release(&sp_rcu_tsan_clock)
#else
#define SP_RCU_TSAN_RELEASE() ((void)0)
#endif

static inline void sp_rcu_read_lock(void) { urcu_bp_read_lock(); }
static inline void sp_rcu_read_unlock(void)
{
    SP_RCU_TSAN_RELEASE();
    urcu_bp_read_unlock();
}
static inline bool sp_rcu_inside(void) { return urcu_bp_read_ongoing(); }

/* Writer side: returns once every section that started before the call has ended.  Not inside
 * a section.  Allocates nothing (urcu-bp's synchronize_rcu uses the stack and two mutexes). */
void sp_rcu_synchronize(void);

/* Fork (called from cleanup/'s handlers, inside the library's own locks): liburcu-bp takes its
 * grace-period and registry locks in prepare, and in the child drops every reader but the
 * forking thread's. */
void sp_rcu_fork_prepare(void);
void sp_rcu_fork_parent(void);
void sp_rcu_fork_child(void);

#endif
