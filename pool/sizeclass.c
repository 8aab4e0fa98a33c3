/* sizeclass.c — builds the class tables from the backend's rounding. */
#include "sizeclass.h"
#include "backend.h"

size_t sp_max_size;
unsigned sp_nclasses;
uint32_t sp_class_size[SP_MAX_CLASSES];
uint8_t sp_class_of[SP_MAX_POOLED + 1];

size_t sp_sizeclass_init(size_t max_size)
{
    if (max_size > SP_MAX_POOLED) max_size = SP_MAX_POOLED;
    unsigned n = 0;
    size_t effective = 0;
    /* Every multiple of 8 up to max_size: the class is the backend's rounding of it (classes are
     * multiples of 8, so no other size starts a class). */
    for (size_t s = 8; s <= max_size; s += 8) {
        size_t c = be_class_size(s);
        if (c > max_size) break;               /* keep only classes that fit entirely */
        if (n == 0 || sp_class_size[n - 1] != c) {
            if (n == SP_MAX_CLASSES) break;
            sp_class_size[n++] = (uint32_t)c;
        }
        effective = c;
    }
    unsigned c = 0;
    for (size_t s = 0; s <= effective; s++) {
        while (c + 1 < n && sp_class_size[c] < s) c++;
        sp_class_of[s] = (uint8_t)c;
        /* s maps to the smallest class that holds it. */
        sp_assert(sp_class_size[c] >= s && (c == 0 || sp_class_size[c - 1] < s));
    }
    /* Classes: increasing multiples of 8, the largest the effective maximum, all in the table. */
    for (unsigned i = 0; i < n; i++)
        sp_assert(sp_class_size[i] % 8 == 0 &&
                  (i == 0 || sp_class_size[i - 1] < sp_class_size[i]) &&
                  sp_class_of[sp_class_size[i]] == i);
    sp_assert(n <= SP_MAX_CLASSES && effective <= max_size &&
              (n == 0 ? effective == 0 : effective == sp_class_size[n - 1]));
    sp_nclasses = n;
    return effective;
}

#ifdef SYNCPOOL_BACKEND_LIBC
/* jemalloc 5.3's small-class rounding (quantum 16, four classes per doubling), for the libc
 * backend of the sanitizer builds. */
size_t be_libc_class_size(size_t n)
{
    sp_assert(n <= SP_MAX_POOLED);          /* small classes only */
    if (n <= 8) return 8;
    if (n <= 128) return (n + 15) & ~(size_t)15;
    unsigned lg = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1));
    size_t delta = (size_t)1 << (lg - 2);
    return (n + delta - 1) & ~(delta - 1);
}
#endif
