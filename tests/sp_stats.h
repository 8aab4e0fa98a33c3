/* Reading syncpool's statistics from its public API, for tests that link the library.
 *
 * sp_stats_read() calls syncpool_stats_json() into a static buffer (fmemopen on a static array,
 * so apart from the FILE object itself nothing is malloc'ed) and parses it with a small strict
 * JSON parser that allocates nothing.  Unknown keys are skipped (the design allows keys to be
 * added); the documented keys must all be present, else sp_stats_read() fails with a message. */
#ifndef SP_STATS_H
#define SP_STATS_H

#include "sp_test.h"
#include "syncpool.h"

#include <ctype.h>

struct sp_class_stats {
    unsigned long long size, gets, puts, hits_private, hits_shared, steals, hits_victim, misses,
        released, cached_bytes;
};

#define SP_MAX_CLASSES 128
struct sp_stats {
    unsigned long long rotate_ms, rotations, cached_bytes;
    int nclasses;
    struct sp_class_stats cls[SP_MAX_CLASSES];
};

static char sp_json_buf[1 << 20];

struct sp_jp {
    const char *s;
    const char *err;
};

static void sp_jp_ws(struct sp_jp *p)
{
    while (*p->s == ' ' || *p->s == '\n' || *p->s == '\t' || *p->s == '\r')
        p->s++;
}

/* Parses a string; copies up to cap-1 chars into out (if out). */
static int sp_jp_string(struct sp_jp *p, char *out, size_t cap)
{
    size_t n = 0;
    if (*p->s != '"') {
        p->err = "expected string";
        return -1;
    }
    p->s++;
    while (*p->s && *p->s != '"') {
        char c = *p->s++;
        if (c == '\\') {
            if (!*p->s) {
                p->err = "bad escape";
                return -1;
            }
            c = *p->s++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++, p->s++)
                    if (!isxdigit((unsigned char)*p->s)) {
                        p->err = "bad \\u escape";
                        return -1;
                    }
                c = '?';
            }
        } else if ((unsigned char)c < 0x20) {
            p->err = "control character in string";
            return -1;
        }
        if (out && n + 1 < cap)
            out[n++] = c;
    }
    if (*p->s != '"') {
        p->err = "unterminated string";
        return -1;
    }
    p->s++;
    if (out)
        out[n] = 0;
    return 0;
}

/* Parses a JSON number; stores it into *v if it is a non-negative integer (else *isint = 0). */
static int sp_jp_number(struct sp_jp *p, unsigned long long *v, int *isint)
{
    const char *st = p->s;
    int neg = 0, frac = 0;
    unsigned long long x = 0;
    if (*p->s == '-') {
        neg = 1;
        p->s++;
    }
    if (!isdigit((unsigned char)*p->s)) {
        p->err = "bad number";
        return -1;
    }
    while (isdigit((unsigned char)*p->s))
        x = x * 10 + (unsigned)(*p->s++ - '0');
    if (*p->s == '.') {
        frac = 1;
        p->s++;
        if (!isdigit((unsigned char)*p->s)) {
            p->err = "bad fraction";
            return -1;
        }
        while (isdigit((unsigned char)*p->s))
            p->s++;
    }
    if (*p->s == 'e' || *p->s == 'E') {
        frac = 1;
        p->s++;
        if (*p->s == '+' || *p->s == '-')
            p->s++;
        if (!isdigit((unsigned char)*p->s)) {
            p->err = "bad exponent";
            return -1;
        }
        while (isdigit((unsigned char)*p->s))
            p->s++;
    }
    (void)st;
    if (v)
        *v = x;
    if (isint)
        *isint = !neg && !frac;
    return 0;
}

static int sp_jp_value(struct sp_jp *p, int depth);

static int sp_jp_skip_container(struct sp_jp *p, int depth)
{
    char open = *p->s, close = open == '{' ? '}' : ']';
    if (depth > 32) {
        p->err = "nesting too deep";
        return -1;
    }
    p->s++;
    sp_jp_ws(p);
    if (*p->s == close) {
        p->s++;
        return 0;
    }
    for (;;) {
        sp_jp_ws(p);
        if (open == '{') {
            if (sp_jp_string(p, NULL, 0))
                return -1;
            sp_jp_ws(p);
            if (*p->s++ != ':') {
                p->err = "expected ':'";
                return -1;
            }
            sp_jp_ws(p);
        }
        if (sp_jp_value(p, depth + 1))
            return -1;
        sp_jp_ws(p);
        if (*p->s == ',') {
            p->s++;
            continue;
        }
        if (*p->s == close) {
            p->s++;
            return 0;
        }
        p->err = "expected ',' or closing bracket";
        return -1;
    }
}

static int sp_jp_value(struct sp_jp *p, int depth)
{
    sp_jp_ws(p);
    switch (*p->s) {
    case '{':
    case '[':
        return sp_jp_skip_container(p, depth);
    case '"':
        return sp_jp_string(p, NULL, 0);
    case 't':
        if (!strncmp(p->s, "true", 4)) {
            p->s += 4;
            return 0;
        }
        break;
    case 'f':
        if (!strncmp(p->s, "false", 5)) {
            p->s += 5;
            return 0;
        }
        break;
    case 'n':
        if (!strncmp(p->s, "null", 4)) {
            p->s += 4;
            return 0;
        }
        break;
    default:
        return sp_jp_number(p, NULL, NULL);
    }
    p->err = "bad literal";
    return -1;
}

/* Parses an integer-valued member: returns -1 on a JSON error, 0 and sets *ok = 0 if it is not
 * a non-negative integer. */
static int sp_jp_uint(struct sp_jp *p, unsigned long long *v, int *ok)
{
    sp_jp_ws(p);
    int isint = 0;
    if (*p->s == '-' || isdigit((unsigned char)*p->s)) {
        if (sp_jp_number(p, v, &isint))
            return -1;
        *ok = isint;
        return 0;
    }
    *ok = 0;
    return sp_jp_value(p, 1);
}

static const char *const sp_class_keys[] = {"size",        "gets",        "puts",   "hits_private",
                                            "hits_shared", "steals",      "hits_victim",
                                            "misses",      "released",    "cached_bytes"};

static int sp_jp_class(struct sp_jp *p, struct sp_class_stats *c, char *why, size_t whycap)
{
    unsigned long long *fields[] = {&c->size,        &c->gets,   &c->puts,   &c->hits_private,
                                    &c->hits_shared, &c->steals, &c->hits_victim,
                                    &c->misses,      &c->released, &c->cached_bytes};
    unsigned seen = 0;
    memset(c, 0, sizeof *c);
    sp_jp_ws(p);
    if (*p->s != '{') {
        p->err = "class entry is not an object";
        return -1;
    }
    p->s++;
    sp_jp_ws(p);
    if (*p->s == '}')
        p->s++;
    else
        for (;;) {
            char key[64];
            sp_jp_ws(p);
            if (sp_jp_string(p, key, sizeof key))
                return -1;
            sp_jp_ws(p);
            if (*p->s++ != ':') {
                p->err = "expected ':'";
                return -1;
            }
            int idx = -1;
            for (int i = 0; i < 10; i++)
                if (!strcmp(key, sp_class_keys[i]))
                    idx = i;
            if (idx >= 0) {
                int ok;
                if (sp_jp_uint(p, fields[idx], &ok))
                    return -1;
                if (!ok) {
                    snprintf(why, whycap, "class key \"%s\" is not a non-negative integer", key);
                    p->err = why;
                    return -1;
                }
                seen |= 1u << idx;
            } else if (sp_jp_value(p, 2)) {
                return -1;
            }
            sp_jp_ws(p);
            if (*p->s == ',') {
                p->s++;
                continue;
            }
            if (*p->s == '}') {
                p->s++;
                break;
            }
            p->err = "expected ',' or '}' in class object";
            return -1;
        }
    for (int i = 0; i < 10; i++)
        if (!(seen & (1u << i))) {
            snprintf(why, whycap, "class object lacks key \"%s\"", sp_class_keys[i]);
            p->err = why;
            return -1;
        }
    return 0;
}

/* Parses a stats JSON document.  Returns 0, or -1 with a message in err (static storage). */
__attribute__((unused)) static int sp_stats_parse(const char *json, struct sp_stats *st,
                                                  const char **err)
{
    static char why[160];
    struct sp_jp p = {json, NULL};
    unsigned seen = 0;
    memset(st, 0, sizeof *st);
    sp_jp_ws(&p);
    if (*p.s != '{') {
        *err = "top level is not an object";
        return -1;
    }
    p.s++;
    sp_jp_ws(&p);
    if (*p.s == '}')
        p.s++;
    else
        for (;;) {
            char key[64];
            sp_jp_ws(&p);
            if (sp_jp_string(&p, key, sizeof key))
                goto bad;
            sp_jp_ws(&p);
            if (*p.s++ != ':') {
                p.err = "expected ':'";
                goto bad;
            }
            unsigned long long *dst = NULL;
            int bit = -1;
            if (!strcmp(key, "rotate_ms"))
                dst = &st->rotate_ms, bit = 0;
            else if (!strcmp(key, "rotations"))
                dst = &st->rotations, bit = 1;
            else if (!strcmp(key, "cached_bytes"))
                dst = &st->cached_bytes, bit = 2;
            if (dst) {
                int ok;
                if (sp_jp_uint(&p, dst, &ok))
                    goto bad;
                if (!ok) {
                    snprintf(why, sizeof why, "top-level \"%s\" is not a non-negative integer",
                             key);
                    p.err = why;
                    goto bad;
                }
                seen |= 1u << bit;
            } else if (!strcmp(key, "classes")) {
                seen |= 1u << 3;
                sp_jp_ws(&p);
                if (*p.s != '[') {
                    p.err = "\"classes\" is not an array";
                    goto bad;
                }
                p.s++;
                sp_jp_ws(&p);
                if (*p.s == ']')
                    p.s++;
                else
                    for (;;) {
                        if (st->nclasses >= SP_MAX_CLASSES) {
                            p.err = "too many classes";
                            goto bad;
                        }
                        if (sp_jp_class(&p, &st->cls[st->nclasses], why, sizeof why))
                            goto bad;
                        st->nclasses++;
                        sp_jp_ws(&p);
                        if (*p.s == ',') {
                            p.s++;
                            continue;
                        }
                        if (*p.s == ']') {
                            p.s++;
                            break;
                        }
                        p.err = "expected ',' or ']' in classes";
                        goto bad;
                    }
            } else if (sp_jp_value(&p, 1)) {
                goto bad;
            }
            sp_jp_ws(&p);
            if (*p.s == ',') {
                p.s++;
                continue;
            }
            if (*p.s == '}') {
                p.s++;
                break;
            }
            p.err = "expected ',' or '}' at top level";
            goto bad;
        }
    sp_jp_ws(&p);
    if (*p.s) {
        p.err = "trailing characters after the JSON object";
        goto bad;
    }
    {
        static const char *const top[] = {"rotate_ms", "rotations", "cached_bytes", "classes"};
        for (int i = 0; i < 4; i++)
            if (!(seen & (1u << i))) {
                snprintf(why, sizeof why, "top level lacks key \"%s\"", top[i]);
                *err = why;
                return -1;
            }
    }
    return 0;
bad:
    snprintf(why, sizeof why, "%s at offset %ld", p.err ? p.err : "parse error",
             (long)(p.s - json));
    *err = why;
    return -1;
}

/* Snapshot of the library's statistics.  Returns 0, or -1 after printing why. */
__attribute__((unused)) static int sp_stats_read(struct sp_stats *st)
{
    const char *err = NULL;
    memset(sp_json_buf, 0, sizeof sp_json_buf);
    FILE *f = fmemopen(sp_json_buf, sizeof sp_json_buf - 1, "w");
    if (!f) {
        perror("fmemopen");
        return -1;
    }
    int rc = syncpool_stats_json(f);
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "syncpool_stats_json returned %d (or the write failed)\n", rc);
        return -1;
    }
    if (sp_stats_parse(sp_json_buf, st, &err)) {
        fprintf(stderr, "stats JSON does not parse: %s\n--- JSON ---\n%.4000s\n------------\n",
                err, sp_json_buf);
        return -1;
    }
    return 0;
}

/* The entry of the class that serves `size` bytes (the first class with size >= it). */
__attribute__((unused)) static const struct sp_class_stats *sp_stats_class(const struct sp_stats *st,
                                                                           size_t size)
{
    const struct sp_class_stats *best = NULL;
    for (int i = 0; i < st->nclasses; i++)
        if (st->cls[i].size >= size && (!best || st->cls[i].size < best->size))
            best = &st->cls[i];
    return best;
}

#define SP_SUM_FIELD(st, field)                                                            \
    ({                                                                                     \
        unsigned long long s_ = 0;                                                         \
        for (int i_ = 0; i_ < (st)->nclasses; i_++)                                        \
            s_ += (st)->cls[i_].field;                                                     \
        s_;                                                                                \
    })

#endif
