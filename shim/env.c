/* env.c — the SYNCPOOL_* environment variables, parsed once at start-up.  A bad value prints one
 * warning line on stderr and the default is used; nothing here may allocate or abort.
 *
 * Every variable is read with secure_getenv, so in a secure-execution process (AT_SECURE:
 * setuid or setgid, file capabilities, an LSM transition) all of them are ignored, silently, and
 * the defaults hold, as jemalloc does for MALLOC_CONF.  There the environment comes from
 * whoever started the program, not from its owner, and every SYNCPOOL_* variable changes what
 * the process does; SYNCPOOL_STATS=json:PATH would even create and truncate PATH with the
 * program's privileges (design decision 9).
 *
 * Warnings quote the value they ignore through sp_escape: what comes from the environment never
 * reaches a terminal as raw control characters (escape sequences). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"
#include "stats.h"

static void sp_warn(const char *name, const char *value, const char *expected, const char *dflt)
{
    char v[4 * 64 + 1], buf[640];
    bool cut = sp_escape(v, sizeof v, value, 64);
    int n = snprintf(buf, sizeof buf, "syncpool: ignoring %s=\"%s%s\": expected %s; using %s\n",
                     name, v, cut ? "..." : "", expected, dflt);
    if (n > (int)sizeof buf - 1) n = (int)sizeof buf - 1;
    if (n > 0 && write(2, buf, (size_t)n) < 0) { /* nothing else to do with stderr gone */ }
}

/* A plain decimal integer in [lo, hi], nothing else (no sign, no spaces, no suffix). */
static bool sp_parse_uint(const char *s, unsigned long long lo, unsigned long long hi,
                          unsigned long long *out)
{
    if (*s < '0' || *s > '9') return false;
    unsigned long long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (v > (ULLONG_MAX - 9) / 10) return false;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

static void sp_env_uint(const char *name, unsigned long long lo, unsigned long long hi,
                        const char *expected, unsigned long long dflt, unsigned long long *out)
{
    const char *v = secure_getenv(name);
    *out = dflt;
    if (!v) return;
    if (!sp_parse_uint(v, lo, hi, out)) {
        char d[32];
        snprintf(d, sizeof d, "%llu", dflt);
        sp_warn(name, v, expected, d);
        *out = dflt;
    }
}

void sp_config_from_env(struct sp_config *cfg)
{
    unsigned long long v;
    memset(cfg, 0, sizeof *cfg);

    sp_env_uint("SYNCPOOL_DISABLE", 0, 1, "0 or 1", 0, &v);
    cfg->disable = v != 0;
    sp_env_uint("SYNCPOOL_ROTATE_MS", 0, 86400000ULL, "milliseconds from 0 (never) to 86400000",
                SP_DEFAULT_ROTATE_MS, &v);
    cfg->rotate_ms = (long)v;
    sp_env_uint("SYNCPOOL_MAX_SIZE", 0, 14336, "bytes from 0 to 14336", SP_DEFAULT_MAX_SIZE, &v);
    cfg->max_size = (size_t)v;
    sp_env_uint("SYNCPOOL_CACHE_BYTES", 1, 1ULL << 40, "bytes from 1 to 2^40",
                SP_DEFAULT_CACHE_BYTES, &v);
    cfg->cache_bytes = (size_t)v;

    const char *s = secure_getenv("SYNCPOOL_STATS");
    if (s) {
        if (strcmp(s, "0") == 0) {
            cfg->stats = SP_STATS_OFF;
        } else if (strcmp(s, "1") == 0) {
            cfg->stats = SP_STATS_TABLE;
        } else if (strncmp(s, "json:", 5) == 0 && s[5] && strlen(s + 5) < sizeof cfg->stats_path) {
            cfg->stats = SP_STATS_JSON;
            strcpy(cfg->stats_path, s + 5);
        } else {
            sp_warn("SYNCPOOL_STATS", s, "0, 1 or json:PATH", "0 (no statistics)");
        }
    }
}
