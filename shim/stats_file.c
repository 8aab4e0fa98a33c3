/* stats_file.c — SYNCPOOL_STATS at process exit: the table on stderr (1) or the JSON file
 * (json:PATH, with %p replaced by the process id), and the process the figures belong to.
 *
 * The file (design decision 9; docs/reliability.md, "Environment and files the library writes"):
 *  - is opened with O_NOFOLLOW, so a symlink at PATH (one planted at a predictable name in /tmp,
 *    say) is refused, never followed; with O_CLOEXEC; with O_NONBLOCK and O_NOCTTY, so that a
 *    FIFO without a reader or a terminal at PATH cannot block or take over the exit; and created
 *    with mode 0644, less what the umask takes away;
 *  - is truncated only once fstat shows a regular file: anything else gets one warning and is
 *    left as it is;
 *  - names its writer: top-level "pid", "program" (/proc/self/comm, the name the kernel shows for
 *    the process, at most 15 bytes; program_invocation_short_name if /proc is not there) and
 *    "written_at_us" (CLOCK_REALTIME, microseconds since the Unix epoch).
 * In a secure-execution process SYNCPOOL_STATS is never set as far as the library can tell
 * (env.c reads it with secure_getenv), so nothing here runs.
 *
 * Whose figures PATH keeps.  Without %p every process of a run shares PATH, and a wrapper
 * (`timeout 60 prog`, `bash -c 'prog; echo done'`) exits, and so writes, after the program that
 * did the work.  So a process takes an flock on the file (waiting at most SP_LOCK_WAIT_MS for
 * it) and keeps what is there if it was written by another process during this process's
 * lifetime (its written_at_us is not before this process's start, recorded by the constructor
 * below) and that process made more pooled allocations (gets summed over the classes) than this
 * one.  Otherwise it replaces the file: a file from before this process started (an earlier run)
 * is always replaced, and so is anything that is not a complete statistics object with those
 * keys.  So a wrapper, or any less busy process whose lifetime overlaps the writer's, leaves the
 * writer's figures in place.  Processes that run one after the other under one parent
 * (`sh -c 'big; small; :'`) do not overlap, so the later one replaces the earlier: use %p to
 * keep each process's figures.  The clock is CLOCK_REALTIME, since stamps are compared across
 * processes (and boots); a clock step between two writes can misjudge which came first.  With %p
 * no file is shared (the pid is in its name) and each process replaces its own file whole.  A
 * forked child that does not exec writes nothing unless PATH has %p (init.c, sp_atfork_child). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rotate.h"
#include "shim.h"
#include "stats.h"

/* How long a process waits for another one's lock on the file before it writes anyway.  A
 * writer holds the lock for the few microseconds of a read and a write. */
#define SP_LOCK_WAIT_MS 2000
/* A statistics file is a few KiB; anything much bigger is not one and is replaced unread. */
#define SP_FILE_MAX (1u << 20)

static uint64_t sp_start_us;

static uint64_t sp_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Process start, as far as the rule above is concerned: when the library was loaded (at exec).
 * A forked child keeps its parent's start; it writes only to a %p path, where the rule does not
 * apply. */
__attribute__((constructor)) static void sp_stats_file_start(void) { sp_start_us = sp_now_us(); }

static void sp_say(const char *msg)
{
    if (write(2, msg, strlen(msg)) < 0) { /* nothing else to do with stderr gone */ }
}

/* One line "syncpool: <what> <PATH>: <why>" on stderr, the path escaped (it comes from the
 * environment). */
static void sp_file_warn(const char *what, const char *path, const char *why)
{
    char p[4 * 256 + 1], buf[1280];
    bool cut = sp_escape(p, sizeof p, path, 256);
    snprintf(buf, sizeof buf, "syncpool: %s \"%s%s\": %s\n", what, p, cut ? "..." : "", why);
    sp_say(buf);
}

static void sp_origin_now(struct sp_stats_origin *o, char *name, size_t cap)
{
    o->pid = (long)getpid();
    o->program = program_invocation_short_name;
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, name, cap - 1);
        close(fd);
        if (n > 0 && name[n - 1] == '\n') n--;
        if (n > 0) {
            name[n] = 0;
            o->program = name;
        }
    }
    if (!o->program) o->program = "";
    o->written_at_us = sp_now_us();
}

int sp_stats_json_now(FILE *f, long rotate_ms)
{
    struct sp_stats_origin o;
    char name[64];
    sp_origin_now(&o, name, sizeof name);
    return sp_stats_write_json(f, rotate_ms, sp_rotations(), &o);
}

int sp_stats_table_now(FILE *f, long rotate_ms)
{
    struct sp_stats_origin o;
    char name[64];
    sp_origin_now(&o, name, sizeof name);
    return sp_stats_write_table(f, rotate_ms, sp_rotations(), &o);
}

static bool sp_write_all(int fd, const char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t w = off >= 0 ? pwrite(fd, buf, len, off) : write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = EIO;
        if (w <= 0) return false;
        buf += w;
        len -= (size_t)w;
        if (off >= 0) off += w;
    }
    return true;
}

/* The unsigned decimal right after the first `key` in s; false if there is none. */
static bool sp_find_u64(const char *s, const char *key, uint64_t *out)
{
    const char *p = strstr(s, key);
    if (!p) return false;
    p += strlen(key);
    if (*p < '0' || *p > '9') return false;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

/* What a statistics file says about its writer: false unless s is a complete object this
 * library wrote (it starts with {"rotate_ms": and ends with }, and has "pid" and
 * "written_at_us").  Key names cannot occur inside the "program" string: a '"' there is escaped.
 * *gets = the "gets" of every class summed. */
static bool sp_parse_origin(const char *s, size_t len, long *pid, uint64_t *written_us,
                            uint64_t *gets)
{
    static const char head[] = "{\"rotate_ms\":";
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' ')) len--;
    if (len < sizeof head || strncmp(s, head, sizeof head - 1) != 0 || s[len - 1] != '}')
        return false;
    uint64_t p;
    if (!sp_find_u64(s, "\"pid\":", &p) || p == 0 || p > INT32_MAX ||
        !sp_find_u64(s, "\"written_at_us\":", written_us))
        return false;
    *pid = (long)p;
    *gets = 0;
    for (const char *q = strstr(s, "\"gets\":"); q; q = strstr(q + 1, "\"gets\":")) {
        uint64_t g;
        if (!sp_find_u64(q, "\"gets\":", &g)) return false;
        *gets += g;
    }
    return true;
}

/* The rule in the header comment: true if the file open on fd (size bytes) holds figures this
 * process must not replace. */
static bool sp_keep_other(int fd, off_t size, uint64_t my_gets)
{
    if (size <= 0 || (uint64_t)size > SP_FILE_MAX) return false;
    char *buf = malloc((size_t)size + 1);
    if (!buf) return false;
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t r = pread(fd, buf + got, (size_t)size - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    buf[got] = 0;
    long pid = 0;
    uint64_t written = 0, gets = 0;
    bool keep = got == (size_t)size && strlen(buf) == got &&
                sp_parse_origin(buf, got, &pid, &written, &gets) && pid != (long)getpid() &&
                written >= sp_start_us && gets > my_gets;
    free(buf);
    return keep;
}

static void sp_write_json_file(const struct sp_config *cfg)
{
    char path[sizeof cfg->stats_path + 32];
    const char *pp = strstr(cfg->stats_path, "%p");
    if (pp)
        snprintf(path, sizeof path, "%.*s%ld%s", (int)(pp - cfg->stats_path), cfg->stats_path,
                 (long)getpid(), pp + 2);
    else
        snprintf(path, sizeof path, "%s", cfg->stats_path);

    /* The text first, so the lock below is held only for a read and a write. */
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) return;
    int rc = sp_stats_json_now(m, cfg->rotate_ms);
    if (fclose(m) != 0 || rc != 0) {
        free(text);
        return;
    }

    /* O_RDWR to read what another process wrote; O_WRONLY if only that is allowed (then the
     * file is replaced unread). */
    const int flags = O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    int fd = open(path, O_RDWR | flags, 0644);
    bool readable = fd >= 0;
    if (fd < 0 && errno == EACCES) fd = open(path, O_WRONLY | flags, 0644);
    if (fd < 0) {
        int e = errno;
        struct stat lst;
        if (e == ELOOP && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            sp_file_warn("not writing statistics to", path, "a symbolic link (not followed)");
        else
            sp_file_warn("cannot write statistics to", path, strerror(e));
        free(text);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sp_file_warn("not writing statistics to", path, "not a regular file");
        close(fd);
        free(text);
        return;
    }
    if (!pp) {
        for (int i = 0; flock(fd, LOCK_EX | LOCK_NB) != 0 && i < SP_LOCK_WAIT_MS; i++) {
            if (errno != EWOULDBLOCK && errno != EINTR) break;   /* no locks here: go on */
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        if (readable && fstat(fd, &st) == 0 &&
            sp_keep_other(fd, st.st_size, sp_stats_total_gets())) {
            close(fd);                 /* the busier process's figures stay */
            free(text);
            return;
        }
    }
    if (ftruncate(fd, 0) != 0 || !sp_write_all(fd, text, len, 0))
        sp_file_warn("cannot write statistics to", path, strerror(errno));
    close(fd);                         /* also releases the lock */
    free(text);
}

void sp_stats_at_exit(const struct sp_config *cfg, int table_fd)
{
    if (cfg->stats == SP_STATS_TABLE) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (!m) return;
        sp_stats_table_now(m, cfg->rotate_ms);
        fclose(m);
        sp_write_all(table_fd, buf, len, -1);
        free(buf);
    } else if (cfg->stats == SP_STATS_JSON) {
        sp_write_json_file(cfg);
    }
}
