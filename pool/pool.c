/* pool.c — the pools' state per thread and per class, set-up and thread attach/detach, Get and
 * Put for the malloc front end, and what a signal handler inside the allocator gets and puts.
 * The rest: gen.c (generations), get.c and put.c (the slow paths), batch.h (their batches). */
#include "pool.h"

#include "backend.h"
#include "gen.h"
#include "nested.h"
#include "pass.h"

/* sp_pblock_off's stacks: every top at sp_off_stack[1].slot[0], which is aligned as a stack
 * (full) and has NULL below it (empty). */
static const struct sp_priv sp_off_stack[2];
const struct sp_pblock sp_pblock_off = {
    .top = {[0 ... SP_MAX_CLASSES - 1] = (void **)&sp_off_stack[1].slot[0]}};

__thread struct sp_thread sp_self __attribute__((tls_model("initial-exec"))) = {
    .get_pb = SP_PB_OFF, .put_pb = SP_PB_OFF};
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

/* A thread that is not ACTIVE: a new thread is set up and tries again; otherwise the backend.
 * (Before start-up there are no classes yet: only malloc(0) gets here then.) */
static __attribute__((noinline)) void *sp_alloc_unpooled(struct sp_thread *t, size_t c)
{
    sp_rcu_exit(&t->rcu);
    if (t->state == SP_T_NEW && sp_thread_setup_fn && sp_thread_setup_fn()) return sp_pool_alloc(c);
    if (!sp_nclasses) return sp_pool_pass_alloc(1, 0, false);
    return sp_pool_alloc_unpooled(c, false);
}

/* Past a missed private stack, inside the section the inline part opened.  Whether my own
 * shared chain can refill my private stack is decided inline; the refill itself
 * (sp_get_shared_or_alloc) and everything else are tail calls, so this function saves no
 * registers. */
__attribute__((noinline)) void *sp_alloc_rest(struct sp_thread *t, size_t c)
{
    if (SP_UNLIKELY(t->state != SP_T_ACTIVE)) return sp_alloc_unpooled(t, c);
    if (SP_LIKELY(sp_pool_has_shared(t, c))) return sp_get_shared_or_alloc(t, c);
    if (sp_pool_miss_now(t, c)) return sp_pool_miss(t, c);
    return sp_get_rest_or_alloc(t, c);
}

static __attribute__((noinline)) bool sp_free_unpooled(struct sp_thread *t, size_t c, void *p)
{
    sp_rcu_exit(&t->rcu);
    if (t->state == SP_T_NEW && sp_thread_setup_fn && sp_thread_setup_fn())
        return sp_pool_put_or(c, p, sp_free_rest);
    sp_pool_free_unpooled(c, p);
    return true;
}

/* As sp_alloc_rest.  Returns true (the object is taken care of), to fit sp_pool_put_or. */
__attribute__((noinline)) bool sp_free_rest(struct sp_thread *t, size_t c, void *p)
{
    if (SP_UNLIKELY(t->state != SP_T_ACTIVE)) return sp_free_unpooled(t, c, p);
    int r = sp_pool_put_shared(t, c, p);
    if (SP_LIKELY(r == SP_PUT_TAKEN)) {
        sp_rcu_exit(&t->rcu);
        return true;
    }
    if (r == SP_PUT_SPILL) return sp_put_spill_or_free(t, c, p);
    return sp_put_rest_or_free(t, c, p);
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
    atomic_store_explicit(&t->get_pb, SP_PB_OFF, memory_order_relaxed);
    atomic_store_explicit(&t->put_pb, SP_PB_OFF, memory_order_relaxed);
    t->proc = NULL;
    t->pb = NULL;
    t->gen_seq = 0;
}

bool sp_thread_attach(struct sp_thread *t)
{
    t->proc = sp_proc_acquire();
    if (!t->proc) return false;
    t->gen_seq = 0;            /* no generation has seq 0: the first Get/Put looks its pblock up */
    t->pb = NULL;
    /* The fast paths stay "off" until the first slow path points them at a pblock. */
    sp_rcu_register(&t->rcu, t);
    return true;
}

void sp_thread_detach(struct sp_thread *t)
{
    /* From here on the rotation no longer writes my fast paths (my TLS may go away). */
    sp_rcu_unregister(&t->rcu);
    struct sp_proc *p = t->proc;
    sp_pool_forget(t);
    /* Release: all I did as this P happens-before what its next owner does. */
    if (p) sp_proc_release(p);
}

