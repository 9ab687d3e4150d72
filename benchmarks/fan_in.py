"""A fan-in over many distinct upstream tasks, against the same width mapped.

    python benchmarks/fan_in.py                       # widths 10,000 and 50,000
    python benchmarks/fan_in.py --widths 2500,5000,10000 --shapes distinct

Shapes: ``distinct`` defines N tasks (``part_0`` ... ``part_{N-1}``, each its own task) whose
outputs one ``gather`` task sums; ``mapped`` maps one task over N values and sums them the
same way. Each measurement runs in a fresh process with a fresh temporary PHLOEM_HOME (SQLite),
the local executor and 2 workers, and prints:

- define s: building and validating the pipeline (the distinct shape adds N tasks);
- run s: ``phloem.run`` from start to end (store, engine, workers);
- engine s: the same run decided by the engine alone (``decide`` on a fake clock with every
  attempt succeeding at once, 2 slots): no store, no processes;
- cpu s: CPU time of the whole measurement process and its workers (on a busy machine the
  figure to compare, as wall times there mean little);
- ms/task: (define + run) / N, against the target of 1 ms per task end to end.

If a figure grows faster than the width (10,000 -> 50,000 is 5x), something is quadratic.
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
TARGET_MS_PER_TASK = 1.0
WORKERS = 2


def build(shape: str, width: int) -> Any:
    import phloem
    from phloem import task

    @task
    def part(i: int) -> int:
        return i

    @task
    def numbers(n: int) -> list[int]:
        return list(range(n))

    @task
    def gather(xs: list[int]) -> int:
        return sum(xs)

    if shape == "distinct":

        def body() -> None:
            gather([part.with_options(name=f"part_{i}")(i) for i in range(width)])

    else:

        def body() -> None:
            gather(part.expand(i=numbers(width)))

    pipe = phloem.pipeline(name=f"fan_in_{shape}")(body)
    pipe.spec  # noqa: B018 - the definition is built and validated on first use
    return pipe


def engine_only(spec: Any, width: int) -> float:
    """Drive one run through ``decide`` alone: every attempt succeeds as soon as it is queued."""
    from phloem.engine import TI, AttemptFinished, Capacity, Snapshot, decide
    from phloem.states import RunState, TaskState

    snap = Snapshot.build(spec, "bench", RunState.QUEUED, {}, [TI(t) for t in spec.tasks])
    started = time.perf_counter()
    now, events = 1.0, []
    while not snap.run_state.is_terminal:
        d = decide(snap, now, events, Capacity(slots=WORKERS))
        for e in d.expansions:
            snap.apply_expansion(e, now)
        for t in d.transitions:
            snap.apply_transition(t)
        if d.run_state is not None:
            snap.run_state = d.run_state
        now += 1.0
        events = [
            AttemptFinished(t.key, t.new.try_number, "success", now, map_length=width)
            for t in d.transitions
            if t.new.state is TaskState.QUEUED
        ]
        if not d.transitions and not d.expansions and not events and d.run_state is None:
            raise RuntimeError(f"the run is stuck: {snap.run_state}")
    return time.perf_counter() - started


def measure(shape: str, width: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import phloem

    t0 = time.perf_counter()
    pipe = build(shape, width)
    defined = time.perf_counter() - t0
    engine = engine_only(pipe.spec, width)
    with tempfile.TemporaryDirectory(prefix="phloem-bench-") as home:
        t1 = time.perf_counter()
        result = phloem.run(pipe, home=home, workers=WORKERS)
        ran = time.perf_counter() - t1
        ok = result.succeeded and result.output("gather") == sum(range(width))
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    return {"define": defined, "run": ran, "engine": engine, "cpu": cpu, "ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="10000,50000")
    ap.add_argument("--shapes", default="distinct,mapped")
    ap.add_argument("--one", nargs=2, metavar=("SHAPE", "WIDTH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], int(a.one[1]))))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PHLOEM_WORKERS": str(WORKERS)}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(
        f"{'shape':9} {'width':>7} {'define s':>9} {'run s':>8} {'engine s':>9} {'cpu s':>7} "
        f"{'ms/task':>8}  target <= {TARGET_MS_PER_TASK:g} ms/task"
    )
    for width in (int(w) for w in a.widths.split(",")):
        for shape in a.shapes.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--one", shape, str(width)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if out.returncode != 0:
                print(f"{shape:9} {width:>7}  failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            per_task = 1000 * (r["define"] + r["run"]) / width
            verdict = "PASS" if per_task <= TARGET_MS_PER_TASK and r["ok"] else "MISS"
            print(
                f"{shape:9} {width:>7} {r['define']:>9.2f} {r['run']:>8.2f} {r['engine']:>9.2f} "
                f"{r['cpu']:>7.1f} "
                f"{per_task:>8.2f}  {verdict}{'' if r['ok'] else ' (wrong result)'}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
