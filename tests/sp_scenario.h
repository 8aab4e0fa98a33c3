/* sp_scenario.h — runs each scenario of a test program in a process of its own (the
 * out-of-memory tests need a fresh address space per scenario): the program re-executes itself as
 * `PROG --scenario NAME ARG`, its output is captured, and it must exit 0 within 120 s having
 * printed "[NAME] ok".  Include after sp_test.h. */
#ifndef SP_SCENARIO_H
#define SP_SCENARIO_H

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Returns the number of scenarios that failed (each failure is also a failed CHECK).  The
 * scenario named "threads" runs with MALLOC_CONF=narenas:1 (docs/reliability.md: jemalloc 5.3
 * crashes when a thread must create an arena once the address space is exhausted). */
static int sp_run_scenarios(const char *const *names, size_t count, const char *arg)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(len > 0, "readlink /proc/self/exe");
    self[len] = 0;
    int bad = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = names[i];
        int fds[2];
        REQUIRE(pipe(fds) == 0, "pipe");
        fflush(stdout);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            close(fds[0]);
            dup2(fds[1], 1);
            dup2(fds[1], 2);
            close(fds[1]);
            if (!strcmp(name, "threads"))
                setenv("MALLOC_CONF", "narenas:1", 1);
            execl(self, self, "--scenario", name, arg, (char *)NULL);
            _exit(127);
        }
        close(fds[1]);
        static char out[1 << 16];
        size_t n = 0;
        double deadline = sp_now() + 120;
        /* the child's output, then its status; a child that hangs is killed at the deadline */
        for (;;) {
            struct pollfd pf = {fds[0], POLLIN, 0};
            int left = (int)((deadline - sp_now()) * 1000);
            if (left <= 0 || poll(&pf, 1, left) <= 0)
                break;
            ssize_t r = read(fds[0], out + n, sizeof out - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            if (n == sizeof out - 1)
                n = 0; /* keep the end */
        }
        out[n] = 0;
        close(fds[0]);
        int st = 0;
        pid_t w;
        while ((w = waitpid(pid, &st, WNOHANG)) == 0 && sp_now() < deadline)
            sp_sleep_ms(5);
        if (w == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        char want[64];
        snprintf(want, sizeof want, "[%s] ok\n", name);
        int ok = w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, want);
        fputs(out, stdout);
        CHECK(ok, "scenario %s: %s %d%s", name,
              w == 0            ? "hung, killed; status"
              : WIFSIGNALED(st) ? "killed by signal"
                                : "exit status",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
              strstr(out, want) ? "" : " (no ok line)");
        bad += !ok;
    }
    return bad;
}

#endif
