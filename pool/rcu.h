/* rcu.h — the read side of liburcu-bp, inlined (design decision 4), plus the annotations that let
 * ThreadSanitizer see the grace period as synchronisation (it cannot see sys_membarrier). */
#ifndef SYNCPOOL_RCU_H
#define SYNCPOOL_RCU_H

#define _LGPL_SOURCE
#include <urcu-bp.h>

#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char sp_rcu_tsan_clock;
#define SP_TSAN_RELEASE() __tsan_release(&sp_rcu_tsan_clock)
#define SP_TSAN_ACQUIRE() __tsan_acquire(&sp_rcu_tsan_clock)
#else
#define SP_TSAN_RELEASE() ((void)0)
#define SP_TSAN_ACQUIRE() ((void)0)
#endif

static inline void sp_rcu_lock(void) { urcu_bp_read_lock(); }
static inline void sp_rcu_unlock(void) { SP_TSAN_RELEASE(); urcu_bp_read_unlock(); }
/* Waits until every read-side critical section that was running when it was called has ended. */
static inline void sp_rcu_synchronize(void) { urcu_bp_synchronize_rcu(); SP_TSAN_ACQUIRE(); }

#endif
