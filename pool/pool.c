/* pool.c — the pools' state per thread and per class, set-up and thread attach/detach, Get and
 * Put for the malloc front end, and what a signal handler inside the allocator gets and puts.
 * The rest: gen.c (generations), get.c and put.c (the slow paths), batch.h (their batches). */
#include "pool.h"

#include <errno.h>

#include "backend.h"
#include "gen.h"
#include "nested.h"
#include "pass.h"
#include "upool.h"

/* sp_pcache_off's stacks: every top at sp_off_stack[1].slot[0], which is aligned as a stack
 * (full) and has NULL below it (empty). */
static const struct sp_priv sp_off_stack[2];
const struct sp_pcache sp_pcache_off = {
    .top = {[0 ... SP_MAX_CLASSES - 1] = (void **)&sp_off_stack[1].slot[0]}};

__thread struct sp_thread sp_self __attribute__((tls_model("initial-exec"))) = {
    .get_pc = SP_PC_OFF, .put_pc = SP_PC_OFF, .uidx = SP_UINLINE};
uint32_t sp_cap[SP_MAX_CLASSES];
uint8_t sp_priv_cap[SP_MAX_CLASSES];
uint8_t sp_priv_batch[SP_MAX_CLASSES];

/* ---- a signal handler inside the allocator (pool.h, sp_get_nested) ------------------------- */

void *sp_get_nested(size_t cls)
{
    return sp_nested_alloc(sp_class_size[cls], 0);
}

bool sp_put_nested(struct sp_thread *t, void *x)
{
    if (sp_nested_owns(x)) {              /* the region is lock-free: give it back now */
        sp_nested_free(x);
        return true;
    }
    void *old = atomic_load_explicit(&t->deferred, memory_order_relaxed);
    do {
        *(void **)x = old;
    } while (!atomic_compare_exchange_weak_explicit(&t->deferred, &old, x, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

void sp_pool_drain_deferred_slow(struct sp_thread *t)
{
    /* Taken whole: a handler that interrupts the loop below pushes onto a fresh list. */
    void *x = atomic_exchange_explicit(&t->deferred, NULL, memory_order_relaxed);
    while (x) {
        void *next = *(void **)x;
        unsigned c;
        if (be_zone_lookup(x, &c)) {
            sp_pool_free(c, x);
        } else {
            sp_pool_pass_free(x);
        }
        x = next;
    }
}

/* ---- Get and Put for the malloc front end (pool.h, sp_pool_alloc / sp_pool_free) ----------- */

static bool (*sp_thread_setup_fn)(void);
void sp_pool_set_thread_setup(bool (*setup)(void)) { sp_thread_setup_fn = setup; }
bool sp_pool_setup_thread(struct sp_thread *t)
{
    return t->state == SP_T_NEW && sp_thread_setup_fn && sp_thread_setup_fn();
}

/* A thread that is not ACTIVE: a new thread is set up and tries again; otherwise the backend.
 * (Before start-up there are no classes yet: only malloc(0) gets here then.) */
static __attribute__((noinline)) void *sp_alloc_unpooled(struct sp_thread *t, size_t c)
{
    sp_guard_exit(&t->guard);
    if (sp_pool_setup_thread(t)) return sp_pool_alloc(c);
    if (!sp_nclasses) return sp_pool_pass_alloc(1, 0, false);
    return sp_pool_alloc_unpooled(c, false);
}

/* The rare parts of a miss, out of line: the backend had no memory (purge and retry, backend.h),
 * and the thread's first miss once the zone exists, which binds it to the zone. */
static __attribute__((noinline)) void *sp_pool_alloc_class_after_oom(struct sp_thread *t,
                                                                     size_t cls, int flags)
{
    void *x = be_alloc_class_after_oom((unsigned)cls, sp_class_size[cls], flags, t->zone_flags);
    if (!x) errno = ENOMEM;
    return x;
}

static __attribute__((noinline)) int sp_zone_flags_first(struct sp_thread *t)
{
    return t->zone_flags = be_zone_bind();
}

/* A miss, guard held: a fresh backend object of class cls, through my P's zone flags.  One
 * object, as Go's New: filling half a stack from the backend instead cost fewer instructions but
 * made python's wall time worse (docs/performance.md).  NULL: no memory (errno ENOMEM).  Inline
 * in sp_alloc_rest, its only caller: a call of its own cost 15 instructions a miss. */
static inline __attribute__((always_inline)) void *sp_pool_miss(struct sp_thread *t, size_t cls)
{
    /* The guard stays held over the backend call: a signal handler interrupting it is nested. */
    sp_assert(sp_guard_held(&t->guard));
    int zf = t->zone_flags;
    if (SP_UNLIKELY(zf == 0)) zf = sp_zone_flags_first(t);
    void *x = be_alloc_class((unsigned)cls, sp_class_size[cls], 0, zf);
    if (SP_UNLIKELY(x == NULL)) x = sp_pool_alloc_class_after_oom(t, cls, 0);
    return x;
}

/* Warmth (pool.h, SP_WARM_BYTES): the weighted bytes handed out, counted until the pools are
 * warm. */
static void (*sp_warm_hook)(void);
_Atomic bool sp_pool_warm;
static _Atomic size_t sp_warm_bytes;
void sp_pool_set_warm_hook(void (*fn)(void)) { sp_warm_hook = fn; }

/* true for the one caller that sets *flag (the others find it set): what follows runs once per
 * process.  Relaxed: the flag orders nothing; what the first caller makes is published by its
 * own release (be_zone_on, the rotation's lock). */
static bool sp_first_to_set(_Atomic bool *flag)
{
    return !atomic_load_explicit(flag, memory_order_relaxed) &&
           !atomic_exchange_explicit(flag, true, memory_order_relaxed);
}

/* The zone (pool.h, sp_pool_zone_by): made once, by whichever thread gets here first. */
_Atomic bool sp_pool_zoned;
static _Atomic size_t sp_zone_bytes;

static void sp_pool_zone_now(void)
{
    if (!sp_first_to_set(&sp_pool_zoned)) return;
    /* Under the guard (callers do not hold it): a signal handler that allocates meanwhile is
     * served by the nested region, not by jemalloc, whose mallctl code this runs. */
    struct sp_thread *t = &sp_self;
    bool nested = sp_guard_enter(&t->guard);
    sp_assert(!nested);
    int e = errno;
    be_zone_init();
    errno = e;
    if (!nested) sp_guard_exit(&t->guard);
}

__attribute__((noinline)) void sp_pool_zone_by(size_t n)
{
    if (atomic_fetch_add_explicit(&sp_zone_bytes, n, memory_order_relaxed) + n >= SP_WARM_BYTES)
        sp_pool_zone_now();
}

void sp_pool_warm_now(void)
{
    struct sp_thread *t = &sp_self;
    if (t->state == SP_T_NEW) sp_pool_setup_thread(t);   /* not inside the hook's start */
    if (!sp_first_to_set(&sp_pool_warm)) return;   /* warm already, or another runs the hook */
    sp_pool_zone_now();               /* first: the hook's purging names the zone arena */
    int e = errno;
    if (sp_warm_hook) sp_warm_hook();
    errno = e;
}

__attribute__((noinline)) void sp_pool_warm_by(struct sp_thread *t, size_t n)
{
    sp_assert(!sp_guard_held(&t->guard));
    if (t->state == SP_T_NEW && !sp_pool_setup_thread(t)) return;   /* too early, or no pools */
    if (t->state != SP_T_ACTIVE) return;
    if (atomic_fetch_add_explicit(&sp_warm_bytes, n, memory_order_relaxed) + n >= SP_WARM_BYTES)
        sp_pool_warm_now();
}

/* Past a missed private stack, with the guard held: the rest of Get, then the backend. */
__attribute__((noinline)) void *sp_alloc_rest(struct sp_thread *t, size_t c)
{
    if (SP_UNLIKELY(t->state != SP_T_ACTIVE)) return sp_alloc_unpooled(t, c);
    void *x = sp_pool_miss_known(t, c) ? NULL : sp_pool_get_more(t, c);
    bool missed = x == NULL;
    if (missed) x = sp_pool_miss(t, c);
    sp_guard_exit(&t->guard);
    sp_pool_drain_deferred(t);
    if (missed) sp_pool_note_handed_out(t, sp_class_size[c]);
    return x;
}

static __attribute__((noinline)) bool sp_free_unpooled(struct sp_thread *t, size_t c, void *p)
{
    sp_guard_exit(&t->guard);
    if (sp_pool_setup_thread(t)) return sp_pool_put_or(c, p, sp_free_rest);
    sp_pool_free_unpooled(c, p);
    return true;
}

/* As sp_alloc_rest.  Returns true (the object is taken care of), to fit sp_pool_put_or. */
__attribute__((noinline)) bool sp_free_rest(struct sp_thread *t, size_t c, void *p)
{
    if (SP_UNLIKELY(t->state != SP_T_ACTIVE)) return sp_free_unpooled(t, c, p);
    sp_pool_put_more(t, c, p);
    sp_guard_exit(&t->guard);
    sp_pool_drain_deferred(t);
    return true;
}

/* ---- set-up ------------------------------------------------------------------------------ */

bool sp_pool_init(size_t cache_bytes)
{
    for (unsigned c = 0; c < sp_nclasses; c++) {
        size_t cap = cache_bytes / sp_class_size[c];
        sp_cap[c] = cap < 1 ? 1 : cap > SP_DEQUEUE_LIMIT ? SP_DEQUEUE_LIMIT : (uint32_t)cap;
        uint32_t priv = SP_PRIV_BYTES / sp_class_size[c];
        if (priv > SP_PRIV_MAX) priv = SP_PRIV_MAX;
        if (priv > sp_cap[c]) priv = sp_cap[c];
        sp_priv_cap[c] = (uint8_t)(priv < 1 ? 1 : priv);
        sp_priv_batch[c] = sp_priv_cap[c] > 1 ? (uint8_t)((sp_priv_cap[c] + 1) / 2) : 0;
    }
    if (atomic_load_explicit(&sp_local_gen, memory_order_relaxed)) return true;
    struct sp_gen *g = sp_gen_new();
    if (!g) return false;
    atomic_store_explicit(&sp_local_gen, g, memory_order_release);
    return true;
}

void sp_pool_forget(struct sp_thread *t)
{
    atomic_store_explicit(&t->get_pc, SP_PC_OFF, memory_order_relaxed);
    atomic_store_explicit(&t->put_pc, SP_PC_OFF, memory_order_relaxed);
    t->proc = NULL;
    t->uidx = SP_UINLINE;
    t->pc = NULL;
    t->pb = NULL;
    t->gen_seq = 0;
}

bool sp_thread_attach(struct sp_thread *t)
{
    struct sp_proc *p = sp_proc_acquire();
    if (!p) return false;
    /* The P's private stacks: made by its first owner, inherited by the next ones. */
    if (!p->pc) {
        struct sp_pcache *pc = sp_pcache_new();
        if (!pc) {
            sp_proc_release(p);
            return false;
        }
        __atomic_store_n(&p->pc, pc, __ATOMIC_RELEASE);   /* statistics read it (gen.c) */
    }
    t->proc = p;
    t->uidx = p->id < SP_UINLINE ? p->id : SP_UINLINE;
    t->pc = p->pc;
    t->gen_seq = 0;            /* no generation has seq 0: the first Get/Put looks its pblock up */
    t->pb = NULL;
    /* The fast paths stay "off" until the first slow path points them at my private stacks;
     * from here on the rotation turns them off at each new generation. */
    sp_proc_set_owner(p, t);
    return true;
}

void sp_thread_detach(struct sp_thread *t)
{
    struct sp_proc *p = t->proc;
    if (!p) return;
    /* From here on the rotation no longer writes my fast paths (my TLS may go away). */
    sp_proc_set_owner(p, NULL);
    atomic_store_explicit(&t->get_pc, SP_PC_OFF, memory_order_relaxed);
    atomic_store_explicit(&t->put_pc, SP_PC_OFF, memory_order_relaxed);
    /* What only I could reach goes where other Ps can steal it and the rotation ages it.  Under
     * the guard: a signal handler that allocates meanwhile must not enter the backend. */
    bool nested = sp_guard_enter(&t->guard);
    sp_assert(!nested);                    /* called from a thread-exit destructor */
    sp_pcache_retire(t);
    sp_upools_retire(t);
    if (!nested) sp_guard_exit(&t->guard);
    sp_pool_forget(t);
    /* Release: all I did as this P happens-before what its next owner does. */
    sp_proc_release(p);
}
