/* libbench_glibc.so: a preload library that sends the malloc family to glibc's own allocator.
 *
 * The "glibc" allocator of the comparison normally means "no preload".  A program that is linked
 * with another allocator (Debian's redis-server needs libjemalloc.so.2) would then still run on
 * that allocator, so for such programs the harness preloads this library instead: it defines the
 * malloc family ahead of the linked allocator and forwards each call to glibc's __libc_*
 * entry points.  Not used for programs that link no allocator. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static size_t (*glibc_usable_size)(void *);

/* glibc exports malloc_usable_size under that name only; look it up in libc itself, not in the
 * global scope (where the linked allocator's definition would be found). */
__attribute__((constructor)) static void find_usable_size(void)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (libc)
        glibc_usable_size = (size_t(*)(void *))dlsym(libc, "malloc_usable_size");
}

EXPORT void *malloc(size_t n) { return __libc_malloc(n); }
EXPORT void *calloc(size_t k, size_t n) { return __libc_calloc(k, n); }
EXPORT void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
EXPORT void free(void *p) { __libc_free(p); }
EXPORT void *memalign(size_t a, size_t n) { return __libc_memalign(a, n); }
EXPORT void *valloc(size_t n) { return __libc_valloc(n); }
EXPORT void *pvalloc(size_t n) { return __libc_pvalloc(n); }

EXPORT void *aligned_alloc(size_t a, size_t n)
{
    if (a == 0 || (a & (a - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    return __libc_memalign(a, n);
}

EXPORT int posix_memalign(void **out, size_t a, size_t n)
{
    if (a < sizeof(void *) || (a & (a - 1)) != 0)
        return EINVAL;
    int saved = errno;
    void *p = __libc_memalign(a, n);
    if (!p)
        return ENOMEM;
    errno = saved;
    *out = p;
    return 0;
}

EXPORT size_t malloc_usable_size(void *p)
{
    return p && glibc_usable_size ? glibc_usable_size(p) : 0;
}
