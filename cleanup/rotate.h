/* rotate.h — the rotation thread: Go's poolCleanup, run by a timer instead of a GC.
 *
 * Every period: victim <- local, local <- fresh (pool_publish); one grace period
 * (synchronize_rcu) for all pools; then the generation that aged out goes back to the backend,
 * and so do the rings that thieves retired.  No stop-the-world: application threads only ever
 * wait for nothing; no lock a reader, a thread's set-up or exit, or fork takes is held while the
 * rotation waits for its grace period.
 *
 * The thread runs only while the process has application threads using the pools ("users"), so
 * it never keeps a process alive: when the last of them exits (main included, by pthread_exit),
 * it returns too, and glibc ends the process as it would without the library.  It is stopped
 * and joined around the calls the kernel refuses in a multi-threaded process (sp_rotator_pause). */
#ifndef SYNCPOOL_ROTATE_H
#define SYNCPOOL_ROTATE_H

#include <stdbool.h>
#include <stdint.h>

/* Period in ms (0 = never rotate on a timer).  purge: the thread also purges the backend's dirty
 * pages, once it is armed (be_take_over_purging).  Call once, from the thread that sets the pools
 * up (it also allocates the spare generations), before the first sp_rotator_user_add. */
void sp_rotator_configure(long period_ms, bool purge);
/* The pools are warm (pool.h, sp_pool_set_warm_hook): from now on the thread runs whenever it has
 * users (until then it is not started: a small program caches too little to need it).  Takes
 * over the backend's purging first, if configured.  Outside the allocator and any read-side
 * section. */
void sp_rotator_arm(void);
/* An application thread starts (add) or stops (drop) using the pools.  add starts the thread
 * if it should run (armed) and does not: call it outside the allocator (pthread_create
 * allocates; the caller's thread state keeps those allocations out of the pools) and outside any
 * read-side section.  drop ends it after the last user. */
void sp_rotator_user_add(void);
void sp_rotator_user_drop(void);
/* Stops and joins the thread (process exit); it is not started again.  Pools keep working,
 * without rotation. */
void sp_rotator_stop(void);
/* Around a call that needs a single-threaded process (unshare, setns): pause stops and joins
 * the thread (true: it joined one, which may still be leaving the kernel's thread group for a
 * few microseconds); resume starts it again if it has users.  Outside any read-side section. */
bool sp_rotator_pause(void);
void sp_rotator_resume(void);
/* One rotation, synchronously.  Returns the number of objects released to the backend. */
uint64_t sp_rotate_once(void);
uint64_t sp_rotations(void);

/* Fork handlers: prepare takes the rotation's state lock, the pools' and the backend's locks,
 * then the read side's registry locks; none of them is held across a grace period. */
void sp_rotator_fork_prepare(void);
void sp_rotator_fork_parent(void);
void sp_rotator_fork_child(void);

#endif
