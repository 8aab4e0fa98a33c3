/* syncpool: a Go sync.Pool-style malloc front-end over jemalloc, loaded with LD_PRELOAD.
 *
 * The malloc family itself needs no header: preload the library and every malloc/free/new/delete
 * of the program goes through it.  This header declares the few extra entry points for tests and
 * for programs that want to drive rotation or read statistics themselves.  A program that calls
 * them must run with libsyncpool.so preloaded (or linked). */
#ifndef SYNCPOOL_H
#define SYNCPOOL_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs one rotation synchronously (the same step the background thread takes every
 * SYNCPOOL_ROTATE_MS): the current generation becomes the victim, the old victim's objects go
 * back to jemalloc.  Returns the number of objects released to jemalloc by this call. */
unsigned long syncpool_rotate_now(void);

/* Writes the statistics as one JSON object (the keys of SYNCPOOL_STATS=json:PATH) to f.
 * Returns 0, or -1 if writing failed. */
int syncpool_stats_json(FILE *f);

/* Writes the human-readable per-class table (the one SYNCPOOL_STATS=1 prints at exit) to f. */
int syncpool_stats_print(FILE *f);

/* Bytes the pools hold right now (sum over classes), and the number of rotations so far. */
unsigned long long syncpool_cached_bytes(void);
unsigned long long syncpool_rotations(void);

#ifdef __cplusplus
}
#endif
#endif
