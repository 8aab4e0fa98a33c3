/* nested.c — the region for allocations nested inside the allocator (nested.h). */
#include "nested.h"
#include "sp_assert.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

_Atomic uintptr_t sp_nested_base;
/* Offset of the next uncarved byte; it starts at 16, so that offset 0, the lists' "empty", is
 * never a block's (set before any thread can see the region, unlike a store after mapping). */
static _Atomic uintptr_t sp_nested_bump = 16;

/* Lists of 16 << k bytes (header included), k = 0 .. SP_NESTED_LISTS - 1: 16 B .. 64 KiB. */
#define SP_NESTED_LISTS 13
#define SP_NESTED_LARGE 0xffu               /* hdr.list of a block carved to the page */
#define SP_NESTED_MAGIC 0x6e657374u
_Static_assert(SP_NESTED_BYTES / 16 <= UINT32_MAX, "a block's offset / 16 fits in 32 bits");
_Static_assert((16ul << (SP_NESTED_LISTS - 1)) < SP_NESTED_BYTES &&
                   SP_NESTED_LISTS < SP_NESTED_LARGE,
               "lists of 16 B .. 64 KiB");

struct sp_nested_hdr {              /* the 16 bytes below the caller's pointer */
    uint32_t magic;
    uint32_t list;                  /* k, or SP_NESTED_LARGE */
    uint64_t span;                  /* the block's bytes (header and alignment gap included) */
};

/* A free list's head: the block's offset in the region / 16 (low 32 bits, 0 = empty: offset 0
 * is never a block's, see sp_nested_bump) and a tag (high 32 bits) that every successful
 * push and pop changes, so that a pop whose CAS saw the same head twice (the block popped and
 * pushed back meanwhile, the ABA problem) cannot succeed with a stale `next`. */
static _Atomic uint64_t sp_nested_free_list[SP_NESTED_LISTS];

static uintptr_t sp_nested_map(void)
{
    uintptr_t b = atomic_load_explicit(&sp_nested_base, memory_order_acquire);
    if (b) return b;
    void *p = mmap(NULL, SP_NESTED_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 0;
    uintptr_t expect = 0;
    /* Two threads may map at once: one CAS wins, the other unmaps its copy. */
    if (!atomic_compare_exchange_strong_explicit(&sp_nested_base, &expect, (uintptr_t)p,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        munmap(p, SP_NESTED_BYTES);
        return expect;
    }
    return (uintptr_t)p;
}

static void *sp_nested_carve(uintptr_t base, size_t bytes, size_t align)
{
    uintptr_t off = atomic_load_explicit(&sp_nested_bump, memory_order_relaxed), start;
    do {
        start = (off + align - 1) & ~(uintptr_t)(align - 1);
        if (start < off || start + bytes > SP_NESTED_BYTES || start + bytes < start) return NULL;
    } while (!atomic_compare_exchange_weak_explicit(&sp_nested_bump, &off, start + bytes,
                                                    memory_order_relaxed, memory_order_relaxed));
    /* The bump pointer starts at 16: no block is at offset 0, the lists' "empty". */
    sp_assert(start >= 16 && start % 16 == 0);
    return (void *)(base + start);
}

static void *sp_nested_pop(uintptr_t base, unsigned k)
{
    sp_assert(k < SP_NESTED_LISTS);
    _Atomic uint64_t *head = &sp_nested_free_list[k];
    uint64_t h = atomic_load_explicit(head, memory_order_acquire);
    for (;;) {
        uint32_t off16 = (uint32_t)h;
        if (off16 == 0) return NULL;
        char *blk = (char *)(base + ((uintptr_t)off16 << 4));
        /* The block may be popped and reused by another thread meanwhile: this read then gets
         * garbage (the region stays mapped), and the tag makes the CAS fail. */
        uint32_t next = __atomic_load_n((uint32_t *)blk, __ATOMIC_RELAXED);
        uint64_t nh = ((h >> 32) + 1) << 32 | next;
        if (atomic_compare_exchange_weak_explicit(head, &h, nh, memory_order_acquire,
                                                  memory_order_acquire))
            return blk;
    }
}

static void sp_nested_push(uintptr_t base, unsigned k, char *blk)
{
    _Atomic uint64_t *head = &sp_nested_free_list[k];
    uint64_t h = atomic_load_explicit(head, memory_order_relaxed);
    uint32_t off16 = (uint32_t)(((uintptr_t)blk - base) >> 4);
    /* A block of the region, 16-aligned, never at offset 0 (the lists' "empty"). */
    sp_assert(k < SP_NESTED_LISTS && off16 != 0 && ((uintptr_t)blk - base) % 16 == 0 &&
              (uintptr_t)blk - base < SP_NESTED_BYTES);
    for (;;) {
        __atomic_store_n((uint32_t *)blk, (uint32_t)h, __ATOMIC_RELAXED);   /* next */
        uint64_t nh = ((h >> 32) + 1) << 32 | off16;
        /* Release: the next popper sees `next` and whatever the block's last user wrote. */
        if (atomic_compare_exchange_weak_explicit(head, &h, nh, memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
}

void *sp_nested_alloc(size_t n, size_t align)
{
    uintptr_t base = sp_nested_map();
    if (align < 16) align = 16;
    sp_assert((align & (align - 1)) == 0);
    /* The header, the gap an alignment over 16 may need, and the caller's bytes. */
    size_t need = n + 16 + (align - 16);
    if (!base || need < n || need > SP_NESTED_BYTES) {
        errno = ENOMEM;
        return NULL;
    }
    char *blk = NULL;
    unsigned k = 0;
    size_t span;
    if (need <= (16ul << (SP_NESTED_LISTS - 1))) {
        while ((16ul << k) < need) k++;
        span = 16ul << k;
        blk = sp_nested_pop(base, k);
        if (!blk) blk = sp_nested_carve(base, span, 16);
    } else {
        k = SP_NESTED_LARGE;
        span = (need + 4095) & ~(size_t)4095;
        blk = sp_nested_carve(base, span, 4096);
    }
    if (!blk) {
        errno = ENOMEM;
        return NULL;
    }
    char *p = (char *)(((uintptr_t)blk + 16 + align - 1) & ~(uintptr_t)(align - 1));
    struct sp_nested_hdr *h = (struct sp_nested_hdr *)(p - 16);
    /* magic may be the block's first word, which a pop that lost its race may still read (see
     * sp_nested_pop): written atomically.  The caller's bytes are never that word. */
    __atomic_store_n(&h->magic, SP_NESTED_MAGIC, __ATOMIC_RELAXED);
    h->list = k;
    h->span = span - (size_t)(p - blk);   /* bytes from p to the block's end, header excluded */
    h->span += 16;
    /* Aligned, inside the block, and the caller's n bytes fit. */
    sp_assert(((uintptr_t)p & (align - 1)) == 0 && p - 16 >= blk && h->span - 16 >= n);
    return p;
}

size_t sp_nested_size(const void *p)
{
    const struct sp_nested_hdr *h = (const struct sp_nested_hdr *)((const char *)p - 16);
    sp_assert(__atomic_load_n(&h->magic, __ATOMIC_RELAXED) == SP_NESTED_MAGIC);  /* a live block */
    return h->span - 16;
}

void sp_nested_free(void *p)
{
    uintptr_t base = atomic_load_explicit(&sp_nested_base, memory_order_relaxed);
    struct sp_nested_hdr *h = (struct sp_nested_hdr *)((char *)p - 16);
    /* p came from sp_nested_alloc and is not freed yet (free clears the magic). */
    sp_assert(sp_nested_owns(p) &&
              __atomic_load_n(&h->magic, __ATOMIC_RELAXED) == SP_NESTED_MAGIC);
    size_t usable = h->span - 16;
    unsigned k = h->list;
    sp_assert(k < SP_NESTED_LISTS || k == SP_NESTED_LARGE);
    if (k == SP_NESTED_LARGE) {
        /* The block's whole pages back to the kernel; its addresses are not reused. */
        uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        uintptr_t hi = ((uintptr_t)p + usable) & ~(uintptr_t)4095;
        __atomic_store_n(&h->magic, 0, __ATOMIC_RELAXED);
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
        return;
    }
    /* The block starts where its list's size says, counted back from its end. */
    char *blk = (char *)p + usable - (16ul << k);
    sp_assert(blk <= (char *)p - 16);
    __atomic_store_n(&h->magic, 0, __ATOMIC_RELAXED);
    sp_nested_push(base, k, blk);
}
