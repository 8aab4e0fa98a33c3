"""python: an allocation-heavy Python script, the "real program" workload for the interpreter.

Builds SIZE records as dicts of strings, ints, tuples and lists; indexes, sorts and groups them;
round-trips a part through JSON; then rebuilds a new generation while the old one dies, a few
times.  Checks totals that it can also compute in closed form.

usage: python3 alloc_heavy.py SIZE   (records per generation)

Run it with PYTHONMALLOC=malloc (scripts/compare does) so that every object goes through the
allocator under test instead of CPython's own small-object arenas.
Prints ops_per_sec (records built per second) and check=ok, or exits 1 on a failed check.
"""
import json
import sys
import time

GENERATIONS = 4


def make_record(i, gen):
    name = "user-%07d-%d" % (i, gen)
    return {
        "id": i,
        "name": name,
        "tags": [name[:6], str(i % 97), "g%d" % gen],
        "pos": (i % 1000, i // 1000),
        "score": (i * 7919 + gen) % 10007,
    }


def generation(n, gen):
    records = [make_record(i, gen) for i in range(n)]
    by_name = {r["name"]: r for r in records}
    groups = {}
    for r in records:
        groups.setdefault(r["score"] % 101, []).append(r["id"])
    ranked = sorted(records, key=lambda r: (r["score"], r["id"]))
    # A slice of the data goes through JSON and back, as a service would serialise it.
    blob = json.dumps(ranked[: n // 10])
    back = json.loads(blob)
    text = "".join(r["name"][-3:] for r in records[:: 7])
    return {
        "count": len(by_name),
        "groups": len(groups),
        "grouped": sum(len(v) for v in groups.values()),
        "score_sum": sum(r["score"] for r in back),
        "expected_score_sum": sum(r["score"] for r in ranked[: n // 10]),
        "text_len": len(text),
        "min_score": ranked[0]["score"],
    }


def main():
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and not sys.argv[1].isdigit()):
        print("usage: alloc_heavy.py SIZE", file=sys.stderr)
        return 2
    n = int(sys.argv[1]) if len(sys.argv) == 2 else 200000
    t0 = time.monotonic()
    for gen in range(GENERATIONS):
        res = generation(n, gen)
        ok = (
            res["count"] == n
            and res["groups"] == min(101, n)
            and res["grouped"] == n
            and res["score_sum"] == res["expected_score_sum"]
            and res["text_len"] == 3 * len(range(0, n, 7))
            and res["min_score"] == min((i * 7919 + gen) % 10007 for i in range(n))
        )
        if not ok:
            print("python: CHECK FAILED: generation %d: %r" % (gen, res), file=sys.stderr)
            return 1
    dt = time.monotonic() - t0
    print("ops_per_sec=%.0f" % (n * GENERATIONS / dt))
    print("seconds=%.3f" % dt)
    print("check=ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
