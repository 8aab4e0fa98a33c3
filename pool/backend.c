/* backend.c — start-up of the backend (see backend.h). */
#include "backend.h"

#ifndef SYNCPOOL_BACKEND_LIBC
#include <dlfcn.h>

void *(*be_je_malloc)(size_t);
void (*be_je_free)(void *);

void be_init(void)
{
    const char *v;
    size_t len = sizeof(v);
    mallctl("version", &v, &len, NULL, 0);     /* forces jemalloc's initialisation */
    /* RTLD_NOLOAD: the library is already mapped (we link it); this only returns its handle,
     * and dlsym on the handle finds jemalloc's own definitions, not ours. */
    void *h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
    if (!h) return;
    void *m = dlsym(h, "malloc"), *f = dlsym(h, "free");
    if (m && f) {
        be_je_free = (void (*)(void *))f;
        be_je_malloc = (void *(*)(size_t))m;
    }
}
#endif
