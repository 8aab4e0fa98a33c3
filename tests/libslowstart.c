/* libslowstart.so — preloaded before libsyncpool.so by the oom_slow_thread_start test: every new
 * thread sleeps 300 ms before it runs its start routine, so the rotation thread's first steps
 * would come after the test has exhausted its address space, unless its starter waits for them
 * (cleanup/rotate.c, sp_rot_set_up).  Allocates nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

struct start {
    void *(*fn)(void *);
    void *arg;
};

static void *slow_start(void *p)
{
    struct start s = *(struct start *)p;
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    return s.fn(s.arg);
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    static int (*next)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    static struct start slots[256];
    static unsigned used;
    if (!next) next = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))
                          dlsym(RTLD_NEXT, "pthread_create");
    struct start *s = &slots[__atomic_fetch_add(&used, 1, __ATOMIC_RELAXED) & 255];
    s->fn = fn;
    s->arg = arg;
    return next(t, attr, slow_start, s);
}
