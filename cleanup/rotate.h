/* rotate.h — the rotation thread: Go's poolCleanup, run by a timer instead of a GC.
 *
 * Every period: victim <- local, local <- fresh (pool_publish); one grace period
 * (synchronize_rcu) for all pools; then the generation that aged out goes back to the backend,
 * and so do the rings that thieves retired.  No stop-the-world: application threads only ever
 * wait for nothing; the rotation lock is never taken by a reader. */
#ifndef SYNCPOOL_ROTATE_H
#define SYNCPOOL_ROTATE_H

#include <stdbool.h>
#include <stdint.h>

/* Period in ms (0 = never rotate on a timer).  purge: the thread also purges the backend's dirty
 * pages (after be_take_over_purging).  Call once, from the thread that sets the pools up (it also
 * allocates the spare generations), before the first sp_rotator_ensure_started. */
void sp_rotator_configure(long period_ms, bool purge);
long sp_rotator_period(void);
/* Starts the thread if it should run and does not yet.  Call with the re-entry guard held:
 * pthread_create allocates. */
void sp_rotator_ensure_started(void);
/* Stops and joins the thread (process exit).  Pools keep working, without rotation. */
void sp_rotator_stop(void);
/* One rotation, synchronously.  Returns the number of objects released to the backend. */
uint64_t sp_rotate_once(void);
uint64_t sp_rotations(void);

/* Fork handlers: prepare takes the rotation lock, then the read side's registry locks. */
void sp_rotator_fork_prepare(void);
void sp_rotator_fork_parent(void);
void sp_rotator_fork_child(void);

#endif
