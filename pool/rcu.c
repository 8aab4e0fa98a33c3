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

/* Readers, as circular lists through sentinels: `sp_reg` holds the readers no grace period is
 * waiting for, `sp_wait` those the current grace period still waits for (sp_rcu_synchronize).
 * Both are under sp_reg_lock, and a reader is on exactly one of them while it is registered, so
 * unregistering unlinks it from whichever holds it.  The lock is held by (un)registration and by
 * the writer only while it looks at the readers' counters, never while it waits: a reader
 * stopped inside a section (a page fault, SIGSTOP, a debugger) delays the grace period, but no
 * thread start, thread exit or fork.  A reader's memory (thread-local storage) stays valid while
 * the writer reads its seq under the lock, since an exiting thread unregisters first. */
static pthread_mutex_t sp_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sp_rcu_reader sp_reg = {.next = &sp_reg, .prev = &sp_reg};
static struct sp_rcu_reader sp_wait = {.next = &sp_wait, .prev = &sp_wait};
/* One grace period at a time (sp_wait is the current one's); held across the wait.  Fork does not
 * take it: in the child no grace period is in progress, and the lock is made anew. */
static pthread_mutex_t sp_gp_lock = PTHREAD_MUTEX_INITIALIZER;

static void sp_list_unlink(struct sp_rcu_reader *r)
{
    sp_assert_held(&sp_reg_lock);
    sp_assert(r->registered && r->next != NULL && r->prev != NULL);   /* on sp_reg or sp_wait */
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void sp_list_add(struct sp_rcu_reader *head, struct sp_rcu_reader *r)
{
    sp_assert_held(&sp_reg_lock);
    sp_assert(r->next == NULL && r->prev == NULL);   /* on no list: a reader is on one at most */
    r->next = head->next;
    r->prev = head;
    head->next->prev = r;
    head->next = r;
}

void sp_rcu_register(struct sp_rcu_reader *r, void *owner)
{
    sp_assert(!(r->seq & 1));               /* outside any section */
    pthread_mutex_lock(&sp_reg_lock);
    if (!r->registered) {
        r->owner = owner;
        sp_list_add(&sp_reg, r);
        r->registered = true;
    }
    pthread_mutex_unlock(&sp_reg_lock);
}

void sp_rcu_unregister(struct sp_rcu_reader *r)
{
    sp_assert(!(r->seq & 1));               /* outside any section */
    pthread_mutex_lock(&sp_reg_lock);
    if (r->registered) {
        sp_list_unlink(r);              /* from sp_reg or sp_wait */
        r->registered = false;
    }
    pthread_mutex_unlock(&sp_reg_lock);
}

void sp_rcu_each_reader(void (*fn)(void *owner, void *arg), void *arg)
{
    pthread_mutex_lock(&sp_reg_lock);
    for (struct sp_rcu_reader *r = sp_reg.next; r != &sp_reg; r = r->next) fn(r->owner, arg);
    for (struct sp_rcu_reader *r = sp_wait.next; r != &sp_wait; r = r->next) fn(r->owner, arg);
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
    sp_assert(sp_mb_mode == SP_MB_SYSCALL || sp_mb_mode == SP_MB_MPROTECT);
    pthread_mutex_unlock(&sp_mb_lock);
}

/* ---- grace period --------------------------------------------------------------------- */

/* Between two looks at the waited-for readers, with sp_reg_lock released. */
static void sp_wait_pause(unsigned round)
{
    if (round < 64) {
        sched_yield();
    } else {
        /* A section that allocates from the backend may page-fault or mmap: back off. */
        struct timespec ts = {0, 50 * 1000};
        nanosleep(&ts, NULL);
    }
}

void sp_rcu_synchronize(void)
{
    pthread_mutex_lock(&sp_gp_lock);
    sp_rcu_barrier();
    pthread_mutex_lock(&sp_reg_lock);
    /* Every reader inside a section now (odd seq) may hold an old pointer: wait for it.  Its seq
     * at this moment goes to wait_seq; a reader that registers later starts its sections after
     * the barrier, so it needs no wait. */
    sp_assert(sp_wait.next == &sp_wait);    /* one grace period at a time: none in progress */
    for (struct sp_rcu_reader *r = sp_reg.next, *n; r != &sp_reg; r = n) {
        n = r->next;
        uint64_t s = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
        if (s & 1) {
            r->wait_seq = s;
            sp_list_unlink(r);
            sp_list_add(&sp_wait, r);
        }
    }
    for (unsigned round = 0; sp_wait.next != &sp_wait; round++) {
        pthread_mutex_unlock(&sp_reg_lock);     /* set-up, exit and fork go on meanwhile */
        sp_wait_pause(round);
        pthread_mutex_lock(&sp_reg_lock);
        /* A changed seq means the section we waited for has ended (waiting for a change, not
         * for "even", means a reader entering sections back to back cannot starve us).  A
         * reader that unregistered meanwhile has left sp_wait by itself. */
        for (struct sp_rcu_reader *r = sp_wait.next, *n; r != &sp_wait; r = n) {
            n = r->next;
            sp_assert(r->registered && (r->wait_seq & 1));   /* waited for inside a section */
            if (__atomic_load_n(&r->seq, __ATOMIC_ACQUIRE) != r->wait_seq) {
                sp_list_unlink(r);
                sp_list_add(&sp_reg, r);
            }
        }
    }
    pthread_mutex_unlock(&sp_reg_lock);
    pthread_mutex_unlock(&sp_gp_lock);
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
    struct sp_rcu_reader *heads[2] = {&sp_reg, &sp_wait};
    for (int i = 0; i < 2; i++) {
        for (struct sp_rcu_reader *r = heads[i]->next, *n; r != heads[i]; r = n) {
            n = r->next;
            r->next = r->prev = NULL;
            r->registered = false;
        }
        heads[i]->next = heads[i]->prev = heads[i];
    }
    pthread_mutex_init(&sp_reg_lock, NULL);
    pthread_mutex_init(&sp_gp_lock, NULL);   /* a grace period of a thread that is gone */
    pthread_mutex_init(&sp_mb_lock, NULL);
    sp_mb_mode = SP_MB_UNKNOWN;         /* register with membarrier again, for this process */
}
