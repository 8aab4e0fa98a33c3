/* check.h — a minimal checker for the pool core's unit tests: counts checks, prints failures,
 * ends with the "N passed, N failed" line. */
#ifndef SP_UNIT_CHECK_H
#define SP_UNIT_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static _Atomic long check_pass, check_fail;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (cond) {                                                                       \
            atomic_fetch_add(&check_pass, 1);                                             \
        } else {                                                                          \
            atomic_fetch_add(&check_fail, 1);                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

static inline int check_done(void)
{
    printf("%ld passed, %ld failed\n", atomic_load(&check_pass), atomic_load(&check_fail));
    return atomic_load(&check_fail) ? 1 : 0;
}

/* Scale factor for iteration counts: SP_TEST_SCALE=10 for long runs. */
static inline long check_scale(long base)
{
    const char *s = getenv("SP_TEST_SCALE");
    long k = s ? atol(s) : 1;
    return base * (k > 0 ? k : 1);
}

#endif
