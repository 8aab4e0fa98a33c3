/* syncpool: a Go sync.Pool-style malloc front-end over jemalloc, loaded with LD_PRELOAD.
 *
 * The malloc family itself needs no header: preload the library and every malloc/free/new/delete
 * of the program goes through it.  This header declares the few extra entry points for tests and
 * for programs that want to drive rotation or read statistics themselves.  A program that calls
 * them must run with libsyncpool.so preloaded (or linked). */
#ifndef SYNCPOOL_H
#define SYNCPOOL_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs one rotation synchronously (the same step the background thread takes every
 * SYNCPOOL_ROTATE_MS): the current generation becomes the victim, the old victim's objects go
 * back to jemalloc.  Returns the number of objects released to jemalloc by this call. */
unsigned long syncpool_rotate_now(void);

/* Writes the statistics as one JSON object (the keys of SYNCPOOL_STATS=json:PATH) to f.
 * Returns 0, or -1 if writing failed. */
int syncpool_stats_json(FILE *f);

/* Writes the human-readable per-class table (the one SYNCPOOL_STATS=1 prints at exit) to f. */
int syncpool_stats_print(FILE *f);

/* Bytes the pools hold right now (sum over classes), and the number of rotations so far. */
unsigned long long syncpool_cached_bytes(void);
unsigned long long syncpool_rotations(void);

/* ---- sync.Pool for the program's own objects ------------------------------------------------
 *
 * Go's sync.Pool, for objects that are costly to make or to reset (encode buffers, request
 * contexts, parsers, compression streams): a set of interchangeable objects, cached per P (a
 * thread's slot) with stealing between Ps, that the library lets go of on its own.
 *
 *     static void *new_buf(void *arg) { return malloc(4096); }
 *     static void drop_buf(void *obj, void *arg) { free(obj); }
 *     struct syncpool_pool_config cfg = {.new_object = new_buf, .drop_object = drop_buf,
 *                                        .object_size_hint = 4096, .name = "bufs"};
 *     syncpool_pool *bufs = syncpool_pool_create(&cfg);
 *     char *b = syncpool_pool_get(bufs);     // a cached buffer, or new_buf()'s
 *     ...
 *     syncpool_pool_put(bufs, b);            // b must not be used after this
 *
 * Semantics, as Go documents them:
 *   - Any object in the pool may be dropped at any time without notice: what a pool still holds
 *     at a rotation (every SYNCPOOL_ROTATE_MS, or syncpool_rotate_now) becomes its victim, and
 *     what the victim still holds at the next rotation is passed to drop_object.  So an object
 *     the program stops asking for is dropped within two rotation periods, but for at most a few
 *     objects per thread (its private cache: at most 64 KiB of objects of object_size_hint, one
 *     object without a hint) that a thread which has not called the pool since keeps until it
 *     calls it again, exits, or the pool is destroyed.
 *   - get gives no ordering guarantee but "own Puts first": a thread's get returns, when it can,
 *     the object that thread put last; otherwise one put by another thread, or one from the
 *     victim, or new_object's (NULL without new_object).  Objects are not reset: the program
 *     resets what it needs.
 *   - An object must not be used after it is put, and must not be put twice.
 *   - Thread safe.  A get or put that its thread's private cache serves (the common case) takes
 *     no lock, makes no system call and calls nothing of the program's; the others take no lock
 *     of the library's either (they may allocate: a thread's first use of a pool, a new ring).
 *   - new_object and drop_object run in the calling thread (drop_object also in the rotation
 *     thread, and in destroy's caller), outside every lock a get or put takes: they may use
 *     malloc and this pool.  drop_object must not call syncpool_pool_destroy nor
 *     syncpool_rotate_now (the rotation is waiting for it).
 *   - Signal handlers: a handler may get and put on a pool that the code it interrupts cannot be
 *     using (the fast paths take no guard, so two calls on the same pool from one thread must
 *     not interleave).  create, destroy and the statistics take locks: not from a handler.
 *   - In a thread that cannot use the pools (SYNCPOOL_DISABLE=1, no P id left, a thread-exit
 *     destructor after the library's own) or a handler that interrupted the allocator, get is
 *     new_object and put is drop_object.
 *   - After fork, the child's pools hold what the parent's did; the child's rotations age them.
 *   - Every pool appears in the statistics (SYNCPOOL_STATS): a "pools" list beside "classes",
 *     with the classes' counters (size is object_size_hint), name and cached_objects. */
typedef struct syncpool_pool syncpool_pool;

struct syncpool_pool_config {
    void *(*new_object)(void *arg);            /* Go's New; NULL: get returns NULL on a miss */
    void (*drop_object)(void *obj, void *arg); /* an object the pool lets go; NULL: nothing */
    void *arg;                                 /* passed to both */
    /* Bytes of objects one P keeps in the pool per rotation period (beyond that a put passes the
     * object to drop_object); 0: 1 MiB.  Counted with object_size_hint; without a hint there is
     * no cap but the rotation, as in Go. */
    size_t max_cached_bytes_per_p;
    size_t object_size_hint;                   /* bytes per object; 0: unknown */
    const char *name;                          /* for statistics (copied, up to 63 bytes) */
};

/* A new pool, or NULL with errno EINVAL (cfg is NULL, or max_cached_bytes_per_p is smaller than
 * object_size_hint: a pool that may keep nothing) or ENOMEM. */
syncpool_pool *syncpool_pool_create(const struct syncpool_pool_config *cfg);
/* An object from the pool (this thread's last put first, then other threads', then the
 * victim's), else new_object(arg); NULL if there is neither.  get(NULL) returns NULL. */
void *syncpool_pool_get(syncpool_pool *pool);
/* Gives obj to the pool.  obj == NULL or pool == NULL: ignored, as Go ignores Put(nil). */
void syncpool_pool_put(syncpool_pool *pool, void *obj);
/* Drops every object the pool holds (drop_object) and frees the pool.  The pool must not be in
 * use by another thread, nor used afterwards (undefined).  What is detected, cheaply: destroy of
 * NULL or of a pool destroyed already (ignored, while its memory has not been reused), and a get
 * or put that starts while destroy runs (get: new_object's object; put: drop_object). */
void syncpool_pool_destroy(syncpool_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
