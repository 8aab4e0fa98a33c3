"""Workloads of scripts/compare: what each one runs, at which size, and how its output is checked.

A workload turns (allocator environment, scratch directory) into one Result by running a process
through compare_proc.run_process.  Most are one program from bench/; `redis` runs a server and a
client; `--command` makes a workload of any program the user names.
"""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time

from compare_proc import Result, run_process, describe_status

# name: (default size, --quick size).  The default run (16 workloads x 11 allocators x 3) takes
# about 15-19 minutes on 2 cores; --quick about 1.5 minutes.
SIZES = {
    "churn": ("5M", "1M"),
    "larson": ("12M", "2M"),
    "prodcons": ("3M", "500k"),
    "falseshare": ("3M", "500k"),
    "mixed": ("1M", "200k"),
    "threads": ("4000", "800"),
    "burst": ("300", "50"),          # MB; idle time below
    "bulk-10": ("80M", "16M"),       # mallocs in total, in rounds of N = 10 (the name's N)
    "bulk-100": ("60M", "12M"),
    "bulk-1000": ("40M", "8M"),
    "bulk-10000": ("30M", "6M"),
    "random": ("20M", "4M"),
    "xthreads": ("10M", "2M"),
    "python": ("50000", "10000"),
    "sqlite": ("300000", "50000"),
    "redis": ("150000", "20000"),    # requests per redis-benchmark test
}
BURST_IDLE_MS = {False: 3000, True: 1500}
RSS_SAMPLE_S = 0.05
PREFERRED_UNIT = "ops_per_sec"
THROUGHPUT_RE = re.compile(r"^([A-Za-z_]*per_sec)=([0-9.eE+-]+)\s*$", re.M)


def parse_throughput(text):
    """The workload's own figure: `ops_per_sec=N` if printed, else the first `*_per_sec=N`."""
    found = THROUGHPUT_RE.findall(text)
    for key, val in found:
        if key == PREFERRED_UNIT:
            return float(val)
    return float(found[0][1]) if found else None


def parse_keys(text):
    return dict(re.findall(r"^(\w+)=(\S+)\s*$", text, re.M))


class Workload:
    """One program from bench/ (or any command): run it, check exit status and output."""

    kind = "synthetic"

    def __init__(self, name, argv, description, figure, *, env=None, sample_rss=False,
                 check_output=None, stdin_path=None):
        self.name = name
        self.argv = argv
        self.description = description
        self.figure = figure            # what the throughput figure counts, for the report
        self.env = env or {}
        self.sample_rss = sample_rss
        self.check_output = check_output
        self.stdin_path = stdin_path
        self.launcher = None            # bench's `measure`, set by make_workloads

    @property
    def program(self):
        return self.argv[0]

    def command_line(self):
        env = " ".join("%s=%s" % kv for kv in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(_short(a) for a in self.argv)

    def prepare(self, scratch):
        """Called once before the first run (write input files, compute expected output)."""

    def run(self, alloc_env, scratch, timeout):
        env = dict(alloc_env)
        env.update(self.env)
        res = run_process(self.argv, env, scratch, timeout=timeout, launcher=self.launcher,
                          stdin_path=self.stdin_path,
                          sample_interval=RSS_SAMPLE_S if self.sample_rss else None)
        if res.status == "ok":
            res.throughput = parse_throughput(res.stdout)
            res.extra.update({k: v for k, v in parse_keys(res.stdout).items()
                              if not k.endswith("per_sec")})
            if self.check_output:
                problem = self.check_output(res.stdout)
                if problem:
                    res.fail("output check failed: " + problem)
        return res


def _short(path):
    """A path inside the project, relative to it (for the report)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return path[len(root):] if path.startswith(root) else path


def _bench(bench_dir, name, size, *args, description, figure, program=None, **kw):
    return Workload(name, [os.path.join(bench_dir, program or name), str(size),
                           *map(str, args)],
                    description, figure, check_output=_expect_check_ok, **kw)


BULK_NS = (10, 100, 1000, 10000)


def _bulk(bench_dir, n, size):
    return _bench(
        bench_dir, "bulk-%d" % n, size, n, program="bulk", figure="malloc+free/s",
        description="single thread: rounds of %d mallocs (16-256 B, cycling over 7 size "
                    "classes), then %d frees, newest first (%s mallocs in total)"
                    % (n, n, size))


def _expect_check_ok(stdout):
    return None if re.search(r"^check=ok$", stdout, re.M) else "no 'check=ok' line"


# --- sqlite ----------------------------------------------------------------------------------

def sqlite_script(n):
    """SQL for `sqlite3 :memory:`: build, index, group, update, delete and join n rows."""
    return f"""\
.bail on
PRAGMA cache_size = -400000;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, payload BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
INSERT INTO t SELECT x, (x * 7919) % 1000, printf('name-%08d', x), zeroblob(16 + x % 200) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(k), sum(length(payload)) FROM t;
SELECT sum(c) FROM (SELECT k, count(*) AS c FROM t GROUP BY k ORDER BY c DESC, k LIMIT 10);
SELECT sum(length(g)) FROM (SELECT group_concat(name) AS g FROM t GROUP BY k % 37);
UPDATE t SET name = name || '-x' WHERE k % 3 = 0;
DELETE FROM t WHERE k % 5 = 0;
SELECT count(*), sum(length(name)) FROM t;
SELECT count(*) FROM t AS a JOIN t AS b ON b.name = printf('name-%08d', a.id + 1) WHERE a.k < 100;
"""


def sqlite_expected(n):
    """The output sqlite_script(n) must print, computed independently in Python."""
    k = {x: (x * 7919) % 1000 for x in range(1, n + 1)}
    namelen = 13                                   # 'name-%08d' for x < 10**8
    counts = {}
    for x in k.values():
        counts[x] = counts.get(x, 0) + 1
    top10 = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    groups = {}
    for x, kx in k.items():
        groups.setdefault(kx % 37, []).append(x)
    concat = sum(len(v) * namelen + len(v) - 1 for v in groups.values())
    alive = {x for x, kx in k.items() if kx % 5 != 0}
    newlen = {x: namelen + (2 if k[x] % 3 == 0 else 0) for x in alive}
    joined = sum(1 for x in alive
                 if k[x] < 100 and x + 1 in alive and k[x + 1] % 3 != 0)
    return [
        "%d|%d|%d" % (n, sum(k.values()), sum(16 + x % 200 for x in k)),
        "%d" % sum(c for _, c in top10),
        "%d" % concat,
        "%d|%d" % (len(alive), sum(newlen.values())),
        "%d" % joined,
    ]


class SqliteWorkload(Workload):
    kind = "program"

    def __init__(self, n):
        self.n = int(n)
        super().__init__("sqlite", [shutil.which("sqlite3") or "/usr/bin/sqlite3", "-batch",
                                    ":memory:"],
                         "sqlite3 (Debian) builds an in-memory table of %d rows, indexes, "
                         "groups, updates, deletes and joins it" % self.n, "")
        self.expected = None

    def command_line(self):
        return "%s < sqlite.sql  # %d rows; the SQL is in scripts/compare_workloads.py" % (
            shlex.join(self.argv), self.n)

    def prepare(self, scratch):
        self.stdin_path = os.path.join(scratch, "sqlite.sql")
        with open(self.stdin_path, "w") as f:
            f.write(sqlite_script(self.n))
        self.expected = sqlite_expected(self.n)
        self.check_output = self._check

    def _check(self, stdout):
        got = stdout.split()
        if got != self.expected:
            return "query results %s, expected %s" % (got, self.expected)
        return None


# --- redis -----------------------------------------------------------------------------------

REDIS_TESTS = "set,get,hset,lpush,lpop,sadd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_command(port, cmd, timeout=5.0):
    """Sends one inline command to the server on 127.0.0.1:port and returns the reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(cmd.encode() + b"\r\n")
        return s.recv(256).decode(errors="replace").strip()


class RedisWorkload(Workload):
    """redis-server (the allocator preloaded into it only) driven by redis-benchmark."""

    kind = "program"

    def __init__(self, n):
        self.n = int(n)
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.client = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"
        super().__init__("redis", [server], "redis-server (Debian) on 127.0.0.1 driven by "
                         "redis-benchmark: %d requests for each of %s, 50 clients, pipeline 16"
                         % (self.n, REDIS_TESTS.upper().replace(",", ", ")), "requests/s")

    def bench_argv(self, port):
        return [self.client, "-h", "127.0.0.1", "-p", str(port), "-n", str(self.n), "-c", "50",
                "-P", "16", "-r", "200000", "-d", "200", "-t", REDIS_TESTS, "--csv"]

    def command_line(self):
        return ("redis-server --port PORT --bind 127.0.0.1 --save '' --appendonly no; "
                + shlex.join(self.bench_argv("PORT")))

    def run(self, alloc_env, scratch, timeout):
        port = free_port()
        argv = [self.argv[0], "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", ""]
        out = open(os.path.join(scratch, "redis-server.log"), "w")
        server = subprocess.Popen(argv, env=alloc_env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        res = Result()
        try:
            if not self._wait_ready(server, port):
                res.fail("redis-server did not start (%s)"
                         % (describe_status(server.returncode)
                            if server.poll() is not None else "no answer on port %d" % port))
                res.stderr = _tail(os.path.join(scratch, "redis-server.log"))
                return res
            client_env = {k: v for k, v in alloc_env.items()
                          if k != "LD_PRELOAD" and not k.startswith("SYNCPOOL_")}
            bench = run_process(self.bench_argv(port), client_env, scratch, timeout=timeout)
            res.wall_s = bench.wall_s
            res.stdout, res.stderr = bench.stdout, bench.stderr
            if bench.status != "ok":
                res.fail("redis-benchmark: " + bench.detail)
            elif server.poll() is not None:
                res.fail("redis-server died: " + describe_status(server.returncode))
            else:
                self._collect(res, bench.stdout, port)
            res.maxrss_kb = _vm_hwm_kb(server.pid)
        finally:
            self._stop(server, res)
        return res

    def _wait_ready(self, server, port, limit=10.0):
        end = time.monotonic() + limit
        while time.monotonic() < end and server.poll() is None:
            try:
                if redis_command(port, "PING", timeout=1.0) == "+PONG":
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _collect(self, res, csv_text, port):
        rps = {}
        for line in csv_text.splitlines():
            cells = [c.strip('"') for c in line.split('","')]
            if len(cells) >= 2 and cells[0] != "test":
                try:
                    rps[cells[0].split(" ")[0]] = float(cells[1])
                except ValueError:
                    pass
        wanted = [t.upper() for t in REDIS_TESTS.split(",")]
        missing = [t for t in wanted if not rps.get(t)]
        if missing:
            res.fail("redis-benchmark printed no result for " + ", ".join(missing))
            return
        # Overall rate: all requests over the summed time of the tests.
        res.throughput = len(wanted) * self.n / sum(self.n / rps[t] for t in wanted)
        res.extra.update({t.lower() + "_rps": rps[t] for t in wanted})
        try:
            reply = redis_command(port, "DBSIZE")
            keys = int(reply.lstrip(":"))
        except (OSError, ValueError):
            res.fail("DBSIZE after the benchmark failed")
            return
        if keys < 1:
            res.fail("the server holds no keys after the benchmark")
        res.extra["keys"] = keys

    def _stop(self, server, res):
        """SIGTERM to the server's PID, then wait for it (it writes its stats as it exits)."""
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                res.fail("redis-server did not stop within 15 s of SIGTERM")
                return
        if res.status == "ok" and server.returncode != 0:
            res.fail("redis-server exited with " + describe_status(server.returncode)
                     + " on SIGTERM")


def _vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


# --- the catalogue ---------------------------------------------------------------------------

WORKLOAD_NAMES = list(SIZES)


def make_workloads(names, bench_dir, src_dir, quick):
    """The named built-in workloads, at their default or --quick size."""
    q = 1 if quick else 0
    size = {name: SIZES[name][q] for name in SIZES}
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
    makers = {
        "churn": lambda: _bench(
            bench_dir, "churn", size["churn"], figure="malloc+free/s",
            description="single thread, small random sizes: a LIFO stack phase and a FIFO "
                        "queue phase, %s ops each" % size["churn"]),
        "larson": lambda: _bench(
            bench_dir, "larson", size["larson"], 4, figure="replacements/s",
            description="server simulation: 4 threads replace random slots of one shared "
                        "array, so objects die on other threads (%s replacements)"
                        % size["larson"]),
        "prodcons": lambda: _bench(
            bench_dir, "prodcons", size["prodcons"], 1, figure="messages/s",
            description="C++ producer/consumer: one thread news messages, another checks "
                        "and deletes them (%s messages)" % size["prodcons"]),
        "falseshare": lambda: _bench(
            bench_dir, "falseshare", size["falseshare"], 2, figure="allocations/s",
            description="passive false sharing: 2 threads free 8-byte objects the main thread "
                        "allocated side by side, then allocate and write hot "
                        "(%s allocations each)" % size["falseshare"]),
        "mixed": lambda: _bench(
            bench_dir, "mixed", size["mixed"], figure="steps/s",
            description="small and large (32-512 KiB) objects with realloc growth up to "
                        "1 MiB (%s steps)" % size["mixed"]),
        "threads": lambda: _bench(
            bench_dir, "threads", size["threads"], 4, figure="objects/s",
            description="thread churn: %s short threads, 4 at a time, each allocating 2000 "
                        "objects and leaving half to the main thread" % size["threads"]),
        "burst": lambda: _bench(
            bench_dir, "burst", size["burst"], BURST_IDLE_MS[quick], figure="malloc+free/s",
            sample_rss=True,
            description="burst then idle: %s MB of small objects allocated and freed, then "
                        "%.1f s idle (one malloc per 10 ms) while RSS is sampled"
                        % (size["burst"], BURST_IDLE_MS[quick] / 1e3)),
        "random": lambda: _bench(
            bench_dir, "random", size["random"], 10000, figure="free+malloc/s",
            description="single thread: a live set of 10000 objects (8-1024 B, skewed to the "
                        "small end); each step frees a random one and allocates a new random "
                        "size (%s steps)" % size["random"]),
        "xthreads": lambda: _bench(
            bench_dir, "xthreads", size["xthreads"], 8, 20, figure="malloc+free/s",
            description="8 threads replace random objects of their own live sets of 1000 "
                        "(8-1024 B) and hand 20%% of the replaced ones, in batches of 64, to "
                        "another thread to free (%s ops in total)" % size["xthreads"]),
        "python": lambda: Workload(
            "python", [python, os.path.join(src_dir, "alloc_heavy.py"), size["python"]],
            "python3 (Debian) builds, sorts, groups and JSON round-trips %s records, 4 times, "
            "with PYTHONMALLOC=malloc" % size["python"], "records/s",
            env={"PYTHONMALLOC": "malloc"}, check_output=_expect_check_ok),
        "sqlite": lambda: SqliteWorkload(size["sqlite"]),
        "redis": lambda: RedisWorkload(size["redis"]),
    }
    for n in BULK_NS:
        makers["bulk-%d" % n] = (lambda n=n: _bulk(bench_dir, n, size["bulk-%d" % n]))
    out = []
    for name in names:
        w = makers[name]()
        w.kind = "program" if name in ("python", "sqlite", "redis") else "synthetic"
        w.launcher = os.path.join(bench_dir, "measure")
        out.append(w)
    return out


def make_command_workloads(commands, bench_dir):
    """Workloads for --command 'CMD ARGS': checked by exit status only."""
    out, seen = [], {}
    for cmd in commands:
        argv = shlex.split(cmd)
        if not argv:
            continue
        resolved = shutil.which(argv[0]) or argv[0]
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(argv[0])) or "cmd"
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else "%s-%d" % (base, seen[base])
        w = Workload(name, [resolved] + argv[1:], "your command: " + cmd,
                     "its own *_per_sec figure")
        w.kind = "command"
        w.launcher = os.path.join(bench_dir, "measure")
        out.append(w)
    return out
