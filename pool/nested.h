/* nested.h — memory for an allocation made while the same thread was already inside the
 * allocator: a signal handler that interrupted malloc or free, and allocates itself.
 *
 * Such a call may touch neither the thread's own pools (their owner-only steps may be half
 * done) nor the backend (its thread cache may be half updated, or the interrupted code may hold
 * one of its locks).  It is served from a region of our own instead: mapped on first use with
 * one mmap (async-signal-safe), carved with an atomic bump pointer, and recycled through
 * lock-free free lists per power-of-two size.  No lock, no thread cache, no call into the
 * backend, so it is safe at any point of the interrupted code.  Every block has a 16-byte header
 * just below the pointer the caller gets (its list, and its start for aligned blocks), so free,
 * realloc and malloc_usable_size find its size from the pointer alone; the range check
 * (sp_nested_owns) tells these pointers from the backend's.
 *
 * Expected use is rare and small (what a handler holds), so the region is 64 MiB of address
 * space whose pages are touched only as blocks are carved; a request it cannot serve fails
 * with ENOMEM.  Blocks over 64 KiB are carved to the page and their pages given back to the
 * kernel when freed (their addresses are not reused). */
#ifndef SYNCPOOL_NESTED_H
#define SYNCPOOL_NESTED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern _Atomic uintptr_t sp_nested_base;   /* 0 until the region is mapped */
#define SP_NESTED_BYTES (64ul << 20)

/* A block of at least n bytes aligned to align (a power of two; <= 16 means 16), or NULL with
 * errno ENOMEM.  Any context, lock-free. */
void *sp_nested_alloc(size_t n, size_t align);
/* p came from sp_nested_alloc. */
static inline bool sp_nested_owns(const void *p)
{
    uintptr_t b = atomic_load_explicit(&sp_nested_base, memory_order_relaxed);
    return b != 0 && (uintptr_t)p - b < SP_NESTED_BYTES;
}
/* Usable size of a block (what was asked for, rounded up to its list's size). */
size_t sp_nested_size(const void *p);
/* Any context, lock-free. */
void sp_nested_free(void *p);

#endif
