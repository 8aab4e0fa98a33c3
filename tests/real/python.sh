#!/bin/bash
# real_python: python3 under the preloaded library gives the same output as without it.
#   1. an allocation-heavy script (dicts, lists, strings, json round trip, sorting, threads),
#      with the default settings, with SYNCPOOL_ROTATE_MS=1 + PYTHONMALLOC=malloc (every
#      Python object through malloc) and with SYNCPOOL_DISABLE=1;
#   2. "$PYTHON" -c "print(sum(len(str(i)) for i in range(10**6)))" (must print 5888890).
. "$(dirname "$0")/common.sh" "$@"
export PYTHONHASHSEED=0

cat >"$WORK/heavy.py" <<'PY'
import hashlib, json, random, threading

random.seed(12345)
h = hashlib.sha256()

def out(*a):
    s = " ".join(str(x) for x in a)
    h.update(s.encode())
    print(s)

# dicts and lists of many small objects
d = {}
for i in range(100000):
    d["k%d" % i] = [i, str(i) * (i % 7), (i, i * 2)]
out("dict", len(d), sum(len(v[1]) for v in d.values()))
for i in range(0, 100000, 3):
    del d["k%d" % i]
out("dict after del", len(d))

# strings: build, split, join, replace
words = ["".join(chr(97 + (i * j) % 26) for j in range(1 + i % 12)) for i in range(50000)]
text = " ".join(words)
out("text", len(text), text.count("a"), len(text.replace("ab", "XYZ")))
parts = text.split(" ")
out("split", len(parts), max(parts), min(parts))

# json round trip
obj = [{"id": i, "name": words[i], "tags": words[i:i + 5], "v": i / 7} for i in range(15000)]
s = json.dumps(obj, sort_keys=True)
back = json.loads(s)
out("json", len(s), back == obj, hashlib.md5(s.encode()).hexdigest())

# sorting
nums = [random.random() for _ in range(150000)]
nums.sort()
out("sorted", nums[0] <= nums[-1], round(sum(nums[:1000]), 6))
keyed = sorted(words, key=lambda w: (len(w), w[::-1]))
out("keyed", keyed[:3], keyed[-3:])

# sets, tuples, bytes, big ints
st = set(words)
out("set", len(st), sum(len(w) for w in st))
b = bytearray()
for i in range(50000):
    b += i.to_bytes(4, "little")
out("bytes", len(b), hashlib.sha1(b).hexdigest())
f = 1
for i in range(1, 1200):
    f *= i
out("fact", len(str(f)))

# threads allocating and freeing (objects cross threads through a shared list)
shared, lock = [], threading.Lock()
def work(n):
    local = []
    for i in range(15000):
        local.append({"n": n, "i": i, "s": "x" * (i % 50)})
        if len(local) > 100:
            with lock:
                shared.extend(local[:50])
            del local[:50]
        if i % 100 == 0:
            with lock:
                del shared[:len(shared) // 2]
ts = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in ts: t.start()
for t in ts: t.join()
out("threads done", len(shared) >= 0)
print("digest", h.hexdigest())
PY

without "$PYTHON" "$WORK/heavy.py" >"$WORK/without.txt" 2>"$WORK/without.err" \
    || fail "python3 without the library failed: $(cat "$WORK/without.err")"
[ -s "$WORK/without.txt" ] || fail "python3 without the library printed nothing"
# PYTHONMALLOC=malloc: every object through malloc instead of pymalloc's arenas
for cfg in "" "SYNCPOOL_ROTATE_MS=1 PYTHONMALLOC=malloc" "SYNCPOOL_DISABLE=1"; do
    if ! with env $cfg "$PYTHON" "$WORK/heavy.py" >"$WORK/with.txt" 2>"$WORK/with.err"; then
        fail "python3 heavy.py under the library ($cfg) exited with status $?: $(head -c 2000 "$WORK/with.err")"
    fi
    same "$WORK/without.txt" "$WORK/with.txt" "python3 heavy.py ${cfg:-(default settings)}"
    [ -s "$WORK/with.err" ] && fail "python3 heavy.py ($cfg) wrote to stderr: $(head -c 2000 "$WORK/with.err")"
done

want=5888890
for cfg in "" "SYNCPOOL_ROTATE_MS=1 PYTHONMALLOC=malloc"; do
    got=$(with env $cfg "$PYTHON" -c "print(sum(len(str(i)) for i in range(10**6)))") \
        || fail "python3 -c (sum of digits) under the library ($cfg) failed"
    ref=$(without "$PYTHON" -c "print(sum(len(str(i)) for i in range(10**6)))")
    [ "$got" = "$ref" ] && [ "$got" = "$want" ] \
        || fail "python3 -c sum of digits ($cfg): got '$got', without the library '$ref', expected $want"
done
echo "real_python: OK ($(wc -l <"$WORK/without.txt") lines identical in 3 configurations)"
