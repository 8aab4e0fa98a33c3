/* sp_assert.h — invariant checks of debug builds (cmake -DSYNCPOOL_DEBUG=ON), in the style of
 * mimalloc's mi_assert_internal.
 *
 *   sp_assert(expr)            what a comment says is true, checked where it is cheap;
 *   sp_assert_msg(expr, "why") the same, with a string literal added to the report;
 *   sp_assert_held(&mutex)     the calling thread holds this pthread mutex (glibc records the
 *                              owner's tid in every mutex it locks, default ones included).
 *
 * Without SYNCPOOL_DEBUG they compile to nothing: expr is type-checked (so a variable used only
 * in a check is still "used") but never evaluated, and a release build is the same code with or
 * without them.  With it, a failed check writes one line,
 *   syncpool: assertion failed: EXPR at FILE:LINE (FUNCTION)
 * to fd 2 with a single write(2) and aborts: no stdio, no malloc, no lock, so it may fail
 * anywhere, inside malloc, in a signal handler that interrupted it, or in a forked child.
 *
 * Not named assert.h: pool/ is on the include path of the library, the core and the unit tests,
 * where that name would hide the C library's <assert.h>. */
#ifndef SYNCPOOL_SP_ASSERT_H
#define SYNCPOOL_SP_ASSERT_H

#if defined(SYNCPOOL_DEBUG) && SYNCPOOL_DEBUG
#include <stdlib.h>
#include <unistd.h>

static __attribute__((noreturn, cold, noinline, unused)) void
sp_assert_fail(const char *expr, const char *file, unsigned line, const char *func)
{
    char buf[512], num[12];
    unsigned k = sizeof num - 1;
    num[k] = '\0';
    do num[--k] = (char)('0' + line % 10); while ((line /= 10) != 0 && k > 0);
    const char *part[] = {"syncpool: assertion failed: ", expr, " at ", file, ":", num + k, " (",
                          func, ")\n"};
    size_t n = 0;
    for (unsigned i = 0; i < sizeof part / sizeof part[0]; i++)
        for (const char *s = part[i]; *s && n < sizeof buf - 1; s++) buf[n++] = *s;
    if (buf[n - 1] != '\n') buf[n++] = '\n';      /* cut short: still one line */
    ssize_t w = write(2, buf, n);
    (void)w;
    abort();
}
#define sp_assert_msg(expr, msg)                                                                  \
    (__builtin_expect(!!(expr), 1) ? (void)0                                                      \
                                   : sp_assert_fail(#expr " (" msg ")", __FILE__, __LINE__,       \
                                                    __func__))
#define sp_assert(expr)                                                                           \
    (__builtin_expect(!!(expr), 1) ? (void)0                                                      \
                                   : sp_assert_fail(#expr, __FILE__, __LINE__, __func__))
#define sp_assert_held(m) sp_assert_msg((m)->__data.__owner == gettid(), "lock held")
#else
#define sp_assert_msg(expr, msg) ((void)sizeof(!(expr)))
#define sp_assert(expr)          ((void)sizeof(!(expr)))
#define sp_assert_held(m)        ((void)sizeof((m)->__data.__owner))
#endif

#endif
