/* put.c — Put past the private stack: the own shared chain's head within the cap, and the
 * flush to the backend at the cap. */
#include "batch.h"
#include "gen.h"

/* Inside a section (off: as in get.c, sp_get_inside).  Always takes x: onto my private stack,
 * or my stack spills to my shared chain, or (at the cap, or with no memory for a ring or my
 * pblock) its oldest half goes back to the backend. */
static void sp_put_inside(struct sp_thread *t, size_t cls, void *x, bool off)
{
    struct sp_gen *g = atomic_load_explicit(&sp_local_gen, memory_order_acquire);
    struct sp_pcache *pc = t->pc;
    struct sp_pblock *pb = t->pb;
    if (off || g->seq != t->gen_seq) pb = sp_pblock_refresh(t, g, true);
    sp_owner_inc(&pc->cnt[SP_PC_PUT][cls]);
    if (sp_priv_push(pc, cls, x)) return;   /* the fast path saw "off" */
    /* The private stack is full here, and its objects may go to my shared chain. */
    pc->miss_known &= ~(1ull << cls);
    if (pb == NULL) {
        /* No memory for my pblock in this generation: try again only every 64th spill (each
         * try may cost a failing mmap); meanwhile the stack is flushed. */
        if (t->pb_retry != 0) {
            t->pb_retry--;
            goto flush;
        }
        t->pb = pb = sp_pblock_refresh(t, g, true);
        if (pb == NULL) {
            t->pb_retry = 63;
            goto flush;
        }
    }
    struct sp_own *o = &pb->own[cls];
    uint32_t room = sp_cap_room(o, cls);
    if (room == 0) {
        o->count = sp_chain_len(o->head);   /* thieves may have taken some (pool.h, sp_cap_room) */
        if ((room = sp_cap_room(o, cls)) == 0) goto flush;
    }
    if (sp_priv_batch[cls] == 0) {        /* Go's single private slot: x to the shared head */
        if (sp_chain_push_head(&o->head, &pb->tail[cls], x)) {
            o->count++;
            return;
        }
    } else if (sp_priv_spill(pc, pb, cls, x, room)) {   /* the whole stack to the shared head */
        return;
    }
    /* No memory for a new ring: the stack is flushed instead (each try may cost a failing mmap,
     * and a flush empties half the stack, so the next try comes half a stack of Puts later). */
flush:
    sp_priv_flush(t, pc, cls, x);
}

void sp_pool_put_more(struct sp_thread *t, size_t cls, void *x)
{
    sp_assert(t->state == SP_T_ACTIVE && sp_guard_held(&t->guard));
    bool off = sp_fast_paths_are_off(t);
    if (off && !sp_pcache_claim(t->pc)) {   /* the rotation is ageing my stacks (gen.c) */
        be_free_class(x, sp_class_size[cls], t->zone_flags);
        sp_count_put_released(t, cls);
        return;
    }
    sp_rcu_read_lock();
    sp_put_inside(t, cls, x, off);
    sp_rcu_read_unlock();
    if (off) sp_pcache_unclaim(t->pc);
}

bool sp_put_rest(struct sp_thread *t, size_t cls, void *x)
{
    bool ok = SP_LIKELY(t->state == SP_T_ACTIVE);
    if (ok) sp_pool_put_more(t, cls, x);
    sp_guard_exit(&t->guard);
    return ok;
}
