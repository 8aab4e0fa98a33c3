/* stats_worker: a program that does the work, for tests/real/stats_wrapper.sh (which runs it
 * under wrappers such as `timeout` with SYNCPOOL_STATS=json:PATH and checks that PATH describes
 * it).
 *
 *   sp_stats_worker N [--fork M] [--linger MS]
 *
 * prints "pid=<its pid>" on stdout, then makes N rounds of malloc+free in small classes (N
 * pooled-size mallocs at least).  With --fork M it first forks a child that prints "child=<pid>",
 * makes M rounds, and leaves through exit() (so the library's destructor runs in it), and waits
 * for it.  With --linger MS it sleeps MS milliseconds before it returns from main.  Exit status
 * 0, or 1 if something failed. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int work(long rounds)
{
    void *keep[16] = {0};
    for (long i = 0; i < rounds; i++) {
        size_t n = 16 + (size_t)(i % 13) * 24;
        void *p = malloc(n);
        if (!p) return 1;
        memset(p, (int)i, n);
        free(keep[i % 16]);
        keep[i % 16] = p;
    }
    for (int i = 0; i < 16; i++) free(keep[i]);
    return 0;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : -1, fork_rounds = -1, linger_ms = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--fork") == 0) fork_rounds = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--linger") == 0) linger_ms = atol(argv[i + 1]);
        else rounds = -1;
    }
    if (rounds < 0 || argc % 2 != 0) {
        fprintf(stderr, "usage: %s N [--fork M] [--linger MS]\n", argv[0]);
        return 2;
    }
    printf("pid=%ld\n", (long)getpid());
    fflush(stdout);
    if (fork_rounds >= 0) {
        pid_t c = fork();
        if (c < 0) return 1;
        if (c == 0) {
            printf("child=%ld\n", (long)getpid());
            fflush(stdout);
            exit(work(fork_rounds));
        }
        int st;
        if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    }
    int rc = work(rounds);
    struct timespec ts = {linger_ms / 1000, (linger_ms % 1000) * 1000000L};
    if (linger_ms > 0) nanosleep(&ts, NULL);
    return rc;
}
