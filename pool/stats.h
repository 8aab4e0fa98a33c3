/* stats.h — the pool counters summed over all Ps, on demand (the hot path only bumps its own P's
 * counters).  Key names are an interface (design notes): keys may be added, never renamed. */
#ifndef SYNCPOOL_STATS_H
#define SYNCPOOL_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sp_class_stats {
    uint64_t size, gets, puts, hits_private, hits_shared, steals, hits_victim, misses, released,
        cached_bytes, cached_objects;
};

/* The process the figures belong to (a wrapper such as `timeout` runs the library too, and
 * without %p in SYNCPOOL_STATS=json:PATH all processes of a run share one file). */
struct sp_stats_origin {
    long pid;
    const char *program;        /* any bytes: escaped when written */
    uint64_t written_at_us;     /* CLOCK_REALTIME, microseconds since the Unix epoch */
};

/* Fills out[0 .. sp_nclasses) and returns sp_nclasses. */
unsigned sp_stats_collect(struct sp_class_stats *out);
uint64_t sp_stats_cached_bytes(void);
/* gets summed over the classes and the program's pools: the pooled-size mallocs and pool Gets
 * this process made. */
uint64_t sp_stats_total_gets(void);
/* Gets and Puts summed over the size classes (mallocs and frees of pooled sizes), for the
 * rotation thread's "has the program gone quiet" (cleanup/rotate.c). */
uint64_t sp_stats_class_ops(void);
/* One JSON object, one line.  Top level: rotate_ms, rotations, cached_bytes (the classes'),
 * classes[], pools[] (the program's own pools, upool.h: the classes' keys plus name and
 * cached_objects; size is the pool's object_size_hint), then, with an origin, pid, program,
 * written_at_us (stats_file.c parses these back). */
int sp_stats_write_json(FILE *f, long rotate_ms, uint64_t rotations,
                        const struct sp_stats_origin *origin);
/* The table; its first line ends with pid=N program=NAME when there is an origin. */
int sp_stats_write_table(FILE *f, long rotate_ms, uint64_t rotations,
                         const struct sp_stats_origin *origin);

/* Copies at most max bytes of s into buf (cap bytes, always NUL-terminated, cap > 0 for any
 * output), printable ASCII as it is and everything else as \xHH, with '"' and '\' escaped by a
 * backslash: for text that comes from outside (the environment, a program's name) on its way
 * to a terminal (env.c's warnings, stats_file.c's, the table's first line).  Returns true if s
 * was cut short. */
bool sp_escape(char *buf, size_t cap, const char *s, size_t max);

#endif
