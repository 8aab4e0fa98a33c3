"""scripts/compare, the Python part: run workloads under allocators, then write the report.

Usually started by scripts/compare (which installs packages and builds first); it can also be
run directly once the project is built:  /usr/bin/python3 scripts/compare_run.py --help
"""
import argparse
import csv
import datetime
import glob
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True      # no __pycache__ in scripts/
import compare_report  # noqa: E402
import compare_workloads as cw  # noqa: E402
from compare_proc import run_process  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (shared object, Debian package that ships it)
PRELOADED = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc2"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc2.0"),
    "tbbmalloc": ("libtbbmalloc_proxy.so.2", "libtbbmalloc2"),
}
DEFAULT_ALLOCATORS = ["jemalloc", "glibc", "tcmalloc", "mimalloc", "tbbmalloc", "syncpool-off",
                      "syncpool-1ms", "syncpool-10ms", "syncpool-100ms", "syncpool-1000ms",
                      "syncpool-never"]
QUICK_ALLOCATORS = ["jemalloc", "glibc", "tcmalloc", "mimalloc", "tbbmalloc", "syncpool-off",
                    "syncpool-1ms", "syncpool-100ms", "syncpool-never"]
SYNCPOOL_RE = re.compile(r"^syncpool-(off|never|(\d+)ms)$")
# Libraries that, when a program links them, make "no preload" mean "not glibc".
LINKED_ALLOCATOR_RE = re.compile(r"lib(jemalloc|tcmalloc\w*|mimalloc|tbbmalloc\w*)\.so")

HELP_EPILOG = """\
allocators (default order): %s
  glibc (no preload), jemalloc, tcmalloc (gperftools minimal), mimalloc, tbbmalloc
  (the proxy), syncpool-off (libsyncpool.so with SYNCPOOL_DISABLE=1: the shim alone over
  jemalloc), syncpool-Nms (SYNCPOOL_ROTATE_MS=N, any N) and syncpool-never (SYNCPOOL_ROTATE_MS=0).
  An allocator whose library is not found is skipped with a line saying so; one that is found
  but crashes on a small probe run is reported as broken (and the exit status is 1).
workloads: %s
  (--list shows what each does).  Each prints its own throughput and checks its own result; a
  failed check is reported in REPORT.md and on the terminal, and the exit status is 1.
output: REPORT.md, results.csv, results.json, time.png, rss.png, rotation.png, burst_rss.png
  in --out, and logs/ with the output of failed runs.
examples:
  scripts/compare --quick
  scripts/compare --workloads larson,redis --allocators jemalloc,syncpool-10ms,syncpool-100ms
  scripts/compare --command 'make -j2 -C ~/src/foo' --repeat 5
""" % (",".join(DEFAULT_ALLOCATORS), ", ".join(cw.WORKLOAD_NAMES))


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare malloc implementations (glibc, jemalloc, tcmalloc, mimalloc, "
                    "tbbmalloc, syncpool at several rotation periods) on the project's "
                    "workloads or on your own command, and write a report with tables and "
                    "plots.",
        epilog=HELP_EPILOG)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, 1 run each, fewer rotation periods: under 3 minutes on "
                        "2 cores (for CI and a first look)")
    p.add_argument("--workloads", metavar="LIST",
                   help="comma-separated workloads to run (default: all; with --command: none "
                        "but the commands)")
    p.add_argument("--allocators", metavar="LIST",
                   help="comma-separated allocators (default: all those listed below; "
                        "with --quick: %s)" % ",".join(QUICK_ALLOCATORS))
    p.add_argument("--repeat", type=int, metavar="N",
                   help="runs per workload and allocator; the report shows the median "
                        "(default 3, with --quick 1)")
    p.add_argument("--out", metavar="DIR", default=os.path.join(ROOT, "results"),
                   help="output folder (default: results/ in the project)")
    p.add_argument("--command", action="append", default=[], metavar="'CMD ARGS'",
                   help="also compare the allocators on this program (split like a shell "
                        "would, but run without one: use sh -c '...' for pipes); may be given "
                        "more than once.  Checked by its exit status; a line 'ops_per_sec=N' "
                        "(or any NAME_per_sec=N) on its stdout is taken as its throughput")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="kill a run after this long and count it as failed (default 300, "
                        "with --quick 120)")
    p.add_argument("--check", action="store_true",
                   help="after the run, check that REPORT.md has a row per workload and a "
                        "column per allocator and that the plots exist (exit 1 if not)")
    p.add_argument("--list", action="store_true",
                   help="list the workloads and allocators (found or not) and exit")
    p.add_argument("--build-dir", metavar="DIR",
                   default=os.environ.get("COMPARE_BUILD_DIR", os.path.join(ROOT, "build")),
                   help="where the workloads (DIR/bench/) and libsyncpool.so are "
                        "(default: build/; scripts/compare builds it)")
    p.add_argument("--no-install", action="store_true",
                   help="(scripts/compare) do not install missing Debian packages")
    p.add_argument("--no-build", action="store_true",
                   help="(scripts/compare) do not build the project first")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.timeout is None:
        args.timeout = 120.0 if args.quick else 300.0
    if args.workloads is None:
        args.workloads = [] if args.command else list(cw.WORKLOAD_NAMES)
    else:
        args.workloads = [w for w in args.workloads.split(",") if w]
        bad = [w for w in args.workloads if w not in cw.WORKLOAD_NAMES]
        if bad:
            p.error("unknown workload(s) %s; known: %s" % (", ".join(bad),
                                                          ", ".join(cw.WORKLOAD_NAMES)))
    if args.allocators is None:
        args.allocators = list(QUICK_ALLOCATORS if args.quick else DEFAULT_ALLOCATORS)
    else:
        args.allocators = [a for a in args.allocators.split(",") if a]
        bad = [a for a in args.allocators
               if a not in ("glibc",) + tuple(PRELOADED) and not SYNCPOOL_RE.match(a)]
        if bad:
            p.error("unknown allocator(s) %s; known: glibc, %s, syncpool-off, syncpool-Nms, "
                    "syncpool-never" % (", ".join(bad), ", ".join(PRELOADED)))
    if not args.workloads and not args.command and not args.list:
        p.error("nothing to run")
    return args


# --- allocators ------------------------------------------------------------------------------

def _ldconfig_paths():
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    arch = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine())
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and (arch is None or arch in m.group(2)):
            found.setdefault(m.group(1), m.group(3))
    return found


def find_library(soname, _cache={}):
    if "paths" not in _cache:
        _cache["paths"] = _ldconfig_paths()
    path = _cache["paths"].get(soname)
    if path and os.path.exists(path):
        return path
    for cand in sorted(glob.glob("/usr/lib/*/" + soname)) + ["/usr/lib/" + soname,
                                                             "/usr/local/lib/" + soname]:
        if os.path.exists(cand):
            return cand
    return None


def package_version(path, fallback_pkg):
    """The Debian package and version that ship `path` (or fallback_pkg)."""
    pkg = None
    if path:
        cands = {path, os.path.realpath(path)}
        cands |= {"/usr" + c for c in cands if c.startswith("/lib")}
        for cand in cands:
            r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if r.returncode == 0 and ":" in r.stdout:
                pkg = r.stdout.split(":")[0].strip()
                break
    pkg = pkg or fallback_pkg
    if not pkg:
        return None, None
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                       text=True)
    return pkg, (r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None)


class Allocator:
    def __init__(self, name):
        self.name = name
        self.lib = None
        self.env = {}
        self.status = "ok"          # ok | skipped | broken
        self.note = ""
        self.package = self.version = None
        self.rotate_ms = None       # syncpool rotation period (0 = never); None otherwise
        self.syncpool = name.startswith("syncpool-")

    def to_json(self):
        return {k: getattr(self, k) for k in ("name", "lib", "env", "status", "note", "package",
                                               "version", "rotate_ms", "syncpool")}


def make_allocators(names, build_dir):
    out = []
    sp_lib = os.path.join(build_dir, "libsyncpool.so")
    for name in names:
        a = Allocator(name)
        if name == "glibc":
            a.package, a.version = package_version(None, "libc6")
        elif name in PRELOADED:
            soname, pkg = PRELOADED[name]
            a.lib = find_library(soname)
            if not a.lib:
                a.status, a.note = "skipped", "%s not found (Debian package %s)" % (soname, pkg)
            a.package, a.version = package_version(a.lib, pkg)
        else:
            a.lib = sp_lib if os.path.exists(sp_lib) else None
            if not a.lib:
                a.status, a.note = "skipped", "%s not found (not built yet?)" % sp_lib
            m = SYNCPOOL_RE.match(name)
            if m.group(1) == "off":
                a.env["SYNCPOOL_DISABLE"] = "1"
            else:
                a.rotate_ms = 0 if m.group(1) == "never" else int(m.group(2))
                a.env["SYNCPOOL_ROTATE_MS"] = str(a.rotate_ms)
            a.package, a.version = "syncpool", _git_version()
        if a.lib:
            a.env["LD_PRELOAD"] = a.lib
        out.append(a)
    return out


def _git_version():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "working tree (no commit yet)"


def links_an_allocator(program, _cache={}):
    """True if `program` is linked with a malloc library other than glibc (e.g. redis-server)."""
    if program not in _cache:
        try:
            out = subprocess.run(["ldd", program], capture_output=True, text=True).stdout
        except OSError:
            out = ""
        _cache[program] = bool(LINKED_ALLOCATOR_RE.search(out))
    return _cache[program]


def base_environment():
    """The harness's environment without anything that would change the allocator."""
    return {k: v for k, v in os.environ.items()
            if k != "LD_PRELOAD" and not k.startswith(("SYNCPOOL_", "MALLOC_", "MIMALLOC_",
                                                       "TCMALLOC_", "JE_MALLOC", "TBB_"))
            and k not in ("PYTHONMALLOC",)}


def run_env(alloc, workload, scratch, bench_dir):
    env = base_environment()
    env.update(alloc.env)
    if alloc.name == "glibc" and links_an_allocator(workload.program):
        env["LD_PRELOAD"] = os.path.join(bench_dir, "libbench_glibc.so")
    if alloc.syncpool:
        env["SYNCPOOL_STATS"] = "json:" + os.path.join(scratch, "syncpool.%p.json")
    return env


def probe(allocs, bench_dir, scratch):
    """A small threaded run under each allocator: a library that is found but crashes, or that
    the dynamic linker refuses to preload, is reported as broken instead of failing every run."""
    argv = [os.path.join(bench_dir, "larson"), "20000", "2"]
    for a in allocs:
        if a.status != "ok":
            continue
        env = base_environment()
        env.update(a.env)
        if a.syncpool:
            env["SYNCPOOL_STATS"] = "json:" + os.path.join(scratch, "probe.%p.json")
        for f in glob.glob(os.path.join(scratch, "probe.*.json")):
            os.unlink(f)
        res = run_process(argv, env, scratch, timeout=30,
                          launcher=os.path.join(bench_dir, "measure"))
        if res.status != "ok":
            a.status, a.note = "broken", "probe `larson 20000 2` failed: " + res.detail
        elif a.syncpool and a.name != "syncpool-off" and not read_syncpool_stats(scratch,
                                                                                  "probe"):
            a.note = "no stats JSON was written by the probe run (hit rates will be missing)"


def read_syncpool_stats(scratch, prefix="syncpool"):
    """Summary of the stats JSON with the most gets (the main process; helpers write their own)."""
    best = None
    for path in glob.glob(os.path.join(scratch, prefix + ".*.json")):
        try:
            with open(path) as f:
                data = json.load(f)
            classes = data.get("classes", [])
            gets = sum(c.get("gets", 0) for c in classes)
        except (OSError, ValueError, AttributeError, TypeError):
            continue
        if best is None or gets > best["gets"]:
            tot = {k: sum(c.get(k, 0) for c in classes)
                   for k in ("puts", "misses", "hits_private", "hits_shared", "steals",
                             "hits_victim", "released")}
            best = dict(tot, gets=gets, rotations=data.get("rotations"),
                        rotate_ms=data.get("rotate_ms"), cached_bytes=data.get("cached_bytes"),
                        hit_rate=(gets - tot["misses"]) / gets if gets else None)
    return best


# --- machine ---------------------------------------------------------------------------------

def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       None)
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
            mem = "%.1f GiB" % (kb / 2**20)
    except (OSError, StopIteration, ValueError):
        pass
    debian = None
    if os.path.exists("/etc/debian_version"):
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    programs = {}
    for pkg in ("sqlite3", "redis-server", "python3", "gcc"):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                           text=True)
        programs[pkg] = r.stdout.strip() if r.returncode == 0 else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "debian": debian,
        "programs": programs,
        "project": _git_version(),
    }


# --- the run ---------------------------------------------------------------------------------

CSV_FIELDS = ["workload", "allocator", "run", "status", "wall_s", "maxrss_kb", "throughput",
              "hit_rate", "rotations", "detail"]


def fmt_duration(s):
    s = int(round(s))
    return "%dm%02ds" % (s // 60, s % 60) if s >= 60 else "%ds" % s


def save_logs(out_dir, w, a, rep, res):
    logs = os.path.join(out_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    base = os.path.join(logs, "%s.%s.run%d" % (w.name, a.name, rep + 1))
    for ext, text in (("stdout", res.stdout), ("stderr", res.stderr)):
        with open(base + "." + ext, "w") as f:
            f.write(text)
    return os.path.relpath(base, out_dir)


def _time_left(todo, runs, mean):
    """Remaining time, from the mean duration of each workload's runs so far."""
    per = {}
    for r in runs:
        per.setdefault(r["workload"], []).append(r["wall_s"] or 0)
    return sum(statistics.mean(per[w.name]) if w.name in per else mean for w, _, _ in todo)


def run_all(args, workloads, allocs, bench_dir, out_dir, scratch_root, runs):
    """Runs every (workload, run, allocator), allocators alternating innermost; appends one
    dict per run to `runs` (so an interrupted run keeps what it measured)."""
    active = [a for a in allocs if a.status == "ok"]
    plan = [(w, rep, a) for w in workloads for rep in range(args.repeat) for a in active]
    csv_path = os.path.join(out_dir, "results.csv")
    wname = max([len(w.name) for w in workloads] + [8])
    aname = max([len(a.name) for a in active] + [8])
    started = time.monotonic()
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        prepared = set()
        for i, (w, rep, a) in enumerate(plan):
            scratch = os.path.join(scratch_root, "run")
            if w.name not in prepared:
                w.prepare(scratch_root)
                prepared.add(w.name)
            shutil.rmtree(scratch, ignore_errors=True)
            os.makedirs(scratch)
            res = w.run(run_env(a, w, scratch, bench_dir), scratch, args.timeout)
            if a.syncpool:
                res.stats = read_syncpool_stats(scratch)
            run = {
                "workload": w.name, "allocator": a.name, "run": rep + 1, "status": res.status,
                "detail": res.detail, "wall_s": res.wall_s, "maxrss_kb": res.maxrss_kb,
                "throughput": res.throughput, "extra": res.extra, "stats": res.stats,
                "hit_rate": res.stats.get("hit_rate") if res.stats else None,
                "rotations": res.stats.get("rotations") if res.stats else None,
            }
            if res.samples:
                run["rss_samples"] = res.samples
            if res.status != "ok":
                run["logs"] = save_logs(out_dir, w, a, rep, res)
            runs.append(run)
            writer.writerow({k: run[k] for k in CSV_FIELDS})
            f.flush()
            elapsed = time.monotonic() - started
            left = _time_left(plan[i + 1:], runs, elapsed / (i + 1))
            wall = "%7.2fs" % res.wall_s if res.wall_s is not None else "      - "
            state = "ok" if res.status == "ok" else "%s: %s" % (res.status.upper(), res.detail)
            print("[%*d/%d] %-*s %-*s run %d/%d %s  %s  (%s, ~%s left)"
                  % (len(str(len(plan))), i + 1, len(plan), wname, w.name, aname, a.name,
                     rep + 1, args.repeat, wall, state, fmt_duration(elapsed),
                     fmt_duration(left)), flush=True)


def summarize(runs):
    """Median of each figure over the ok runs of every (workload, allocator)."""
    groups = {}
    for r in runs:
        groups.setdefault((r["workload"], r["allocator"]), []).append(r)
    out = {}
    for (w, a), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]

        def med(key):
            vals = [r[key] for r in ok if r.get(key) is not None]
            return statistics.median(vals) if vals else None

        out.setdefault(w, {})[a] = {
            "time_s": med("wall_s"), "maxrss_kb": med("maxrss_kb"),
            "throughput": med("throughput"), "hit_rate": med("hit_rate"),
            "rotations": med("rotations"), "runs": len(rs), "ok": len(ok),
            "failures": [r["detail"] for r in rs if r["status"] != "ok"],
        }
    return out


def main(argv):
    args = parse_args(argv)
    build_dir = os.path.abspath(args.build_dir)
    bench_dir = os.path.join(build_dir, "bench")
    src_dir = os.path.join(ROOT, "bench")
    allocs = make_allocators(args.allocators, build_dir)
    workloads = (cw.make_workloads(args.workloads, bench_dir, src_dir, args.quick)
                 + cw.make_command_workloads(args.command, bench_dir))

    if args.list:
        print("workloads:")
        for w in cw.make_workloads(cw.WORKLOAD_NAMES, bench_dir, src_dir, args.quick):
            print("  %-10s %s" % (w.name, w.description))
        print("allocators:")
        for a in make_allocators(DEFAULT_ALLOCATORS, build_dir):
            where = (a.lib or "(no preload)") if a.status == "ok" else "not available: " + a.note
            print("  %-16s %s" % (a.name, where))
        return 0

    not_found = [w.program for w in workloads if w.kind == "command"
                 and not os.path.exists(w.program)]
    if not_found:
        print("compare: --command: program not found: %s" % ", ".join(not_found),
              file=sys.stderr)
        return 2
    missing = [p for p in [w.program for w in workloads] + [os.path.join(bench_dir, "measure")]
               if not os.path.exists(p)]
    if missing:
        print("compare: missing programs: %s (build the project first: scripts/compare "
              "builds it)" % ", ".join(missing), file=sys.stderr)
        return 2
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    shutil.rmtree(os.path.join(out_dir, "logs"), ignore_errors=True)
    command = "scripts/compare" + ("" if not argv else " " + shlex.join(
        [x for x in argv if x not in ("--no-install", "--no-build")]))

    scratch_root = tempfile.mkdtemp(prefix="syncpool-compare.")
    try:
        probe(allocs, bench_dir, scratch_root)
        for a in allocs:
            if a.status == "skipped":
                print("compare: %s: skipped: %s" % (a.name, a.note), flush=True)
            elif a.status == "broken":
                print("compare: %s: BROKEN, skipped: %s" % (a.name, a.note), flush=True)
            elif a.note:
                print("compare: %s: %s" % (a.name, a.note), flush=True)
        active = [a for a in allocs if a.status == "ok"]
        if not active:
            print("compare: no allocator left to compare", file=sys.stderr)
            return 1
        n = len(workloads) * args.repeat * len(active)
        print("compare: %d workloads x %d allocators x %d runs = %d runs; output in %s"
              % (len(workloads), len(active), args.repeat, n, out_dir), flush=True)
        info = machine_info()
        interrupted = False
        t0 = time.monotonic()
        runs = []
        try:
            run_all(args, workloads, allocs, bench_dir, out_dir, scratch_root, runs)
        except KeyboardInterrupt:
            interrupted = True
            print("\ncompare: interrupted; writing a report of the runs so far", flush=True)
        info["duration_s"] = round(time.monotonic() - t0, 1)
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)

    data = {
        "command": command, "quick": args.quick, "repeat": args.repeat, "machine": info,
        "interrupted": interrupted,
        "allocators": [a.to_json() for a in allocs],
        "workloads": [{"name": w.name, "kind": w.kind, "description": w.description,
                       "figure": w.figure, "command": w.command_line(),
                       "glibc_forced": links_an_allocator(w.program)} for w in workloads],
        "runs": runs, "summary": summarize(runs),
    }
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    report = compare_report.write_report(out_dir, data)
    print("compare: report in %s (plots: %s)" % (report, ", ".join(
        os.path.basename(p) for p in compare_report.PLOTS)), flush=True)

    status = 0
    failed = [r for r in runs if r["status"] != "ok"]
    broken = [a for a in allocs if a.status == "broken"]
    if failed:
        print("compare: %d run(s) FAILED:" % len(failed))
        for r in failed:
            print("  %s under %s, run %s: %s (logs: %s.*)" % (
                r["workload"], r["allocator"], r["run"], r["detail"],
                os.path.join(out_dir, r.get("logs", "logs/?"))))
        status = 1
    if broken:
        print("compare: broken allocator(s): %s" % ", ".join(a.name for a in broken))
        status = 1
    if interrupted:
        status = 130
    if args.check:
        problems = compare_report.check_report(out_dir, [w.name for w in workloads],
                                               [a.name for a in allocs if a.status == "ok"])
        if problems:
            print("compare: report check FAILED:\n  " + "\n  ".join(problems))
            status = status or 1
        else:
            print("compare: report check passed (REPORT.md rows and columns, %d plots%s)"
                  % (len(compare_report.PLOTS),
                     ", the spread table" if args.repeat > 1 else ""))
        # A closing line in the plain form test summaries use: runs, the report check, and
        # broken allocators count.
        print("compare: %d passed, %d failed" % (len(runs) - len(failed) + (not problems),
                                                  len(failed) + bool(problems) + len(broken)))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
