"""REPORT.md and the PNG plots of scripts/compare, from the data it saves as results.json.

Also runs on its own, to redraw a report from an existing results folder:
    /usr/bin/python3 scripts/compare_report.py results/ [--check]
"""
import math
import os
import re
import sys

PLOTS = ["time.png", "rss.png", "rotation.png", "burst_rss.png"]
BASELINE = "jemalloc"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- helpers ---------------------------------------------------------------------------------

def _ok_allocators(data):
    """Allocators that ran, in the order they were given."""
    ran = {r["allocator"] for r in data["runs"]}
    return [a["name"] for a in data["allocators"] if a["name"] in ran]


def _baseline(allocs):
    return BASELINE if BASELINE in allocs else (allocs[0] if allocs else None)


def _cell(data, w, a):
    return data["summary"].get(w, {}).get(a)


def _value(data, w, a, key):
    c = _cell(data, w, a)
    return c.get(key) if c else None


def _ratio(data, w, a, base, key):
    v, b = _value(data, w, a, key), _value(data, w, base, key)
    return v / b if v is not None and b else None


def _fmt_abs(key, v, unit=""):
    if v is None:
        return "—"
    if key == "time_s":
        return "%.3g s" % v if v < 10 else "%.1f s" % v
    if key == "maxrss_kb":
        return "%.0f MB" % (v / 1024) if v >= 10240 else "%.1f MB" % (v / 1024)
    if key == "throughput":
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if v >= div:
                return "%.3g%s%s" % (v / div, suffix, " " + unit if unit else "")
        return "%.3g%s" % (v, " " + unit if unit else "")
    return "%.3g" % v


def _failed(data, w, a):
    c = _cell(data, w, a)
    return c is not None and c["ok"] < c["runs"]


def _table(data, workloads, allocs, key, higher_better=False):
    """Rows = workloads, columns = allocators, entries = ratio to the baseline (its column shows
    the absolute figure).  The best entry of each row is bold."""
    base = _baseline(allocs)
    others = [a for a in allocs if a != base]
    head = "| workload | %s (absolute) | %s |" % (base, " | ".join(others))
    lines = [head, "|" + "---|" * (2 + len(others))]
    for w in workloads:
        unit = w.get("figure", "") if key == "throughput" else ""
        ratios = {a: _ratio(data, w["name"], a, base, key) for a in others}
        known = [r for r in ratios.values() if r is not None]
        best = (max if higher_better else min)(known + [1.0]) if known else None
        cells = [_fmt_abs(key, _value(data, w["name"], base, key), unit)
                 + (" FAIL" if _failed(data, w["name"], base) else "")]
        if best == 1.0 and _value(data, w["name"], base, key) is not None:
            cells[0] = "**%s**" % cells[0]
        for a in others:
            r = ratios[a]
            txt = "—" if r is None else "%.2f" % r
            if r is not None and r == best and best != 1.0:
                txt = "**%s**" % txt
            if _failed(data, w["name"], a):
                txt += " FAIL"
            cells.append(txt)
        lines.append("| %s | %s |" % (w["name"], " | ".join(cells)))
    return "\n".join(lines)


def _abs_table(data, workloads, allocs, key):
    lines = ["| workload | %s |" % " | ".join(allocs), "|" + "---|" * (1 + len(allocs))]
    for w in workloads:
        unit = w.get("figure", "") if key == "throughput" else ""
        lines.append("| %s | %s |" % (w["name"], " | ".join(
            _fmt_abs(key, _value(data, w["name"], a, key), unit) for a in allocs)))
    return "\n".join(lines)


SPREAD_WIDE = 0.20   # a cell whose runs spread wider than this is marked in the spread table


def _spread(data, w, a):
    """(max - min) / median of one cell's ok wall times, or None with fewer than 2 runs."""
    vals = sorted(r["wall_s"] for r in data["runs"] if r["workload"] == w and
                  r["allocator"] == a and r["status"] == "ok" and r.get("wall_s"))
    if len(vals) < 2:
        return None
    mid = len(vals) // 2
    med = vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
    return (vals[-1] - vals[0]) / med if med else None


def _spread_table(data, workloads, allocs):
    """Run-to-run spread of the wall time per cell, or None when no cell has 2 runs."""
    cells = {(w["name"], a): _spread(data, w["name"], a) for w in workloads for a in allocs}
    if all(v is None for v in cells.values()):
        return None
    lines = ["| workload | %s |" % " | ".join(allocs), "|" + "---|" * (1 + len(allocs))]
    for w in workloads:
        row = []
        for a in allocs:
            v = cells[(w["name"], a)]
            txt = "—" if v is None else "%.0f%%" % (100 * v)
            row.append("**%s**" % txt if v is not None and v > SPREAD_WIDE else txt)
        lines.append("| %s | %s |" % (w["name"], " | ".join(row)))
    return "\n".join(lines)


def _syncpool_rotating(data, allocs):
    by = {a["name"]: a for a in data["allocators"]}
    sp = [a for a in allocs if by[a]["syncpool"] and by[a]["rotate_ms"] is not None]
    # Periods in increasing order, "never" (0) last.
    return sorted(sp, key=lambda a: (by[a]["rotate_ms"] == 0, by[a]["rotate_ms"]))


def _burst_run(data, alloc):
    """The burst run with the median wall time for this allocator (its RSS samples)."""
    rs = [r for r in data["runs"] if r["workload"] == "burst" and r["allocator"] == alloc
          and r["status"] == "ok" and r.get("rss_samples")]
    if not rs:
        return None
    rs.sort(key=lambda r: r["wall_s"])
    return rs[(len(rs) - 1) // 2]


# --- plots -----------------------------------------------------------------------------------

def _colors(data, allocs):
    import matplotlib
    fixed = {"jemalloc": "#222222", "glibc": "#d62728", "tcmalloc": "#ff7f0e",
             "mimalloc": "#2ca02c", "tbbmalloc": "#9467bd", "syncpool-off": "#8c8c8c"}
    sp = _syncpool_rotating(data, allocs)
    cmap = matplotlib.colormaps["Blues"]
    out = {}
    for i, a in enumerate(sp):
        out[a] = cmap(0.35 + 0.65 * (i / max(1, len(sp) - 1)))
    extra = matplotlib.colormaps["tab10"]
    for i, a in enumerate(allocs):
        out.setdefault(a, fixed.get(a, extra((i + 5) % 10)))
    return out


def _placeholder(path, title, text):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ratio_ticks(ax, lo, hi):
    from matplotlib.ticker import FixedLocator, NullLocator
    cands = [0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 10, 20, 50, 100]
    ticks = [t for t in cands if lo <= t <= hi] or [1]
    if len(ticks) > 9:
        ticks = [t for t in ticks if t in (0.1, 0.25, 0.5, 1, 2, 4, 10, 20, 50, 100)]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels(["%g×" % t for t in ticks])


def plot_relative(path, data, workloads, allocs, key, title, ylabel):
    import matplotlib.pyplot as plt
    base = _baseline(allocs)
    names = [w["name"] for w in workloads]
    colors = _colors(data, allocs)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names) + 3), 5.2))
    width = 0.8 / max(1, len(allocs))
    vals = []
    for j, a in enumerate(allocs):
        pts = []
        for i, w in enumerate(names):
            r = _ratio(data, w, a, base, key)
            x = i - 0.4 + width * (j + 0.5)
            if r is not None and r > 0:
                pts.append((x, r))
            if _failed(data, w, a):          # mark cells with a failed run
                ax.text(x, r or 1.0, "✗", ha="center", va="bottom", color="red", fontsize=9)
        vals += [p[1] for p in pts]
        ax.bar([p[0] for p in pts], [p[1] for p in pts], width=width, color=colors[a], label=a,
               edgecolor="white", linewidth=0.3)
    ax.axhline(1.0, color="black", linewidth=0.8)
    if vals:
        lo, hi = min(vals + [1.0]), max(vals + [1.0])
        ax.set_yscale("log")
        ax.set_ylim(lo / 1.25, hi * 1.25)
        _ratio_ticks(ax, lo / 1.25, hi * 1.25)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _period_label(data, a):
    ms = next(x["rotate_ms"] for x in data["allocators"] if x["name"] == a)
    if ms == 0:
        return "never"
    return "%gs" % (ms / 1000) if ms >= 1000 else "%dms" % ms


def plot_rotation(path, data, workloads, allocs):
    import matplotlib.pyplot as plt
    sp = _syncpool_rotating(data, allocs)
    names = [w["name"] for w in workloads
             if any(_value(data, w["name"], a, "time_s") is not None for a in sp)]
    if not sp or not names:
        _placeholder(path, "syncpool rotation period: time vs peak RSS",
                     "No syncpool run with a rotation period in this report\n"
                     "(libsyncpool.so not built, or not selected with --allocators).")
        return
    cols = min(5, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows + 0.8), squeeze=False)
    colors = _colors(data, allocs)
    for k, w in enumerate(names):
        ax = axes[k // cols][k % cols]
        pts = [(a, _value(data, w, a, "maxrss_kb"), _value(data, w, a, "time_s")) for a in sp]
        pts = [(a, r / 1024, t) for a, r, t in pts if r is not None and t is not None]
        ax.plot([p[1] for p in pts], [p[2] for p in pts], "-", color="#6baed6", zorder=1)
        for a, r, t in pts:
            ax.scatter([r], [t], color=colors[a], edgecolor="black", linewidth=0.5, zorder=2,
                       s=36)
            ax.annotate(_period_label(data, a), (r, t), textcoords="offset points",
                        xytext=(4, 3), fontsize=7)
        for ref, marker in (("jemalloc", "*"), ("syncpool-off", "x")):
            r, t = _value(data, w, ref, "maxrss_kb"), _value(data, w, ref, "time_s")
            if r is not None and t is not None:
                ax.scatter([r / 1024], [t], marker=marker, color="black", s=60, zorder=3,
                           label=ref if k == 0 else None)
        ax.set_title(w, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel("median wall time (s)", fontsize=8)
        if k // cols == rows - 1 or k + cols >= len(names):
            ax.set_xlabel("peak RSS (MB)", fontsize=8)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("syncpool rotation period sweep: one point per SYNCPOOL_ROTATE_MS "
                 "(lower left is better)", fontsize=11)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_burst(path, data, allocs):
    import matplotlib.pyplot as plt
    runs = {a: _burst_run(data, a) for a in allocs}
    runs = {a: r for a, r in runs.items() if r}
    if not runs:
        _placeholder(path, "burst then idle: RSS over time",
                     "The burst workload was not run (or every run of it failed).")
        return
    colors = _colors(data, allocs)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    for a, r in runs.items():
        ts = [s[0] for s in r["rss_samples"]]
        mb = [s[1] / 1024 for s in r["rss_samples"]]
        style = "--" if a.startswith("syncpool") and a != "syncpool-off" else "-"
        ax.plot(ts, mb, style, color=colors[a], label=a, linewidth=1.4)
        freed = r.get("extra", {}).get("freed_at_ms")
        if freed is not None:
            t_f = float(freed) / 1000
            i = min(range(len(ts)), key=lambda j: abs(ts[j] - t_f))
            ax.plot([ts[i]], [mb[i]], "o", color=colors[a], markersize=4)
    ax.set_xlabel("time since start (s); dot = last object freed, idle after it")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("burst then idle: resident memory over time (median run per allocator)")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_plots(out_dir, data):
    import matplotlib
    matplotlib.use("Agg")
    allocs = _ok_allocators(data)
    workloads = data["workloads"]
    base = _baseline(allocs)
    plot_relative(os.path.join(out_dir, "time.png"), data, workloads, allocs, "time_s",
                  "Median wall time relative to %s (lower is better)" % base,
                  "time / %s time (log scale)" % base)
    plot_relative(os.path.join(out_dir, "rss.png"), data, workloads, allocs, "maxrss_kb",
                  "Peak RSS relative to %s (lower is better)" % base,
                  "peak RSS / %s peak RSS (log scale)" % base)
    plot_rotation(os.path.join(out_dir, "rotation.png"), data, workloads, allocs)
    plot_burst(os.path.join(out_dir, "burst_rss.png"), data, allocs)


# --- REPORT.md -------------------------------------------------------------------------------

def _hit_table(data, workloads, allocs):
    by = {a["name"]: a for a in data["allocators"]}
    sp = [a for a in allocs if by[a]["syncpool"] and a != "syncpool-off"]
    if not sp:
        return None
    lines = ["| workload | %s |" % " | ".join(sp), "|" + "---|" * (1 + len(sp))]
    for w in workloads:
        cells = []
        for a in sp:
            h = _value(data, w["name"], a, "hit_rate")
            cells.append("—" if h is None else "%.1f%%" % (100 * h))
        lines.append("| %s | %s |" % (w["name"], " | ".join(cells)))
    return "\n".join(lines)


def _burst_table(data, allocs):
    lines = ["| allocator | peak RSS | RSS at the end of the idle time | given back to the OS "
             "| syncpool: held in the pools at exit |", "|---|---|---|---|---|"]
    any_row = False
    for a in allocs:
        r = _burst_run(data, a)
        if not r:
            continue
        peak = max(s[1] for s in r["rss_samples"])
        end = r["rss_samples"][-1][1]
        cached = (r.get("stats") or {}).get("cached_bytes")
        lines.append("| %s | %.0f MB | %.0f MB | %.0f%% | %s |"
                     % (a, peak / 1024, end / 1024, 100 * (1 - end / peak) if peak else 0,
                        "—" if cached is None else "%.1f MB" % (cached / 2**20)))
        any_row = True
    return "\n".join(lines) if any_row else None


def _fmt_s(s):
    s = int(round(s or 0))
    return "%dm%02ds" % (s // 60, s % 60)


def render(data):
    allocs = _ok_allocators(data)
    workloads = data["workloads"]
    base = _baseline(allocs)
    m = data["machine"]
    n = data["repeat"]
    out = ["# Allocator comparison", ""]
    out.append("Generated by `%s` on %s in %s; every figure is the median of %d run%s."
               % (data["command"], m.get("date"), _fmt_s(m.get("duration_s")), n,
                  "s" if n > 1 else ""))
    if data.get("interrupted"):
        out.append("\n**The run was interrupted: this report covers only the runs that "
                   "finished.**")
    out.append("Runs alternated between allocators (A B C A B C ...) so that a noisy machine "
               "affects all alike. Ratios are to **%s**; its column shows absolute figures. "
               "Best of each row in bold; FAIL marks a failed run (see below)." % base)
    if n == 1:
        out.append("With a single run per cell, expect differences of 20-30% to be noise on a "
                   "busy machine; use the default run (or `--repeat 5`) for conclusions.")
    out += ["", "## Machine", ""]
    out.append("- %s CPUs (%s), %s memory; kernel %s; Debian %s"
               % (m.get("nproc"), m.get("cpu") or "?", m.get("memory") or "?",
                  m.get("kernel"), m.get("debian") or "?"))
    progs = m.get("programs", {})
    out.append("- Debian packages: " + ", ".join("%s %s" % (k, v) for k, v in progs.items()
                                                if v))
    out.append("- syncpool: %s" % m.get("project"))
    out += ["", "| allocator | library | package version |", "|---|---|---|"]
    for a in data["allocators"]:
        lib = a["lib"] or "(none: no preload)"
        extra = ""
        if a["syncpool"]:
            extra = " — " + ", ".join("%s=%s" % kv for kv in sorted(a["env"].items())
                                      if kv[0] != "LD_PRELOAD")
        ver = "%s %s" % (a["package"] or "", a["version"] or "") if a["package"] else "—"
        state = "" if a["status"] == "ok" else " **%s: %s**" % (a["status"], a["note"])
        out.append("| %s | `%s`%s | %s%s |" % (a["name"], lib, extra, ver.strip(), state))

    skipped = [a for a in data["allocators"] if a["status"] != "ok"]
    failed = [r for r in data["runs"] if r["status"] != "ok"]
    if skipped or failed:
        out += ["", "## Problems", ""]
        for a in skipped:
            out.append("- allocator **%s** %s: %s" % (a["name"], a["status"], a["note"]))
        for r in failed:
            out.append("- **%s under %s, run %s: %s**: %s (%s)" % (
                r["workload"], r["allocator"], r["run"], r["status"], r["detail"],
                "logs: `%s.stdout`, `.stderr`" % r["logs"] if r.get("logs") else "no logs"))

    out += ["", "## Wall time relative to %s (lower is better)" % base, "",
            _table(data, workloads, allocs, "time_s"), "",
            "![Relative wall time per workload and allocator](time.png)", ""]
    spread = _spread_table(data, workloads, allocs)
    if spread:
        out += ["## Run-to-run spread of wall time", "",
                "(slowest − fastest) / median over the runs of each cell; **bold** above %d%%. "
                "A ratio in the table above is only as good as the spread of its two cells: "
                "where both are wide, the runs of this machine, not the allocators, decide it."
                % round(100 * SPREAD_WIDE), "", spread, ""]
    out += ["## Peak RSS relative to %s (lower is better)" % base, "",
            _table(data, workloads, allocs, "maxrss_kb"), "",
            "![Relative peak RSS per workload and allocator](rss.png)", "",
            "## Throughput relative to %s (the workload's own figure; higher is better)" % base,
            "", _table(data, [w for w in workloads if any(
                _value(data, w["name"], a, "throughput") for a in allocs)],
                allocs, "throughput", higher_better=True)]
    hits = _hit_table(data, workloads, allocs)
    out += ["", "## syncpool hit rate", ""]
    if hits:
        out += ["Share of pooled-size mallocs served from the pools instead of jemalloc: "
                "(gets − misses) / gets over all size classes, from `SYNCPOOL_STATS=json:…` "
                "of the process with the most gets.", "", hits]
    else:
        out.append("No syncpool allocator ran (see the allocator table above).")
    out += ["", "## Rotation period: time against peak RSS", "",
            "One point per `SYNCPOOL_ROTATE_MS` for each workload; the star is jemalloc and "
            "the cross syncpool-off (the same shim without pools).", "",
            "![syncpool rotation period sweep](rotation.png)", "",
            "## Burst then idle: RSS over time", ""]
    bt = _burst_table(data, allocs)
    if bt:
        out += [bt, ""]
    out += ["![RSS over time in the burst-then-idle workload](burst_rss.png)", "",
            "## Absolute figures", "", "### Median wall time", "",
            _abs_table(data, workloads, allocs, "time_s"), "", "### Peak RSS (max resident "
            "set of the process, from wait4; redis: the server's VmHWM)", "",
            _abs_table(data, workloads, allocs, "maxrss_kb"), "", "### Throughput", "",
            _abs_table(data, [w for w in workloads if any(
                _value(data, w["name"], a, "throughput") for a in allocs)],
                allocs, "throughput"), "", "## Workloads", ""]
    for w in workloads:
        figure = " Throughput: %s." % w["figure"] if w.get("figure") else ""
        out.append("- **%s** — %s.%s `%s`" % (w["name"], w["description"], figure,
                                              w["command"]))
        if w.get("glibc_forced"):
            out.append("  This program links another allocator, so for the *glibc* column "
                       "it ran with `libbench_glibc.so` preloaded, which sends the malloc "
                       "family to glibc.")
    out += ["", "Raw data: [results.csv](results.csv) (one row per run) and "
            "[results.json](results.json) (everything, with RSS samples).", ""]
    return "\n".join(out)


def write_report(out_dir, data):
    draw_plots(out_dir, data)
    path = os.path.join(out_dir, "REPORT.md")
    with open(path, "w") as f:
        f.write(render(data))
    return path


def check_report(out_dir, workloads, allocators):
    """What is missing from a report folder: [] if REPORT.md has a row for every workload and a
    column for every allocator in its time table, and every plot is a real PNG."""
    problems = []
    path = os.path.join(out_dir, "REPORT.md")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ["%s is missing" % path]
    sect = text.split("## Wall time relative", 1)
    if len(sect) < 2:
        problems.append("REPORT.md has no wall-time table")
    else:
        rows = [ln for ln in sect[1].split("\n## ", 1)[0].splitlines() if ln.startswith("|")]
        header = [c.strip() for c in rows[0].strip("|").split("|")] if rows else []
        names = [r.strip("|").split("|")[0].strip() for r in rows[2:]]
        for w in workloads:
            if w not in names:
                problems.append("no row for workload %s in the wall-time table" % w)
        for a in allocators:
            if not any(h == a or h.startswith(a + " ") for h in header):
                problems.append("no column for allocator %s in the wall-time table" % a)
    for name in PLOTS:
        p = os.path.join(out_dir, name)
        try:
            with open(p, "rb") as f:
                head = f.read(8)
            if head != PNG_MAGIC or os.path.getsize(p) < 2000:
                problems.append("%s is not a plausible PNG" % name)
        except OSError:
            problems.append("%s is missing" % name)
        if "](%s)" % name not in text:
            problems.append("REPORT.md does not show %s" % name)
    for name in ("results.csv", "results.json"):
        if not os.path.exists(os.path.join(out_dir, name)):
            problems.append("%s is missing" % name)
    m = re.search(r"every figure is the median of (\d+) run", text)
    if m and int(m.group(1)) > 1 and "## Run-to-run spread of wall time" not in text:
        problems.append("REPORT.md has %s runs per cell but no spread table" % m.group(1))
    return problems


def main(argv):
    import json
    if not argv or argv[0].startswith("-"):
        print("usage: compare_report.py RESULTS_DIR [--check]", file=sys.stderr)
        return 2
    out_dir = argv[0]
    with open(os.path.join(out_dir, "results.json")) as f:
        data = json.load(f)
    print(write_report(out_dir, data))
    if "--check" in argv[1:]:
        problems = check_report(out_dir, [w["name"] for w in data["workloads"]],
                                _ok_allocators(data))
        for p in problems:
            print("check: " + p)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
