/* init.c — life cycle: start-up, thread set-up and exit, fork, process exit, public API.
 *
 * Order at start-up (design decisions 6, 7): allocations that arrive before our constructor
 * (libstdc++'s come first) go straight to the backend, which initialises itself.  The
 * constructor touches the backend (so its fork handlers are registered before ours), reads the
 * environment, builds the class tables, then turns the pools on. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pass.h"
#include "pool.h"
#include "rotate.h"
#include "shim.h"
#include "stats.h"
#include "syncpool.h"

static struct sp_config sp_cfg;
/* SYNCPOOL_STATS=1: a private copy of stderr, taken at start-up, since many programs close
 * stderr before they exit (coreutils' close_stdout does). */
static int sp_stats_fd = 2;
static _Atomic bool sp_initialized;

extern void *__dso_handle;
extern int __cxa_thread_atexit_impl(void (*fn)(void *), void *arg, void *dso);

/* ---- threads ------------------------------------------------------------------------------ */

/* Runs first among the thread's exit destructors (C++ thread_local style), before the
 * pthread-key destructors and glibc's own frees: from here on the thread bypasses the pools and
 * the read side, and its P id (with what it caches) goes to the next thread.  Nothing to flush.
 * glibc does not run these destructors when the main thread calls pthread_exit, only the
 * pthread-key destructors, so the same function is also sp_exit_key's destructor (whichever
 * runs first does the work).  A thread that used the pools is one user less for the rotation
 * thread, which returns after the last one: a process whose threads have all ended exits. */
static pthread_key_t sp_exit_key;
static bool sp_exit_key_ok;
/* This thread's exit hook is registered (once per thread: a thread set up again after a fork in
 * the child keeps it). */
static __thread bool sp_exit_hook __attribute__((tls_model("initial-exec")));

static void sp_thread_exit(void *arg)
{
    (void)arg;
    struct sp_thread *t = &sp_self;
    bool user = t->proc != NULL;       /* attached: counted by sp_rotator_user_add */
    t->state = SP_T_OFF;
    sp_thread_detach(t);
    sp_pool_drain_deferred(t);         /* what its signal handlers freed inside the allocator */
    if (user) sp_rotator_user_drop();
}

bool sp_thread_setup(void)
{
    struct sp_thread *t = &sp_self;
    if (t->state != SP_T_NEW || !atomic_load_explicit(&sp_initialized, memory_order_acquire))
        return false;                  /* busy, off, or too early: the backend serves it */
    if (sp_max_size == 0) {
        t->state = SP_T_OFF;           /* SYNCPOOL_DISABLE=1 (or MAX_SIZE=0) */
        return false;
    }
    t->state = SP_T_BUSY;              /* re-entry guard: what we call below may allocate */
    if (!sp_exit_hook && __cxa_thread_atexit_impl(sp_thread_exit, NULL, &__dso_handle) == 0)
        sp_exit_hook = true;
    /* A key made early has a first-level slot: setting it allocates nothing. */
    if (!sp_exit_hook || !sp_exit_key_ok || pthread_setspecific(sp_exit_key, t) != 0 ||
        !sp_thread_attach(t)) {
        t->state = SP_T_OFF;
        return false;
    }
    sp_rotator_user_add();
    t->state = SP_T_ACTIVE;
    return true;
}

/* ---- fork --------------------------------------------------------------------------------- */

static void sp_atfork_prepare(void) { sp_rotator_fork_prepare(); }
static void sp_atfork_parent(void) { sp_rotator_fork_parent(); }

static void sp_atfork_child(void)
{
    sp_rotator_fork_child();
    /* Only this thread exists now: every P id is free again.  This thread sets itself up anew
     * on its next allocation (which also restarts the rotation thread, lazily). */
    sp_proc_release_all_but(NULL);
    sp_pool_forget(&sp_self);
    if (sp_self.state == SP_T_ACTIVE) sp_self.state = SP_T_NEW;
    /* Statistics are the parent's to print, unless each process writes its own file. */
    if (sp_cfg.stats == SP_STATS_TABLE ||
        (sp_cfg.stats == SP_STATS_JSON && !strstr(sp_cfg.stats_path, "%p")))
        sp_cfg.stats = SP_STATS_OFF;
}

/* ---- process start and exit ----------------------------------------------------------------- */

__attribute__((constructor)) static void sp_init(void)
{
    sp_pool_backend_init();
    sp_config_from_env(&sp_cfg);
    if (sp_cfg.stats == SP_STATS_TABLE) {
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
        if (fd >= 0) sp_stats_fd = fd;
    }
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0) sp_page_size = (size_t)ps;
    pthread_atfork(sp_atfork_prepare, sp_atfork_parent, sp_atfork_child);
    sp_exit_key_ok = pthread_key_create(&sp_exit_key, sp_thread_exit) == 0;
    if (!sp_cfg.disable && sp_cfg.max_size > 0) {
        size_t max = sp_sizeclass_init(sp_cfg.max_size);
        sp_pool_set_thread_setup(sp_thread_setup);
        if (sp_pool_start(sp_cfg.cache_bytes)) {
            /* With rotation on, the rotation thread also decides when jemalloc's dirty pages go
             * back to the kernel (docs/design.md, "Purging"); it starts once the pools are warm. */
            sp_rotator_configure(sp_cfg.rotate_ms, sp_cfg.rotate_ms > 0);
            if (sp_cfg.rotate_ms > 0) sp_pool_set_warm_hook(sp_rotator_arm);
            atomic_thread_fence(memory_order_release);
            sp_max_size = max;         /* pools on: the tables above are complete */
        }
    }
    atomic_store_explicit(&sp_initialized, true, memory_order_release);
}

__attribute__((destructor)) static void sp_fini(void)
{
    sp_rotator_stop();
    /* The table, or the JSON file: how it is written, and which process's figures a shared
     * PATH keeps, is in stats_file.c. */
    if (sp_cfg.stats != SP_STATS_OFF) sp_stats_at_exit(&sp_cfg, sp_stats_fd);
}

/* ---- public API (include/syncpool.h) -------------------------------------------------------- */

SP_EXPORT unsigned long syncpool_rotate_now(void)
{
    return sp_max_size ? (unsigned long)sp_rotate_once() : 0;
}

SP_EXPORT int syncpool_stats_json(FILE *f) { return sp_stats_json_now(f, sp_cfg.rotate_ms); }

SP_EXPORT int syncpool_stats_print(FILE *f) { return sp_stats_table_now(f, sp_cfg.rotate_ms); }

SP_EXPORT unsigned long long syncpool_cached_bytes(void) { return sp_stats_cached_bytes(); }
SP_EXPORT unsigned long long syncpool_rotations(void) { return sp_rotations(); }
