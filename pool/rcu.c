/* rcu.c — the writer side of rcu.h over urcu-bp. */
#include "rcu.h"

#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
char sp_rcu_tsan_clock;
#endif

void sp_rcu_synchronize(void)
{
    sp_assert(!sp_rcu_inside());           /* it would wait for itself */
    urcu_bp_synchronize_rcu();
#if defined(__SANITIZE_THREAD__)
    __tsan_acquire(&sp_rcu_tsan_clock);
#endif
}

void sp_rcu_fork_prepare(void) { urcu_bp_before_fork(); }
void sp_rcu_fork_parent(void) { urcu_bp_after_fork_parent(); }
void sp_rcu_fork_child(void) { urcu_bp_after_fork_child(); }
