/* procs.c — the recycled P id table. */
#include "procs.h"
#include "backend.h"

#include <pthread.h>

static struct sp_proc *_Atomic sp_proc_dir[SP_PROC_CHUNKS];
_Atomic uint32_t sp_nprocs;
/* Held while an owner is set or cleared and while the rotation writes to the owners: short,
 * bounded work, never a wait. */
static pthread_mutex_t sp_proc_owner_lock = PTHREAD_MUTEX_INITIALIZER;

static struct sp_proc *sp_proc_chunk(uint32_t chunk, bool create)
{
    sp_assert(chunk < SP_PROC_CHUNKS);
    struct sp_proc *c = atomic_load_explicit(&sp_proc_dir[chunk], memory_order_acquire);
    if (c || !create) return c;
    struct sp_proc *fresh = be_alloc_internal(sizeof(struct sp_proc) * SP_PROC_CHUNK,
                                     BE_ZERO | BE_ALIGN(128));
    if (!fresh) return NULL;
    /* Left untouched (ids are written on acquire): a chunk is 64 Ps of ~2.4 KB each, and a small
     * program uses one or two, so the rest stay fresh zero pages that cost no memory. */
    /* Two threads may race to create the chunk; the loser frees its copy. */
    if (!atomic_compare_exchange_strong_explicit(&sp_proc_dir[chunk], &c, fresh,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        be_free_internal(fresh);
        return c;
    }
    return fresh;
}

struct sp_proc *sp_proc_get(uint32_t id)
{
    /* Ids in use are below the high-water mark, which never shrinks. */
    sp_assert(id < atomic_load_explicit(&sp_nprocs, memory_order_relaxed));
    struct sp_proc *c = sp_proc_chunk(id >> SP_PROC_CHUNK_SHIFT, false);
    return c ? &c[id & (SP_PROC_CHUNK - 1)] : NULL;
}

struct sp_proc *sp_proc_acquire(void)
{
    for (uint32_t id = 0; id < SP_MAX_PROCS; id++) {
        struct sp_proc *c = sp_proc_chunk(id >> SP_PROC_CHUNK_SHIFT, true);
        if (!c) return NULL;
        struct sp_proc *p = &c[id & (SP_PROC_CHUNK - 1)];
        uint32_t free_ = 0;
        if (atomic_load_explicit(&p->in_use, memory_order_relaxed) == 0 &&
            /* Acquire pairs with the previous owner's release in sp_proc_release: everything it
             * did as this P happens-before what we do as this P. */
            atomic_compare_exchange_strong_explicit(&p->in_use, &free_, 1, memory_order_acquire,
                                                    memory_order_relaxed)) {
            /* Written once, by the P's first owner, before it publishes the P's pcache (which the
             * rotation loads with acquire before it reads the id): never rewritten, so the
             * rotation's read never races with a later owner's. */
            if (p->id != id) p->id = id;
            uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_relaxed);
            while (n <= id && !atomic_compare_exchange_weak_explicit(
                                  &sp_nprocs, &n, id + 1, memory_order_release, memory_order_relaxed))
                ;
            sp_assert(id < atomic_load_explicit(&sp_nprocs, memory_order_relaxed) &&
                      atomic_load_explicit(&sp_nprocs, memory_order_relaxed) <= SP_MAX_PROCS);
            return p;
        }
    }
    return NULL;
}

void sp_proc_release(struct sp_proc *p)
{
    /* Held (no double release), and the table's entry for its id. */
    sp_assert(atomic_load_explicit(&p->in_use, memory_order_relaxed) == 1 &&
              sp_proc_get(p->id) == p);
    atomic_store_explicit(&p->in_use, 0, memory_order_release);
}

void sp_proc_release_all_but(struct sp_proc *keep)
{
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
    for (uint32_t id = 0; id < n; id++) {
        struct sp_proc *p = sp_proc_get(id);
        if (p && p != keep) {
            p->owner = NULL;               /* its thread does not exist here */
            atomic_store_explicit(&p->in_use, 0, memory_order_release);
        }
    }
}

void sp_proc_set_owner(struct sp_proc *p, void *owner)
{
    pthread_mutex_lock(&sp_proc_owner_lock);
    sp_assert(atomic_load_explicit(&p->in_use, memory_order_relaxed) == 1);   /* held */
    sp_assert((p->owner == NULL) != (owner == NULL));   /* set once, then cleared once */
    p->owner = owner;
    pthread_mutex_unlock(&sp_proc_owner_lock);
}

void sp_proc_each(void (*fn)(struct sp_proc *p, void *arg), void *arg)
{
    pthread_mutex_lock(&sp_proc_owner_lock);
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
    for (uint32_t id = 0; id < n; id++) {
        struct sp_proc *p = sp_proc_get(id);
        if (p) fn(p, arg);
    }
    pthread_mutex_unlock(&sp_proc_owner_lock);
}

void sp_proc_fork_prepare(void) { pthread_mutex_lock(&sp_proc_owner_lock); }
void sp_proc_fork_parent(void) { pthread_mutex_unlock(&sp_proc_owner_lock); }
void sp_proc_fork_child(void) { pthread_mutex_init(&sp_proc_owner_lock, NULL); }

void *_Atomic *sp_pdir_chunk(void *_Atomic *_Atomic *top)
{
    void *_Atomic *chunk = atomic_load_explicit(top, memory_order_acquire);
    if (chunk) return chunk;
    void *_Atomic *fresh = be_alloc_internal(sizeof(void *) * SP_PROC_CHUNK, BE_ZERO);
    if (!fresh) return NULL;
    /* Acquire on failure: the winner's zeroed chunk. */
    if (atomic_compare_exchange_strong_explicit(top, &chunk, fresh, memory_order_acq_rel,
                                                memory_order_acquire))
        return fresh;
    be_free_internal(fresh);
    return chunk;
}
