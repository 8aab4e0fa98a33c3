/* shim.h — internal interface of the malloc API layer (the only layer that knows that API). */
#ifndef SYNCPOOL_SHIM_H
#define SYNCPOOL_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SP_EXPORT __attribute__((visibility("default")))
#define SP_NOINLINE __attribute__((noinline))

#ifdef __cplusplus
extern "C" {
#endif

/* The implementations behind the exported names (hidden, so internal calls bind directly). */
void *sp_malloc(size_t n);
void sp_free(void *p);
void sp_free_sized(void *p, size_t n);
void *sp_memalign(size_t align, size_t n);   /* align: a power of two */

/* Thread set-up (init.c): NEW -> ACTIVE if the pools are on and a P is free.  Returns true if
 * the thread is now ACTIVE. */
bool sp_thread_setup(void);

/* Page size, set at start-up (4096 until then). */
extern size_t sp_page_size;

/* Configuration from the environment (env.c), parsed once by the constructor. */
enum sp_stats_mode { SP_STATS_OFF, SP_STATS_TABLE, SP_STATS_JSON };
struct sp_config {
    bool disable;
    enum sp_stats_mode stats;
    char stats_path[1024];
    long rotate_ms;
    size_t max_size;
    size_t cache_bytes;
};
void sp_config_from_env(struct sp_config *cfg);

/* SYNCPOOL_STATS at exit (stats_file.c): the table on table_fd, or the JSON file. */
void sp_stats_at_exit(const struct sp_config *cfg, int table_fd);
/* syncpool_stats_json / syncpool_stats_print: the statistics now, naming this process. */
int sp_stats_json_now(FILE *f, long rotate_ms);
int sp_stats_table_now(FILE *f, long rotate_ms);

#define SP_DEFAULT_ROTATE_MS   100L
#define SP_DEFAULT_MAX_SIZE    14336UL
#define SP_DEFAULT_CACHE_BYTES (256UL * 1024)

#ifdef __cplusplus
}
#endif
#endif
