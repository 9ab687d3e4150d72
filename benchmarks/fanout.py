"""A very wide fan-out of a trivial task with a fan-in: the cost phloem adds per instance.

    python benchmarks/fanout.py                 # 10,000 and 100,000 wide
    python benchmarks/fanout.py --widths 10000  # the quick variant
    python benchmarks/fanout.py --profile 10000 # cProfile of the driver, top functions
    python benchmarks/fanout.py --executor ray  # on a local Ray started for each measurement

``numbers(n)`` returns ``range(n)`` as a list, ``inc.expand(x=...)`` maps a one-line task over
it and ``total`` sums the n results. Each measurement runs in a fresh process with a fresh
temporary PHLOEM_HOME, a SQLite store and the local executor with 2 workers, and prints:

- run s: ``phloem.run`` from start to end (store, engine, workers), wall time;
- driver cpu s / workers cpu s: CPU time (user + system) of the driving process and of its
  worker processes; on a loaded machine the figures to compare, as wall times mean little;
- floor s: the same functions called directly in one process (no store, no processes);
- ms/inst: (run - floor) / n, the overhead per instance (target <= 1 ms);
- cpu ms/inst: driver CPU / n, the driver's share of that overhead;
- peak MiB: the driving process's peak resident memory (``getrusage``; target <= 1 GiB).

With ``--executor ray`` (``PHLOEM_RAY_ADDRESS`` to join a cluster instead of starting one), a
run of 10 instances first starts Ray and its workers, so that the run measured does not pay for
them; "workers cpu s" then leaves out Ray's processes (they are not this process's children).
With ``--db-url`` the runs go to that database instead (PostgreSQL: give each measurement an
empty schema, e.g. ``...?options=-csearch_path%3Dbench``).

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
TARGET_MS = 1.0
TARGET_RSS_MIB = 1024


def build(batch_size: int | None) -> Any:
    import phloem
    from phloem import task

    @task
    def numbers(n: int) -> list[int]:
        return list(range(n))

    opts = {} if batch_size is None else {"batch_size": batch_size}

    @task(**opts)
    def inc(x: int) -> int:
        return x + 1

    @task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @phloem.pipeline(name="fanout")
    def fanout(n: int = 10_000) -> None:
        total(inc.expand(x=numbers(n)))

    return fanout


def floor(width: int) -> float:
    """The same work as plain calls: the least any orchestrator could take."""

    def inc(x: int) -> int:
        return x + 1

    t0 = time.perf_counter()
    xs = list(range(width))
    sum([inc(x) for x in xs])
    return time.perf_counter() - t0


def measure(
    width: int, batch_size: int | None, profile: bool, executor: str, db_url: str | None = None
) -> dict[str, Any]:
    """One measurement, in this (fresh) process; on ``db_url`` if given (an empty database or
    schema), else on a fresh SQLite file."""
    import phloem

    pipe = build(batch_size)
    with tempfile.TemporaryDirectory(prefix="phloem-bench-") as home:
        url = db_url or f"sqlite:///{Path(home) / 'phloem.db'}"
        if executor != "local":  # its start is not what is measured
            phloem.run(pipe, store=url, home=home, executor=executor, params={"n": 10})
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        result = phloem.run(
            pipe, store=url, home=home, workers=WORKERS, executor=executor, params={"n": width}
        )
        ran = time.perf_counter() - t0
        if prof is not None:
            import pstats

            prof.disable()
            stats = pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative")
            stats.print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
        ok = result.succeeded and result.output("total") == sum(range(width)) + width
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "run": ran,
        "floor": floor(width),
        "driver_cpu": me.ru_utime + me.ru_stime,
        "workers_cpu": kids.ru_utime + kids.ru_stime,
        "peak_mib": me.ru_maxrss / 1024,  # kilobytes on Linux
        "ok": ok,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="10000,100000")
    ap.add_argument("--batch-size", type=int, default=None, help="the task's batch_size option")
    ap.add_argument("--profile", type=int, metavar="WIDTH", help="cProfile one run, to stderr")
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    ap.add_argument("--db-url", help="an empty database (or schema) to use instead of SQLite")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one or a.profile:
        r = measure(a.one or a.profile, a.batch_size, bool(a.profile), a.executor, a.db_url)
        print(json.dumps(r))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PHLOEM_WORKERS": str(WORKERS)}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(
        f"{'width':>7} {'run s':>8} {'driver cpu s':>12} {'workers cpu s':>13} {'floor s':>8} "
        f"{'ms/inst':>8} {'cpu ms/inst':>11} {'peak MiB':>9}  "
        f"target <= {TARGET_MS:g} ms/inst, <= {TARGET_RSS_MIB} MiB"
    )
    for width in (int(w) for w in a.widths.split(",")):
        cmd = [sys.executable, __file__, "--one", str(width), "--executor", a.executor]
        if a.batch_size is not None:
            cmd += ["--batch-size", str(a.batch_size)]
        if a.db_url:
            cmd += ["--db-url", a.db_url]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            print(f"{width:>7}  failed: {out.stderr.strip().splitlines()[-3:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        per = 1000 * (r["run"] - r["floor"]) / width
        cpu_per = 1000 * r["driver_cpu"] / width
        good = per <= TARGET_MS and r["peak_mib"] <= TARGET_RSS_MIB and r["ok"]
        print(
            f"{width:>7} {r['run']:>8.2f} {r['driver_cpu']:>12.2f} {r['workers_cpu']:>13.2f} "
            f"{r['floor']:>8.3f} {per:>8.3f} {cpu_per:>11.3f} {r['peak_mib']:>9.0f}  "
            f"{'PASS' if good else 'MISS'}{'' if r['ok'] else ' (wrong result)'}",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
