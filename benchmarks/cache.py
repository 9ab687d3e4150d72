"""What task caching costs and saves.

    python benchmarks/cache.py [--repeat N] [--only W2,W3,keys]

- W2 (a chain of 200 tasks) without caching, then with ``cache=True`` on every task on an
  empty cache (every task misses, computes its key, looks it up and writes its entry): the
  price of caching when nothing is reused. Target: at most 1.2x.
- W3 (the small ML pipeline) with ``cache=True``: a first run (all misses), then a second run
  in a new process on the same store, where every task is served from the cache (keys made,
  entries found, artifacts verified, no attempt). Target: the all-hit run at most 0.5 s.
- The cost of one task instance's key (its inputs hashed, its key parts serialized and
  hashed), for small inputs; and of a task's code fingerprint, computed once per process.
  Target: at most 1 ms per key.

Each run is a fresh process with a fresh temporary PHLOEM_HOME (SQLite) and the local
executor with 2 workers, as benchmarks/run.py does; the time measured is that of the
``phloem.run`` call (the interpreter's start and ``import phloem`` are left out, they do not
depend on caching). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_RUN = """
import json, sys, time
sys.path.insert(0, {here!r})
import phloem, workloads
from phloem.app import Phloem
app = Phloem.open(None, {home!r})
pipe = workloads.{name}
t0 = time.perf_counter()
r = phloem.run(pipe, app=app, executor="local", workers=2)
wall = time.perf_counter() - t0
states = sorted(set(r.states().values()))
print(json.dumps({{"wall": wall, "states": states}}))
"""


def _run(name: str, home: str) -> dict[str, object]:
    env = dict(os.environ, PHLOEM_BENCH_OUT=os.path.join(home, "out"))
    env.pop("PHLOEM_DB_URL", None)
    env.pop("PHLOEM_HOME", None)
    code = _RUN.format(here=str(HERE), home=home, name=name)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_w2(repeat: int) -> None:
    plain, cached = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            plain.append(float(_run("W2", a)["wall"]))  # type: ignore[arg-type]
            r = _run("W2C", b)
            assert r["states"] == ["success"], r
            cached.append(float(r["wall"]))  # type: ignore[arg-type]
    p, c = statistics.median(plain), statistics.median(cached)
    print(f"W2, 200 tasks, no caching:            {p:.3f} s (median of {repeat})")
    print(f"W2, cache=True on every task, misses: {c:.3f} s  ratio {c / p:.2f}x  (target <= 1.2x)")


def bench_w3(repeat: int) -> None:
    first, hits = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as home:
            r = _run("W3C", home)
            first.append(float(r["wall"]))  # type: ignore[arg-type]
            r = _run("W3C", home)
            assert r["states"] == ["cached"], r
            hits.append(float(r["wall"]))  # type: ignore[arg-type]
    f, h = statistics.median(first), statistics.median(hits)
    print(f"W3, cache=True, first run (misses):   {f:.3f} s (median of {repeat})")
    print(f"W3, cache=True, second run (all hit): {h:.3f} s  (target <= 0.5 s)")


def bench_keys() -> None:
    sys.path.insert(0, str(HERE))
    import workloads

    from phloem.caching import TaskKeys
    from phloem.caching.fingerprint import Fingerprinter
    from phloem.dsl.cache import Cache
    from phloem.runner import Out

    spec = workloads.W2C.spec.tasks["add_one"]
    t0 = time.perf_counter()
    Fingerprinter().parts(spec.fn)
    first = time.perf_counter() - t0
    spec3 = workloads.W3C.spec.tasks["train_forest"]
    t0 = time.perf_counter()
    Fingerprinter().parts(spec3.fn)
    first3 = time.perf_counter() - t0
    keys = TaskKeys(spec, Cache())
    arg = Out('{"__artifact__":1}'[:0] + "41")

    def ctx(named: object, hashes: object) -> object:
        raise AssertionError

    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        keys.key((arg,), {}, ctx)  # type: ignore[arg-type]
    per = (time.perf_counter() - t0) / n
    small = {"rows": list(range(100)), "name": "features", "alpha": 0.5}
    t0 = time.perf_counter()
    for _ in range(n // 10):
        keys.key((small,), {}, ctx)  # type: ignore[arg-type]
    per_small = (time.perf_counter() - t0) / (n // 10)
    print(f"code fingerprint, once per task per process: add_one {first * 1e3:.2f} ms, "
          f"train_forest {first3 * 1e3:.2f} ms")
    print(f"key of one instance, upstream output input:  {per * 1e6:.1f} us  (target <= 1 ms)")
    print(f"key of one instance, a 100-item dict input: {per_small * 1e6:.1f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="keys,W2,W3")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if "keys" in only:
        bench_keys()
    if "W2" in only:
        bench_w2(args.repeat)
    if "W3" in only:
        bench_w3(args.repeat)


if __name__ == "__main__":
    main()
