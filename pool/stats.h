/* stats.h — the pool counters summed over all Ps, on demand (the hot path only bumps its own P's
 * counters).  Key names are an interface (design notes): keys may be added, never renamed. */
#ifndef SYNCPOOL_STATS_H
#define SYNCPOOL_STATS_H

#include <stdint.h>
#include <stdio.h>

struct sp_class_stats {
    uint64_t size, gets, puts, hits_private, hits_shared, steals, hits_victim, misses, released,
        cached_bytes;
};

/* Fills out[0 .. sp_nclasses) and returns sp_nclasses. */
unsigned sp_stats_collect(struct sp_class_stats *out);
uint64_t sp_stats_cached_bytes(void);
int sp_stats_write_json(FILE *f, long rotate_ms, uint64_t rotations);
int sp_stats_write_table(FILE *f, long rotate_ms, uint64_t rotations);

#endif
