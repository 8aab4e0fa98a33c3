/* sizeclass.h — the backend's small size classes, and request size -> class without division.
 *
 * The table is built once at start-up from the backend's own rounding (nallocx), so a pooled
 * object of class c is exactly what the backend would hand out for any request that maps to c. */
#ifndef SYNCPOOL_SIZECLASS_H
#define SYNCPOOL_SIZECLASS_H

#include <stddef.h>
#include <stdint.h>

#define SP_MAX_CLASSES   40        /* jemalloc 5.3 has 36 small bins (8 .. 14336) */
#define SP_MAX_POOLED    14336     /* largest small class of jemalloc 5.3 */

/* Largest request served by the pools; 0 until sp_sizeclass_init ran (and when disabled), so the
 * shim's `n <= sp_max_size` test is also its "pools are on" test. */
/* Hidden: defined in this library, so the hot paths address them directly, not via the GOT. */
#define SP_HIDDEN __attribute__((visibility("hidden")))
extern SP_HIDDEN size_t sp_max_size;
extern SP_HIDDEN unsigned sp_nclasses;
extern SP_HIDDEN uint32_t sp_class_size[SP_MAX_CLASSES];
/* Indexed by the request size itself, not by (n + 7) >> 3: two instructions fewer on every
 * malloc, for 12 KiB more of table. */
extern SP_HIDDEN uint8_t sp_class_of[SP_MAX_POOLED + 1];

/* Class of a request of n <= sp_max_size bytes (n == 0 maps to the smallest class). */
static inline unsigned sp_size_class(size_t n) { return sp_class_of[n]; }

/* Builds the tables for classes up to max_size (rounded down to a class size; 0 = pools off).
 * Returns the effective maximum. */
size_t sp_sizeclass_init(size_t max_size);

#endif
