/* stats.c — summing and printing the counters. */
#include "stats.h"

#include <string.h>
#include "pool.h"
#include "upool.h"

unsigned sp_stats_collect(struct sp_class_stats *out)
{
    uint32_t n = atomic_load_explicit(&sp_nprocs, memory_order_acquire);
    uint64_t live[SP_NCOUNTERS][SP_MAX_CLASSES];
    memset(live, 0, sizeof live);
    sp_pool_fast_counts(live);
    for (unsigned c = 0; c < sp_nclasses; c++) {
        uint64_t s[SP_NCOUNTERS] = {0};
        for (int k = 0; k < SP_NCOUNTERS; k++) s[k] = live[k][c];
        for (uint32_t id = 0; id < n; id++) {
            struct sp_proc *p = sp_proc_get(id);
            if (!p) continue;
            for (int k = 0; k < SP_NCOUNTERS; k++)
                s[k] += __atomic_load_n(&p->cnt[k][c], __ATOMIC_RELAXED);
        }
        struct sp_class_stats *o = &out[c];
        o->size = sp_class_size[c];
        o->hits_private = s[SP_C_HIT_PRIVATE];
        o->hits_shared = s[SP_C_HIT_SHARED];
        o->steals = s[SP_C_STEAL];
        o->hits_victim = s[SP_C_HIT_VICTIM];
        o->misses = s[SP_C_MISS];
        o->gets = o->hits_private + o->hits_shared + o->steals + o->hits_victim + o->misses;
        o->puts = s[SP_C_PUT];
        o->released = s[SP_C_OVERFLOW] + atomic_load_explicit(&sp_released[c], memory_order_relaxed);
        /* Everything put in is either still cached, handed out again, or released.  Counters are
         * read one by one while others run, so a snapshot can be off by a few: clamp at 0. */
        uint64_t out_ = o->gets - o->misses + o->released;
        o->cached_objects = o->puts > out_ ? o->puts - out_ : 0;
        o->cached_bytes = o->cached_objects * o->size;
    }
    return sp_nclasses;
}

uint64_t sp_stats_cached_bytes(void)
{
    struct sp_class_stats cs[SP_MAX_CLASSES];
    unsigned n = sp_stats_collect(cs);
    uint64_t total = 0;
    for (unsigned c = 0; c < n; c++) total += cs[c].cached_bytes;
    return total;
}

uint64_t sp_stats_class_ops(void)
{
    struct sp_class_stats cs[SP_MAX_CLASSES];
    unsigned n = sp_stats_collect(cs);
    uint64_t total = 0;
    for (unsigned c = 0; c < n; c++) total += cs[c].gets + cs[c].puts;
    return total;
}

static void sp_add_gets(const char *name, const struct sp_class_stats *s, void *arg)
{
    *(uint64_t *)arg += s->gets;
}

uint64_t sp_stats_total_gets(void)
{
    struct sp_class_stats cs[SP_MAX_CLASSES];
    unsigned n = sp_stats_collect(cs);
    uint64_t total = 0;
    for (unsigned c = 0; c < n; c++) total += cs[c].gets;
    sp_upools_each_stats(sp_add_gets, &total);   /* the JSON's "gets" include the pools' */
    return total;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0 if there is none.  p is NUL-terminated, and NUL is never a
 * continuation byte, so this reads no further than the string. */
static size_t sp_utf8_len(const unsigned char *p)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) n = 3;
    else if (c >= 0xf0 && c <= 0xf4) n = 4;
    else return 0;
    if (c == 0xe0) lo = 0xa0;
    else if (c == 0xed) hi = 0x9f;
    else if (c == 0xf0) lo = 0x90;
    else if (c == 0xf4) hi = 0x8f;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return n;
}

/* s as a JSON string: '"' and '\' escaped, control characters and DEL as \u00XX, well-formed
 * UTF-8 as it is, and each other byte as U+FFFD, so the file stays valid UTF-8 JSON whatever
 * bytes a program name holds. */
static void sp_json_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        size_t n;
        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p++, f);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p++);
        } else if (*p < 0x80) {
            fputc(*p++, f);
        } else if ((n = sp_utf8_len(p)) != 0) {
            fwrite(p, 1, n, f);
            p += n;
        } else {
            fputs("\\ufffd", f);
            p++;
        }
    }
    fputc('"', f);
}

bool sp_escape(char *buf, size_t cap, const char *s, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0;
    if (cap == 0) return *s != 0;
    for (; s[i] && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[4];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            e[k++] = '\\';
            e[k++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            e[k++] = (char)c;
        } else {
            e[k++] = '\\';
            e[k++] = 'x';
            e[k++] = hex[c >> 4];
            e[k++] = hex[c & 15];
        }
        if (o + k >= cap) break;
        memcpy(buf + o, e, k);
        o += k;
    }
    buf[o] = 0;
    return s[i] != 0;
}

struct sp_pools_json { FILE *f; unsigned n; };

static void sp_pool_json(const char *name, const struct sp_class_stats *s, void *arg)
{
    struct sp_pools_json *pj = arg;
    fprintf(pj->f, "%s{\"name\":", pj->n++ ? "," : "");
    sp_json_string(pj->f, name);
    fprintf(pj->f,
            ",\"size\":%llu,\"gets\":%llu,\"puts\":%llu,\"hits_private\":%llu,"
            "\"hits_shared\":%llu,\"steals\":%llu,\"hits_victim\":%llu,\"misses\":%llu,"
            "\"released\":%llu,\"cached_bytes\":%llu,\"cached_objects\":%llu}",
            (unsigned long long)s->size, (unsigned long long)s->gets,
            (unsigned long long)s->puts, (unsigned long long)s->hits_private,
            (unsigned long long)s->hits_shared, (unsigned long long)s->steals,
            (unsigned long long)s->hits_victim, (unsigned long long)s->misses,
            (unsigned long long)s->released, (unsigned long long)s->cached_bytes,
            (unsigned long long)s->cached_objects);
}

int sp_stats_write_json(FILE *f, long rotate_ms, uint64_t rotations,
                        const struct sp_stats_origin *origin)
{
    struct sp_class_stats cs[SP_MAX_CLASSES];
    unsigned n = sp_stats_collect(cs);
    uint64_t cached = 0;
    for (unsigned c = 0; c < n; c++) cached += cs[c].cached_bytes;
    fprintf(f, "{\"rotate_ms\":%ld,\"rotations\":%llu,\"cached_bytes\":%llu,\"classes\":[",
            rotate_ms, (unsigned long long)rotations, (unsigned long long)cached);
    for (unsigned c = 0; c < n; c++) {
        const struct sp_class_stats *s = &cs[c];
        fprintf(f,
                "%s{\"size\":%llu,\"gets\":%llu,\"puts\":%llu,\"hits_private\":%llu,"
                "\"hits_shared\":%llu,\"steals\":%llu,\"hits_victim\":%llu,\"misses\":%llu,"
                "\"released\":%llu,\"cached_bytes\":%llu}",
                c ? "," : "", (unsigned long long)s->size, (unsigned long long)s->gets,
                (unsigned long long)s->puts, (unsigned long long)s->hits_private,
                (unsigned long long)s->hits_shared, (unsigned long long)s->steals,
                (unsigned long long)s->hits_victim, (unsigned long long)s->misses,
                (unsigned long long)s->released, (unsigned long long)s->cached_bytes);
    }
    fputs("],\"pools\":[", f);
    struct sp_pools_json pj = {f, 0};
    sp_upools_each_stats(sp_pool_json, &pj);
    fputc(']', f);
    if (origin) {
        fprintf(f, ",\"pid\":%ld,\"program\":", origin->pid);
        sp_json_string(f, origin->program);
        fprintf(f, ",\"written_at_us\":%llu", (unsigned long long)origin->written_at_us);
    }
    fprintf(f, "}\n");
    return ferror(f) ? -1 : 0;
}

struct sp_pools_table { FILE *f; unsigned n; };

/* One row per program pool, under a header of its own (size: the pool's object_size_hint). */
static void sp_pool_row(const char *name, const struct sp_class_stats *s, void *arg)
{
    struct sp_pools_table *pt = arg;
    FILE *f = pt->f;
    if (pt->n++ == 0)
        fprintf(f, "%-20s %6s %12s %12s %8s %8s %8s %8s %8s %12s %12s\n", "pool", "size", "gets",
                "puts", "private%", "shared%", "steal%", "victim%", "new%", "dropped",
                "cached_obj");
    char esc[4 * 20 + 1];
    bool cut = sp_escape(esc, sizeof esc, name, 20);
    double g = s->gets ? 100.0 / (double)s->gets : 0;
    fprintf(f, "%-20s%s %6llu %12llu %12llu %8.1f %8.1f %8.1f %8.1f %8.1f %12llu %12llu\n", esc,
            cut ? "..." : "", (unsigned long long)s->size, (unsigned long long)s->gets,
            (unsigned long long)s->puts, g * (double)s->hits_private, g * (double)s->hits_shared,
            g * (double)s->steals, g * (double)s->hits_victim, g * (double)s->misses,
            (unsigned long long)s->released, (unsigned long long)s->cached_objects);
}

int sp_stats_write_table(FILE *f, long rotate_ms, uint64_t rotations,
                         const struct sp_stats_origin *origin)
{
    struct sp_class_stats cs[SP_MAX_CLASSES];
    unsigned n = sp_stats_collect(cs);
    struct sp_class_stats t = {0};
    fprintf(f, "syncpool stats: rotate_ms=%ld rotations=%llu", rotate_ms,
            (unsigned long long)rotations);
    if (origin) {
        char name[4 * 64 + 1];
        bool cut = sp_escape(name, sizeof name, origin->program, 64);
        fprintf(f, " pid=%ld program=%s%s", origin->pid, name, cut ? "..." : "");
    }
    fputc('\n', f);
    fprintf(f, "%6s %12s %12s %8s %8s %8s %8s %8s %12s %12s\n", "size", "gets", "puts",
            "private%", "shared%", "steal%", "victim%", "miss%", "released", "cached_B");
    for (unsigned c = 0; c < n; c++) {
        const struct sp_class_stats *s = &cs[c];
        t.gets += s->gets; t.puts += s->puts; t.hits_private += s->hits_private;
        t.hits_shared += s->hits_shared; t.steals += s->steals; t.hits_victim += s->hits_victim;
        t.misses += s->misses; t.released += s->released; t.cached_bytes += s->cached_bytes;
        if (!s->gets && !s->puts) continue;
        double g = s->gets ? 100.0 / (double)s->gets : 0;
        fprintf(f, "%6llu %12llu %12llu %8.1f %8.1f %8.1f %8.1f %8.1f %12llu %12llu\n",
                (unsigned long long)s->size, (unsigned long long)s->gets,
                (unsigned long long)s->puts, g * (double)s->hits_private,
                g * (double)s->hits_shared, g * (double)s->steals, g * (double)s->hits_victim,
                g * (double)s->misses, (unsigned long long)s->released,
                (unsigned long long)s->cached_bytes);
    }
    double g = t.gets ? 100.0 / (double)t.gets : 0;
    fprintf(f, "%6s %12llu %12llu %8.1f %8.1f %8.1f %8.1f %8.1f %12llu %12llu\n", "all",
            (unsigned long long)t.gets, (unsigned long long)t.puts, g * (double)t.hits_private,
            g * (double)t.hits_shared, g * (double)t.steals, g * (double)t.hits_victim,
            g * (double)t.misses, (unsigned long long)t.released,
            (unsigned long long)t.cached_bytes);
    struct sp_pools_table pt = {f, 0};
    sp_upools_each_stats(sp_pool_row, &pt);
    return ferror(f) ? -1 : 0;
}
