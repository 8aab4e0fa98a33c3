/* namespaces.c — unshare and setns, which the kernel refuses in a multi-threaded process for
 * some namespaces: a new user namespace (unshare(CLONE_NEWUSER) implies CLONE_THREAD and
 * CLONE_FS), and entering a user, mount or time namespace with setns (a shared fs_struct or a
 * second thread is EINVAL).  The rotation thread would make every process multi-threaded, so
 * around these calls it is stopped and joined, and started again afterwards: a single-threaded
 * program gets what it gets without the library.  (A program that issues the system call itself,
 * with syscall(2), bypasses this.) */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rotate.h"
#include "shim.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Flags for which the kernel wants the caller to be the only thread of its process. */
#define SP_UNSHARE_SINGLE (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)
#define SP_SETNS_SINGLE   (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWTIME)

/* The system call, with the rotation thread stopped.  A thread that pthread_join has reaped may
 * still be in the kernel's thread group for a few microseconds (glibc's join returns when the
 * kernel clears the thread id, just before the thread is unhashed), so an EINVAL right after a
 * join is retried for up to 20 ms. */
static long sp_single_threaded_call(long nr, long a, long b)
{
    bool joined = sp_rotator_pause();
    long rc = syscall(nr, a, b);
    for (int i = 0; rc != 0 && errno == EINVAL && joined && i < 200; i++) {
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
        rc = syscall(nr, a, b);
    }
    int e = errno;
    sp_rotator_resume();
    errno = e;
    return rc;
}

SP_EXPORT int unshare(int flags)
{
    if (!(flags & SP_UNSHARE_SINGLE)) return (int)syscall(SYS_unshare, flags);
    return (int)sp_single_threaded_call(SYS_unshare, flags, 0);
}

SP_EXPORT int setns(int fd, int nstype)
{
    /* nstype 0 accepts any kind of namespace fd; a pidfd takes a set of CLONE_NEW* flags. */
    if (nstype != 0 && !(nstype & SP_SETNS_SINGLE)) return (int)syscall(SYS_setns, fd, nstype);
    return (int)sp_single_threaded_call(SYS_setns, fd, nstype);
}
