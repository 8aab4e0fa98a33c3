/* measure: the launcher scripts/compare runs every workload through.
 *
 * A process forked from the (large) Python harness would inherit the harness's peak RSS:
 * ru_maxrss keeps the high-water mark of the memory image a process had before its exec.  This
 * small program is forked instead, and forks the workload from itself, so the workload's
 * ru_maxrss is its own.
 *
 * usage: measure RESULT_FILE [-e NAME=VALUE]... -- PROGRAM [ARGS...]
 *   -e  set NAME=VALUE in the program's environment only (the allocator's LD_PRELOAD and
 *       settings, so that the launcher itself runs on plain glibc).
 * RESULT_FILE gets "pid=N" as soon as the program has started, then at its end
 * "wall_s=S", "maxrss_kb=K" and "exit=N" or "signal=N".  measure exits with the program's exit
 * status, or 128 + the signal that killed it; 127 if the program could not be started. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(void)
{
    fprintf(stderr, "usage: measure RESULT_FILE [-e NAME=VALUE]... -- PROGRAM [ARGS...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        usage();
    const char *result = argv[1];
    int i = 2;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-e") != 0 || ++i >= argc || !strchr(argv[i], '='))
            usage();
    if (i + 1 >= argc)
        usage();
    char **prog = &argv[i + 1];

    FILE *out = fopen(result, "w");
    if (!out) {
        fprintf(stderr, "measure: %s: %s\n", result, strerror(errno));
        return 2;
    }
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "measure: fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        for (int k = 2; k < i; k += 2)
            putenv(argv[k + 1]);
        execvp(prog[0], prog);
        fprintf(stderr, "measure: cannot run %s: %s\n", prog[0], strerror(errno));
        _exit(127);
    }
    fprintf(out, "pid=%d\n", (int)pid);
    fflush(out);

    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "measure: wait4: %s\n", strerror(errno));
            return 2;
        }
    }
    double wall = now() - t0;
    fprintf(out, "wall_s=%.6f\nmaxrss_kb=%ld\n", wall, ru.ru_maxrss);
    int code;
    if (WIFSIGNALED(status)) {
        fprintf(out, "signal=%d\n", WTERMSIG(status));
        code = 128 + WTERMSIG(status);
    } else {
        fprintf(out, "exit=%d\n", WEXITSTATUS(status));
        code = WEXITSTATUS(status);
    }
    fclose(out);
    return code;
}
