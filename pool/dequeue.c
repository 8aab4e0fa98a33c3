/* dequeue.c — allocation of poolDequeue rings (the ring operations are inline in dequeue.h). */
#include "dequeue.h"
#include "backend.h"

struct sp_dequeue *sp_dequeue_new(uint32_t len, uint32_t start)
{
    size_t bytes = sizeof(struct sp_dequeue) + (size_t)len * sizeof(void *);
    struct sp_dequeue *d = be_alloc_internal(bytes, BE_ZERO);
    if (!d) return NULL;
    d->mask = len - 1;
    atomic_init(&d->head_tail, sp_dq_pack(start, start));
    return d;
}

void sp_dequeue_free(struct sp_dequeue *d)
{
    /* BE_NO_TCACHE: internal, like every allocation of ours (backend.h, be_alloc_internal). */
    be_free_sized(d, sizeof(struct sp_dequeue) + ((size_t)d->mask + 1) * sizeof(void *),
                  BE_NO_TCACHE);
}
