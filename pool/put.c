/* put.c — Put past the private stack: the own shared chain's head within the cap, and the
 * flush to the backend at the cap. */
#include "batch.h"
#include "gen.h"

/* Past the private stack (or a Put that must refresh first).  Inside a section; ACTIVE. */
static bool sp_put_more(struct sp_thread *t, size_t cls, void *x)
{
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_pblock *pb = t->pb;
    if (g->seq != t->gen_seq || pb == NULL) {
        /* No memory for my pblock in this generation: try again only every 64th Put (each try
         * may cost a failing mmap); meanwhile the caller frees to the backend. */
        if (g->seq == t->gen_seq && t->pb_retry != 0) {
            t->pb_retry--;
            return false;
        }
        pb = sp_pblock_refresh(t, g, true);
        if (pb == NULL) {
            t->pb_retry = 63;
            return false;
        }
    }
    struct sp_own *o = &pb->own[cls];
    sp_owner_inc(&pb->cnt[SP_PB_PUT][cls]);
    if (sp_priv_push(pb, cls, x)) return true;
    /* The private stack is full here. */
    uint32_t room = sp_cap_room(o, cls);
    if (room == 0) {
        o->count = sp_chain_len(o->head);   /* thieves may have taken some (pool.h, sp_cap_room) */
        if ((room = sp_cap_room(o, cls)) == 0) goto flush;
    }
    if (sp_priv_batch[cls] == 0) {        /* Go's single private slot: x to the shared head */
        if (sp_chain_push_head(&o->head, &pb->tail[cls], x)) {
            o->count++;
            return true;
        }
    } else if (sp_priv_spill(pb, cls, x, room)) {   /* the whole stack to the shared head */
        return true;
    }
    /* No memory for a new ring: the stack is flushed instead (each try may cost a failing mmap,
     * and a flush empties half the stack, so the next try comes half a stack of Puts later). */
flush:
    sp_priv_flush(t, pb, cls, x);
    return true;
}

bool sp_put_rest(struct sp_thread *t, size_t cls, void *x)
{
    bool ok = SP_LIKELY(t->state == SP_T_ACTIVE) && sp_put_more(t, cls, x);
    sp_rcu_exit(&t->rcu);
    return ok;
}

__attribute__((noinline)) bool sp_put_rest_or_free(struct sp_thread *t, size_t cls, void *x)
{
    bool ok = sp_put_more(t, cls, x);
    if (!ok) be_free_class(x, sp_class_size[cls], t->zone_flags);   /* inside the section */
    sp_rcu_exit(&t->rcu);
    sp_pool_drain_deferred(t);
    return true;
}

bool sp_put_spill_or_free(struct sp_thread *t, size_t cls, void *x)
{
    struct sp_pblock *pb = t->pb;
    if (SP_UNLIKELY(!sp_priv_spill(pb, cls, x, sp_cap_room(&pb->own[cls], cls))))
        return sp_put_rest_or_free(t, cls, x);
    sp_owner_inc(&pb->cnt[SP_PB_PUT][cls]);
    sp_rcu_exit(&t->rcu);
    return true;
}

