/* rcu.c — registry and writer side of the read-side sections (see rcu.h). */
#include "rcu.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
char sp_rcu_tsan_clock;
#endif

/* Readers, as a circular list through a sentinel.  The lock is held by (un)registration and by
 * the writer for a whole wait, so a reader's memory (thread-local storage) stays valid while
 * the writer reads its seq: an exiting thread unregisters before its TLS goes away. */
static pthread_mutex_t sp_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sp_rcu_reader sp_reg = {.next = &sp_reg, .prev = &sp_reg};

void sp_rcu_register(struct sp_rcu_reader *r, void *owner)
{
    pthread_mutex_lock(&sp_reg_lock);
    if (!r->registered) {
        r->owner = owner;
        r->next = sp_reg.next;
        r->prev = &sp_reg;
        sp_reg.next->prev = r;
        sp_reg.next = r;
        r->registered = true;
    }
    pthread_mutex_unlock(&sp_reg_lock);
}

void sp_rcu_unregister(struct sp_rcu_reader *r)
{
    pthread_mutex_lock(&sp_reg_lock);
    if (r->registered) {
        r->prev->next = r->next;
        r->next->prev = r->prev;
        r->next = r->prev = NULL;
        r->registered = false;
    }
    pthread_mutex_unlock(&sp_reg_lock);
}

void sp_rcu_each_reader(void (*fn)(void *owner, void *arg), void *arg)
{
    pthread_mutex_lock(&sp_reg_lock);
    for (struct sp_rcu_reader *r = sp_reg.next; r != &sp_reg; r = r->next) fn(r->owner, arg);
    pthread_mutex_unlock(&sp_reg_lock);
}

/* ---- the process-wide fence ------------------------------------------------------------- */

enum { SP_MB_UNKNOWN, SP_MB_SYSCALL, SP_MB_MPROTECT };
static int sp_mb_mode;                  /* under sp_mb_lock */
static bool sp_mb_forbid;               /* tests: sp_rcu_set_membarrier(false) */
static pthread_mutex_t sp_mb_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile long *sp_mb_page;

static long sp_membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

void sp_rcu_set_membarrier(bool use)
{
    pthread_mutex_lock(&sp_mb_lock);
    sp_mb_forbid = !use;
    sp_mb_mode = SP_MB_UNKNOWN;
    pthread_mutex_unlock(&sp_mb_lock);
}

static void sp_mprotect_fence(void)
{
    if (!sp_mb_page) {
        void *p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            /* Nothing else forces the fence: wait out a scheduler tick instead, after which every
             * CPU that ran a reader has context-switched or taken an interrupt (best effort). */
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
            return;
        }
        sp_mb_page = p;
    }
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    /* The page must be dirty and writable, or the kernel may skip the TLB shootdown (the same
     * technique CoreCLR uses as FlushProcessWriteBuffers where membarrier is missing). */
    mprotect((void *)sp_mb_page, ps, PROT_READ | PROT_WRITE);
    __atomic_fetch_add(sp_mb_page, 1, __ATOMIC_SEQ_CST);
    mprotect((void *)sp_mb_page, ps, PROT_NONE);
}

void sp_rcu_barrier(void)
{
    pthread_mutex_lock(&sp_mb_lock);
    if (sp_mb_mode == SP_MB_UNKNOWN) {
        long cmds = sp_mb_forbid ? -1 : sp_membarrier(MEMBARRIER_CMD_QUERY);
        sp_mb_mode = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                             sp_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
                         ? SP_MB_SYSCALL
                         : SP_MB_MPROTECT;
    }
    if (sp_mb_mode == SP_MB_SYSCALL && sp_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
        sp_mb_mode = SP_MB_MPROTECT;    /* refused after all (a seccomp filter added later) */
    if (sp_mb_mode == SP_MB_MPROTECT) sp_mprotect_fence();
    pthread_mutex_unlock(&sp_mb_lock);
}

/* ---- grace period --------------------------------------------------------------------- */

static void sp_wait_change(const uint64_t *seq, uint64_t was)
{
    for (unsigned spins = 0; __atomic_load_n(seq, __ATOMIC_ACQUIRE) == was; spins++) {
        if (spins < 64) {
            sched_yield();
        } else {
            /* A section that allocates from the backend may page-fault or mmap: back off. */
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

void sp_rcu_synchronize(void)
{
    sp_rcu_barrier();
    pthread_mutex_lock(&sp_reg_lock);
    for (struct sp_rcu_reader *r = sp_reg.next; r != &sp_reg; r = r->next) {
        uint64_t s = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
        if (s & 1) sp_wait_change(&r->seq, s);
    }
    pthread_mutex_unlock(&sp_reg_lock);
#if defined(__SANITIZE_THREAD__)
    __tsan_acquire(&sp_rcu_tsan_clock);
#endif
}

/* ---- fork ----------------------------------------------------------------------------- */

void sp_rcu_fork_prepare(void)
{
    pthread_mutex_lock(&sp_mb_lock);
    pthread_mutex_lock(&sp_reg_lock);
}

void sp_rcu_fork_parent(void)
{
    pthread_mutex_unlock(&sp_reg_lock);
    pthread_mutex_unlock(&sp_mb_lock);
}

void sp_rcu_fork_child(void)
{
    /* The other threads' readers are still mapped here (the child has a copy of their memory),
     * but their threads are gone. */
    for (struct sp_rcu_reader *r = sp_reg.next, *n; r != &sp_reg; r = n) {
        n = r->next;
        r->next = r->prev = NULL;
        r->registered = false;
    }
    sp_reg.next = sp_reg.prev = &sp_reg;
    pthread_mutex_init(&sp_reg_lock, NULL);
    pthread_mutex_init(&sp_mb_lock, NULL);
    sp_mb_mode = SP_MB_UNKNOWN;         /* register with membarrier again, for this process */
}
