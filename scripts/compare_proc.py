"""Running one measured process for scripts/compare: wall time, peak RSS, optional RSS samples."""
import os
import signal
import subprocess
import threading
import time


class Result:
    """What one run of a workload under one allocator measured."""

    def __init__(self):
        self.status = "ok"          # ok | fail | timeout
        self.detail = ""
        self.wall_s = None
        self.maxrss_kb = None
        self.throughput = None
        self.stdout = ""
        self.stderr = ""
        self.samples = []           # [(seconds since start, RSS kB)] when sampled
        self.extra = {}             # key=value lines the workload printed, and the like
        self.stats = None           # syncpool's stats summary, when it wrote one

    def fail(self, detail, status="fail"):
        if self.status == "ok":
            self.status, self.detail = status, detail
        else:
            self.detail += "; " + detail


def describe_status(code):
    """'exit 3' or 'signal SIGSEGV' for a Popen-style return code."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return "signal " + signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "exit %d" % code


def _vm_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _sample_rss(pid_of, t0, interval, done, samples):
    pid = None
    while not done.is_set():
        pid = pid or pid_of()
        kb = _vm_rss_kb(pid) if pid else None
        if kb is not None and not done.is_set():
            samples.append((round(time.monotonic() - t0, 4), kb))
        done.wait(interval)


def _read_keys(path):
    try:
        with open(path) as f:
            return dict(ln.strip().split("=", 1) for ln in f if "=" in ln)
    except OSError:
        return {}


# Variables that belong to the allocator under test: the launcher passes them to the workload
# only, so that the launcher itself runs on plain glibc.
def _is_allocator_var(name):
    return name == "LD_PRELOAD" or name.startswith("SYNCPOOL_")


def run_process(argv, env, scratch, timeout, stdin_path=None, sample_interval=None,
                launcher=None):
    """Runs argv to completion in its own process group and measures it.

    With `launcher` (bench's `measure`), argv runs under it, and wall time, peak RSS (ru_maxrss
    from wait4) and exit status are the launcher's report on the program alone.  Without it they
    are measured here (peak RSS then includes the harness's own size, from before the exec).
    After `timeout` seconds the group is killed.  With sample_interval, the program's VmRSS is
    read from /proc every that many seconds into Result.samples."""
    res = Result()
    out_path = os.path.join(scratch, "stdout")
    err_path = os.path.join(scratch, "stderr")
    report = os.path.join(scratch, "measure.txt")
    cmd = argv
    if launcher:
        if os.path.exists(report):
            os.unlink(report)
        sets = [x for k, v in sorted(env.items()) if _is_allocator_var(k)
                for x in ("-e", "%s=%s" % (k, v))]
        cmd = [launcher, report] + sets + ["--"] + list(argv)
        env = {k: v for k, v in env.items() if not _is_allocator_var(k)}
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err, \
            open(stdin_path or os.devnull, "rb") as inp:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, env=env, stdin=inp, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as e:
            res.fail("cannot start %s: %s" % (cmd[0], e))
            return res
        timed_out = threading.Event()

        def kill_group():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def program_pid():
            if not launcher:
                return proc.pid
            pid = _read_keys(report).get("pid")
            return int(pid) if pid else None

        timer = threading.Timer(timeout, kill_group)
        timer.daemon = True
        timer.start()
        done = threading.Event()
        sampler = None
        if sample_interval:
            sampler = threading.Thread(target=_sample_rss, daemon=True,
                                       args=(program_pid, t0, sample_interval, done,
                                             res.samples))
            sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:                   # Ctrl-C: do not leave the child running
            done.set()
            timer.cancel()
            kill_group()
            os.wait4(proc.pid, 0)
            raise
        res.wall_s = time.monotonic() - t0
        done.set()
        timer.cancel()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if sampler:
            sampler.join()
        try:                                    # whatever the program left behind in its group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        res.maxrss_kb = usage.ru_maxrss
        out.seek(0)
        err.seek(0)
        res.stdout = out.read().decode(errors="replace")
        res.stderr = err.read().decode(errors="replace")
    if launcher:
        rep = _read_keys(report)
        if "wall_s" in rep:
            res.wall_s = float(rep["wall_s"])
            res.maxrss_kb = int(rep["maxrss_kb"])
            code = -int(rep["signal"]) if "signal" in rep else int(rep.get("exit", code))
        elif not timed_out.is_set():
            res.fail("the launcher %s failed (%s)" % (launcher, describe_status(code)))
            return res
    if timed_out.is_set():
        res.fail("timed out after %d s" % timeout, status="timeout")
    elif code != 0:
        last = [ln for ln in res.stderr.splitlines() if ln.strip()]
        res.fail(describe_status(code) + (": " + last[-1] if last else ""))
    elif "cannot be preloaded" in res.stderr:
        res.fail("the allocator was not preloaded: " + res.stderr.strip().splitlines()[0])
    return res
