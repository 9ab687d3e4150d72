"""phloem side by side with Dagster on the same machine, in the same run: the ratios that carry
from machine to machine.

    python benchmarks/peers.py --setup          # once: Dagster 1.13 in benchmarks/.venv-dagster
    python benchmarks/peers.py [--repeat N] [--only W1,W2] [--dagster-executor in_process]

The 200-task chain (W2) and the 1,000-task fan-out (W1) run in phloem as ``run.py`` runs them
(a fresh ``phloem run`` process, fresh home, SQLite, 2 workers) and in Dagster 1.13 on its
persistent SQLite storage (a fresh ``DAGSTER_HOME``, ``peer_dagster.py`` in Dagster's own
venv). Also measured: one durable SQLite transaction on this machine (WAL, the synchronous
setting phloem uses), the plain-function floor and the floor's hello, so every target of the
speed goal is printed as a ratio. Without the Dagster venv the peer columns are skipped with a
message; the rest still runs. README.md in this folder explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/run.py, next to this file)

VENV = HERE / ".venv-dagster"
PEER = HERE / "peer_dagster.py"
DAGSTER_REQUIREMENT = "dagster==1.13.*"
#: the goal's ratios (see README.md in this folder)
CHAIN_VS_DAGSTER = 20.0
LATENCY_VS_TRANSACTION = 10.0
OVERHEAD_PER_TASK = 0.0003  # seconds over the plain-function floor
HELLO_VS_FLOOR = 2.0


def venv_python() -> Path:
    return VENV / "bin" / "python"


def setup() -> int:
    """Create the Dagster venv (kept out of git) and install Dagster 1.13 into it."""
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    cmd = [str(venv_python()), "-m", "pip", "install", "-q", DAGSTER_REQUIREMENT]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def dagster_version() -> str | None:
    """The installed Dagster's version, or None when its venv is missing or broken."""
    if not venv_python().exists():
        return None
    probe = subprocess.run(
        [str(venv_python()), "-c", "import dagster; print(dagster.__version__)"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


@dataclass
class PeerSample:
    wall: float
    run: float
    steps: int
    latencies: list[float]


def dagster_run(name: str, executor: str) -> PeerSample:
    """One Dagster run of ``name`` in a fresh process with a fresh ``DAGSTER_HOME``."""
    home = Path(tempfile.mkdtemp(prefix=f"dagster-bench-{name}-"))
    try:
        # the default storage (SQLite files under DAGSTER_HOME); telemetry off, nothing else
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHLOEM_", "DAGSTER_"))}
        env.pop("PYTHONPATH", None)
        env["DAGSTER_HOME"] = str(home)
        cmd = [str(venv_python()), str(PEER), name, "--executor", executor]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.splitlines()[-20:])
            raise SystemExit(f"Dagster {name} failed ({proc.returncode}):\n{tail}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return PeerSample(wall, out["run"], out["steps"], out["latencies"])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setup", action="store_true", help=f"install {DAGSTER_REQUIREMENT}")
    ap.add_argument("--only", default="W1,W2,hello", help="workloads (W1, W2, hello)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per workload; medians reported")
    ap.add_argument(
        "--dagster-executor",
        choices=("in_process", "multiprocess"),
        default="in_process",
        help="Dagster's executor (in_process, its fastest, by default)",
    )
    args = ap.parse_args(argv)
    if args.setup:
        return setup()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    version = dagster_version()
    if version is None:
        print(
            f"Dagster is not installed in {VENV.relative_to(HERE.parent)}: the peer columns are "
            "skipped (install it with `python benchmarks/peers.py --setup`)"
        )
    print(bench.compile_bytecode())
    cmd, how = bench.launcher()
    print(f"phloem: {how}; SQLite, local executor, {bench.WORKERS} workers")
    if version:
        print(f"Dagster {version}: default SQLite storage, {args.dagster_executor} executor")
    print(f"median of {args.repeat}; load average before: " + bench.load())
    txn = bench.durable_transaction()
    print(
        f"one durable SQLite transaction (WAL, synchronous={bench.SYNCHRONOUS}): "
        f"{txn * 1e6:.1f} µs (median)"
    )
    hops = bench.durable_hops()
    for line in bench.hop_lines(hops, txn):
        print(line)
    targets: list[str] = []
    rows: list[list[str]] = []
    for name in names:
        ours = [bench.measure(name, cmd, None) for _ in range(args.repeat)]
        wall = bench.med([s.wall for s in ours])
        run = bench.med([s.run for s in ours])
        floor = bench.med([s.floor for s in ours])
        floor_wall = bench.med([s.floor_wall for s in ours])
        tasks = ours[0].tasks
        overhead = (run - floor) / tasks
        row = [name, str(tasks), f"{wall:.3f}", f"{run:.3f}", f"{floor:.3f}", f"{floor_wall:.3f}"]
        if name == "hello":
            ratio = wall / floor_wall
            targets.append(
                f"hello: wall {wall:.3f} s vs floor hello {floor_wall:.3f} s = {ratio:.2f}x "
                f"<= {HELLO_VS_FLOOR:g}x  {bench.verdict(ratio <= HELLO_VS_FLOOR)}"
            )
            line = bench.store_import_line(ours, floor_wall)
            if line:
                targets.append("    " + line)
            rows.append([*row, "-", "-", "-", "-"])
            continue
        targets.append(
            f"{name}: overhead {overhead * 1e3:.3f} ms/task over the floor <= "
            f"{OVERHEAD_PER_TASK * 1e3:g} ms  {bench.verdict(overhead <= OVERHEAD_PER_TASK)}"
        )
        if name == "W2":
            lat = bench.med([bench.med(s.latencies) for s in ours])
            targets.append(
                f"W2: median inter-task latency {lat * 1e3:.2f} ms = {lat / txn:.0f}x one "
                f"durable transaction <= {LATENCY_VS_TRANSACTION:g}x  "
                f"{bench.verdict(lat <= LATENCY_VS_TRANSACTION * txn)}  "
                + bench.hop_context(hops, txn)
            )
        if version is None:
            rows.append([*row, "-", "-", "-", "-"])
            continue
        theirs = [dagster_run(name, args.dagster_executor) for _ in range(args.repeat)]
        twall = bench.med([p.wall for p in theirs])
        trun = bench.med([p.run for p in theirs])
        rows.append(
            [*row, f"{twall:.3f}", f"{trun:.3f}", f"{twall / wall:.1f}x", f"{trun / run:.1f}x"]
        )
        if name == "W2":
            tlat = bench.med([bench.med(p.latencies) for p in theirs])
            targets.append(
                f"W2: Dagster's run {trun:.3f} s / phloem's {run:.3f} s = {trun / run:.1f}x >= "
                f"{CHAIN_VS_DAGSTER:g}x  {bench.verdict(trun >= CHAIN_VS_DAGSTER * run)}  "
                f"(Dagster's median inter-op latency {tlat * 1e3:.1f} ms)"
            )
    print()
    header = [
        "workload",
        "tasks",
        "wall s",
        "run s",
        "floor s",
        "floor wall s",
        "Dagster wall s",
        "Dagster run s",
        "wall ratio",
        "run ratio",
    ]
    bench.print_rows(header, rows)
    print()
    for line in targets:
        print(line)
    print("load average after: " + bench.load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
