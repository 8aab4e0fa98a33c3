/* alloc_aligned.c — the aligned family, with glibc 2.36's error semantics.
 *
 * Alignments up to 16 are what every pooled class of 16 bytes or more has anyway.  A larger
 * alignment is served by the class jemalloc would use for it (sp_pool_size_aligned): every
 * object of that class is so aligned, pooled or not.  Only what is not a pooled class then
 * goes straight to the backend. */
#include <errno.h>
#include <stdint.h>

#include "pass.h"
#include "shim.h"
#include "sizeclass.h"

#define SP_POOL_ALIGN 16

size_t sp_page_size = 4096;

void *sp_memalign(size_t align, size_t n)
{
    if (align <= SP_POOL_ALIGN) return sp_malloc(n < align ? align : n);
    if (n <= sp_max_size) {
        size_t u = sp_pool_size_aligned(n ? n : 1, align);
        if (u != 0 && u <= sp_max_size) return sp_malloc(u);
    }
    /* The class jemalloc would use is not a pooled one. */
    return sp_pool_pass_alloc(n, align, false);
}

static int sp_posix_memalign(void **out, size_t align, size_t n)
{
    /* A power of two multiple of sizeof(void *); *out untouched on error, errno untouched. */
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    int e = errno;
    void *p = sp_memalign(align, n);
    errno = e;
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/* glibc 2.36: aligned_alloc is memalign; a non-power-of-two alignment is rounded up. */
static void *sp_memalign_glibc(size_t align, size_t n)
{
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (align & (align - 1)) align = (size_t)1 << (64 - __builtin_clzll((unsigned long long)align));
    return sp_memalign(align ? align : 1, n);
}

static void *sp_valloc(size_t n)
{
    return sp_memalign(sp_page_size, n);
}

static void *sp_pvalloc(size_t n)
{
    if (n > SIZE_MAX - sp_page_size + 1) {
        errno = ENOMEM;
        return NULL;
    }
    size_t rounded = (n + sp_page_size - 1) & ~(sp_page_size - 1);
    return sp_memalign(sp_page_size, rounded ? rounded : sp_page_size);
}

#define SP_ALIAS(name, impl) __typeof__(impl) name __attribute__((alias(#impl), visibility("default")))

SP_ALIAS(posix_memalign, sp_posix_memalign);
SP_ALIAS(__posix_memalign, sp_posix_memalign);
SP_ALIAS(memalign, sp_memalign_glibc);
SP_ALIAS(aligned_alloc, sp_memalign_glibc);
SP_ALIAS(valloc, sp_valloc);
SP_ALIAS(pvalloc, sp_pvalloc);
SP_ALIAS(__libc_memalign, sp_memalign_glibc);
SP_ALIAS(__libc_valloc, sp_valloc);
SP_ALIAS(__libc_pvalloc, sp_pvalloc);
