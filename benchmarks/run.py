"""Measure phloem against the floor a durable orchestrator cannot go below.

    python benchmarks/run.py [--only W1,W2,W3,hello] [--repeat N] [--db-url URL]
    python benchmarks/run.py --postgres [URL] [--only W1,W2] [--repeat N]

Every measurement starts a fresh process, as a user would (``phloem run
benchmarks/workloads.py:NAME``, or ``python -c "import phloem; phloem.run(...)"`` where the
``phloem`` command is not installed), with a fresh temporary PHLOEM_HOME, SQLite (or
``--db-url``: a fresh schema per measurement) and the local executor with 2 workers.
``--postgres`` runs each workload on SQLite and on PostgreSQL in alternating pairs and prints the
per-task overhead of both side by side with the PostgreSQL/SQLite ratio.
README.md in this folder explains the figures and the targets.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOADS_FILE = "benchmarks/workloads.py"
ALL = ("W1", "W2", "W3", "hello")
WORKERS = 2

#: name -> (wall-time limit in seconds, or None when the limit is relative)
WALL_TARGETS: dict[str, float | None] = {"W1": 1.5, "W2": 1.0, "W3": None, "hello": 0.5}
W2_MEDIAN_LATENCY_TARGET = 0.002  # seconds between one task's end and the next one's start
W3_PLAIN_RATIO_TARGET = 1.15

#: the speed goal's ratios, measured side by side on one machine (absolute seconds do not carry)
OVERHEAD_TARGET = 0.0003  # seconds per task over the plain-function floor (W1, W2)
LATENCY_PER_TRANSACTION_TARGET = 10.0  # W2's median inter-task latency / one durable transaction
HELLO_FLOOR_RATIO_TARGET = 2.0  # hello's wall / the floor hello's wall
#: what phloem's store is built on, and so every ``phloem run`` imports: the floor's hello with
#: these imported too is the least such a run can take (printed beside the hello target)
HELLO_STORE_IMPORTS = ("sqlalchemy",)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: SQLite's synchronous setting in phloem's store (phloem.store.engine.DEFAULT_SYNCHRONOUS), for
#: the floor and the durable transaction; not imported, so the floor process loads no SQLAlchemy
SYNCHRONOUS = "NORMAL"

# -- the floor: plain calls plus durable writes ---------------------------------------------------


class DurableLog:
    """The least a durable orchestrator must do per task: a few committed SQLite writes."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS task (id INTEGER PRIMARY KEY, state TEXT, at REAL)"
        )
        self.n = 0

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(sql, args)
        self.conn.execute("COMMIT")

    def tick(self) -> None:
        """One task's life: queued, running, done; one transaction each."""
        self.n += 1
        self._write(
            "INSERT INTO task (id, state, at) VALUES (?, 'queued', ?)", (self.n, time.time())
        )
        self._write("UPDATE task SET state = 'running', at = ? WHERE id = ?", (time.time(), self.n))
        self._write("UPDATE task SET state = 'success', at = ? WHERE id = ?", (time.time(), self.n))

    def close(self) -> None:
        self.conn.close()


def plain_main(name: str, durable: str | None, imports: tuple[str, ...] = ()) -> None:
    """In a fresh process: run the workload's functions directly, print the timing as JSON.
    ``imports``: modules imported first, so that the process's wall time includes them."""
    for module in imports:
        __import__(module)
    sys.path.insert(0, str(HERE))
    import workloads

    log = DurableLog(Path(durable)) if durable else None
    tick: Callable[[], None] = log.tick if log else (lambda: None)
    t0 = time.perf_counter()
    workloads.PLAIN[name](tick)
    elapsed = time.perf_counter() - t0
    if log:
        log.close()
    print(json.dumps({"seconds": elapsed}))


def durable_transaction(n: int = 2000) -> float:
    """The median time of one durable SQLite transaction on this machine (BEGIN IMMEDIATE, one
    UPDATE, COMMIT; WAL and phloem's synchronous setting, on a fresh file): the unit the W2
    latency target is counted in."""
    with tempfile.TemporaryDirectory(prefix="phloem-bench-txn-") as tmp:
        log = DurableLog(Path(tmp) / "txn.db")
        log.tick()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            log._write("UPDATE task SET at = ? WHERE id = ?", (t0, log.n))
            times.append(time.perf_counter() - t0)
        log.close()
    return statistics.median(times)


def _hop_worker(conn: Connection, other: Connection, cpu: int | None) -> None:
    """``durable_hop``'s worker: run each task it is sent (x + 1), report its end, and at the
    end send back the latencies it saw between one task's end and the next one's start."""
    other.close()  # the driver's end: closed here, so the worker sees EOF if the driver dies
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    started: list[float] = []
    ended: list[float] = []
    try:
        while (x := conn.recv()) is not None:
            started.append(time.time())
            out = x + 1  # the task
            ended.append(time.time())
            conn.send((x, out, ended[-1]))
        conn.send([b - a for a, b in zip(ended, started[1:], strict=False)])
    except EOFError:
        pass
    finally:
        conn.close()


def durable_hop(n: int = 2000, cpus: tuple[int, int] | None = None) -> tuple[float, float]:
    """(median, p95) seconds between one task's end and the next one's start, seen by a worker
    process, when the hop between them is only what a durable orchestrator that runs tasks in
    their own process must do: the worker's report to the driver, one durable SQLite
    transaction (the previous task marked done and the next one running, as ``DurableLog``
    writes them), and the next task sent back. A process-isolated durable design cannot go
    below it with its worker placed the same way; if it alone exceeds the W2 latency target,
    that target is out of such a design's reach on this machine. ``cpus``: pin (driver,
    worker) to these CPUs, as waking a process on another core costs far more than on the same
    one. Plain pipes and ``sqlite3``, no phloem (the floor loads no SQLAlchemy)."""
    here, there = multiprocessing.get_context("fork").Pipe()
    worker = multiprocessing.get_context("fork").Process(
        target=_hop_worker, args=(there, here, cpus[1] if cpus else None), daemon=True
    )
    affinity = os.sched_getaffinity(0) if cpus else None
    worker.start()
    there.close()
    ok = False
    try:
        if cpus:
            os.sched_setaffinity(0, {cpus[0]})
        with tempfile.TemporaryDirectory(prefix="phloem-bench-hop-") as tmp:
            log = DurableLog(Path(tmp) / "hop.db")
            try:
                conn = log.conn
                conn.execute("INSERT INTO task (id, state, at) VALUES (0, 'running', ?)", (0.0,))
                here.send(0)
                for i in range(n):
                    done, _, at = here.recv()
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(
                        "UPDATE task SET state = 'success', at = ? WHERE id = ?", (at, done)
                    )
                    conn.execute(
                        "INSERT INTO task (id, state, at) VALUES (?, 'running', ?)",
                        (i + 1, time.time()),
                    )
                    conn.execute("COMMIT")
                    here.send(i + 1)
                here.recv()  # the last task's end
                here.send(None)
                latencies: list[float] = here.recv()
            finally:
                log.close()
        ok = True
    finally:
        if affinity:
            os.sched_setaffinity(0, affinity)
        here.close()
        worker.join(timeout=10 if ok else 0)
        if worker.is_alive():
            worker.kill()
            worker.join()
    if len(latencies) != n:
        raise RuntimeError(f"durable hop: {len(latencies)} latencies for {n} hops")
    return med(latencies), p95(latencies)


def durable_hops(n: int = 2000) -> dict[str, tuple[float, float]]:
    """``durable_hop`` with the worker on another core than the driver and on the same one,
    where the CPUs can be chosen (Linux, two or more); otherwise where the system puts them."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
    if len(cpus) < 2:
        return {"unpinned": durable_hop(n)}
    return {
        "across cores": durable_hop(n, (cpus[0], cpus[1])),
        "on one core": durable_hop(n, (cpus[0], cpus[0])),
    }


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# -- measuring one run ----------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    cpu: float
    run: float
    tasks: int
    floor: float
    floor_wall: float
    floor_cpu: float
    latencies: list[float] = field(default_factory=list)
    plain: float | None = None
    plain_wall: float | None = None
    plain_cpu: float | None = None
    #: hello: the floor process's wall time with SQLAlchemy imported too (``HELLO_STORE_IMPORTS``)
    floor_sqlalchemy_wall: float | None = None


def compile_bytecode() -> str:
    """Compile phloem's modules and the workloads ahead, as ``pip install`` does for an
    installed package: an editable install under ``PYTHONDONTWRITEBYTECODE`` would otherwise
    compile every module from source in every measured process (about 120 ms of hello), a
    cost no installed phloem pays. The floor's processes import phloem too and get the same
    bytecode. Returns a line saying what was done."""
    import compileall

    import phloem

    package = Path(phloem.__file__).parent
    ok = all(
        compileall.compile_dir(str(d), quiet=1, workers=1) for d in (package, ROOT / "benchmarks")
    )
    state = "compiled ahead" if ok else "compiled ahead, with errors (see above)"
    return f"bytecode: phloem and the workloads {state}, as an installed package has them"


def launcher() -> tuple[list[str], str]:
    """How a user starts a run: the ``phloem run`` command if it works, else ``phloem.run``."""
    exe = shutil.which(
        "phloem",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    if exe:
        probe = subprocess.run([exe, "run", "--help"], capture_output=True, cwd=ROOT)
        if probe.returncode == 0:
            return [exe, "run"], "phloem run benchmarks/workloads.py:NAME"
    code = "import sys, phloem; phloem.run(sys.argv[1])"
    return [sys.executable, "-c", code], (
        "python -c \"import phloem; phloem.run('benchmarks/workloads.py:NAME')\" "
        "(no working `phloem run` command yet)"
    )


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server for one measurement, dropped afterwards."""
    import sqlalchemy as sa

    schema = "bench_" + secrets.token_hex(5)
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@contextmanager
def store_url(home: Path, db_url: str | None) -> Iterator[str]:
    if db_url:
        with pg_schema(db_url) as url:
            yield url
    else:
        yield f"sqlite:///{home / 'phloem.db'}"


def clean_env(home: Path, url: str, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHLOEM_")}
    env.update(
        PHLOEM_HOME=str(home), PHLOEM_WORKERS=str(WORKERS), PHLOEM_BENCH_OUT=str(home / "out")
    )
    if db_url:
        env["PHLOEM_DB_URL"] = url
    return env


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and all its children, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        )
    return wall, cpu, proc.stdout


def plain_run(
    name: str, workdir: Path, durable: bool, imports: tuple[str, ...] = ()
) -> tuple[float, float, float]:
    """(wall and CPU time of the fresh process, time of the functions inside it); with ``durable``,
    each task is followed by the floor's SQLite writes (to a fresh file in ``workdir``);
    ``imports`` are imported first, inside the timed process."""
    workdir.mkdir(parents=True)
    cmd = [sys.executable, str(HERE / "run.py"), "--plain", name]
    if durable:
        cmd += ["--durable", str(workdir / "floor.db")]
    for module in imports:
        cmd += ["--import", module]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHLOEM_")}
    env["PHLOEM_BENCH_OUT"] = str(workdir / "out")
    wall, cpu, out = timed(cmd, env)
    return wall, cpu, json.loads(out.strip().splitlines()[-1])["seconds"]


def chain_latencies(store: Any, run_id: str, order: dict[str, int]) -> list[float]:
    rows = [a for a in store.attempts(run_id) if a.state == "success"]
    rows.sort(key=lambda a: order[a.task_id])
    return [b.started_at - a.ended_at for a, b in itertools.pairwise(rows)]


def measure(name: str, cmd: list[str], db_url: str | None) -> Sample:
    from phloem.store import SqlStore

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import workloads

    home = Path(tempfile.mkdtemp(prefix=f"phloem-bench-{name}-"))
    try:
        with store_url(home, db_url) as url:
            wall, cpu, _ = timed([*cmd, f"{WORKLOADS_FILE}:{name}"], clean_env(home, url, db_url))
            store = SqlStore(url)
            try:
                run = store.list_runs(limit=1)[0]
                if run.state.value != "success" or run.started_at is None or not run.ended_at:
                    raise SystemExit(f"{name}: run {run.run_id} ended {run.state.value}")
                tasks = len(store.load_instances(run.run_id))
                lat: list[float] = []
                if name == "W2":
                    order = {t: s.index for t, s in workloads.W2.spec.tasks.items()}
                    lat = chain_latencies(store, run.run_id, order)
            finally:
                store.close()
        floor_wall, floor_cpu, floor = plain_run(name, home / "floor", durable=True)
        sample = Sample(
            wall, cpu, run.ended_at - run.started_at, tasks, floor, floor_wall, floor_cpu, lat
        )
        if name == "W3":
            sample.plain_wall, sample.plain_cpu, sample.plain = plain_run(
                name, home / "plain", durable=False
            )
        if name == "hello":
            sample.floor_sqlalchemy_wall = plain_run(
                name, home / "floor-sqlalchemy", durable=True, imports=HELLO_STORE_IMPORTS
            )[0]
        return sample
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- reporting ------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def hop_lines(hops: dict[str, tuple[float, float]], txn: float) -> list[str]:
    """``durable_hops``' figures as printed next to the durable transaction."""
    return [
        f"durable hop (worker -> driver commit -> worker), {where}: median {m * 1e6:.1f} µs = "
        f"{m / txn:.1f}x one durable transaction, p95 {p * 1e6:.1f} µs"
        for where, (m, p) in hops.items()
    ]


def hop_context(hops: dict[str, tuple[float, float]], txn: float) -> str:
    """The hop floor as a ratio, for the W2 latency target's line."""
    ratios = ", ".join(f"{m / txn:.1f}x {where}" for where, (m, _) in hops.items())
    return f"(the durable hop floor alone is {ratios})"


def summarize(
    name: str,
    samples: list[Sample],
    txn: float,
    hops: dict[str, tuple[float, float]] | None = None,
) -> tuple[list[str], list[str]]:
    """One table row, and the target lines for this workload (``hops``: ``durable_hops``,
    printed next to the W2 latency target)."""
    wall = med([s.wall for s in samples])
    cpu = med([s.cpu for s in samples])
    run = med([s.run for s in samples])
    floor = med([s.floor for s in samples])
    floor_wall = med([s.floor_wall for s in samples])
    tasks = samples[0].tasks
    overhead = (run - floor) / tasks
    row = [
        name,
        str(tasks),
        f"{wall:.3f}",
        f"{cpu:.3f}",
        f"{run:.3f}",
        f"{floor * 1e3:.1f}",
        f"{floor_wall:.3f}",
        f"{run / floor:.1f}x",
        f"{overhead * 1e3:.3f}",
    ]
    targets = []
    limit = WALL_TARGETS[name]
    if limit is not None:
        targets.append(f"{name}: wall {wall:.3f} s <= {limit:g} s  {verdict(wall <= limit)}")
    if name in ("W1", "W2"):
        targets.append(
            f"{name}: overhead {overhead * 1e3:.3f} ms/task over the floor <= "
            f"{OVERHEAD_TARGET * 1e3:g} ms  {verdict(overhead <= OVERHEAD_TARGET)}"
        )
    if name == "W2":
        m = med([med(s.latencies) for s in samples])
        p = med([p95(s.latencies) for s in samples])
        targets.append(
            f"W2: inter-task latency median {m * 1e3:.2f} ms <= "
            f"{W2_MEDIAN_LATENCY_TARGET * 1e3:g} ms  {verdict(m <= W2_MEDIAN_LATENCY_TARGET)}"
            f"  (p95 {p * 1e3:.2f} ms)"
        )
        ratio = m / txn
        targets.append(
            f"W2: inter-task latency median = {ratio:.0f}x one durable transaction "
            f"({txn * 1e6:.1f} µs) <= {LATENCY_PER_TRANSACTION_TARGET:g}x  "
            f"{verdict(ratio <= LATENCY_PER_TRANSACTION_TARGET)}"
            + (f"  {hop_context(hops, txn)}" if hops else "")
        )
    if name == "hello":
        ratio = wall / floor_wall
        targets.append(
            f"hello: wall {wall:.3f} s vs the floor hello's {floor_wall:.3f} s = {ratio:.2f}x "
            f"<= {HELLO_FLOOR_RATIO_TARGET:g}x  {verdict(ratio <= HELLO_FLOOR_RATIO_TARGET)}"
        )
        line = store_import_line(samples, floor_wall)
        if line:
            targets.append("    " + line)
    if name == "W3":
        pw = med([s.plain_wall for s in samples if s.plain_wall is not None])
        pf = med([s.plain for s in samples if s.plain is not None])
        pc = med([s.plain_cpu for s in samples if s.plain_cpu is not None])
        ratio = wall / pw
        targets.append(
            f"W3: wall {wall:.3f} s vs plain script {pw:.3f} s = {ratio:.2f}x <= "
            f"{W3_PLAIN_RATIO_TARGET:g}x  {verdict(ratio <= W3_PLAIN_RATIO_TARGET)}"
        )
        targets.append(
            f"    run {run:.3f} s vs plain functions {pf:.3f} s = {run / pf:.2f}x; "
            f"CPU {cpu:.3f} s vs {pc:.3f} s = {cpu / pc:.2f}x"
        )
    return row, targets


def store_import_line(samples: list[Sample], floor_wall: float) -> str | None:
    """What the store's library alone adds to the floor's hello, against the hello target
    (None if these samples did not measure it)."""
    walls = [s.floor_sqlalchemy_wall for s in samples if s.floor_sqlalchemy_wall]
    if not walls:
        return None
    wall = med(walls)
    ratio = wall / floor_wall
    where = "already above" if ratio > HELLO_FLOOR_RATIO_TARGET else "within"
    return (
        f"the floor's hello with `import {', '.join(HELLO_STORE_IMPORTS)}` added: {wall:.3f} s = "
        f"{ratio:.2f}x the floor's, {where} the {HELLO_FLOOR_RATIO_TARGET:g}x target before "
        "phloem does anything (its store is built on it)"
    )


def print_table(rows: list[list[str]]) -> None:
    header = [
        "workload",
        "tasks",
        "wall s",
        "cpu s",
        "run s",
        "floor ms",
        "floor wall s",
        "run/floor",
        "overhead ms/task",
    ]
    print_rows(header, rows)


def print_rows(header: list[str], rows: list[list[str]]) -> None:
    """A plain-text table, the first column left-aligned and the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


# -- SQLite and PostgreSQL side by side ----------------------------------------------------------

#: the speed goal: PostgreSQL's overhead per task over the floor at most this times SQLite's
PG_RATIO_TARGET = 2.0
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def overheads(s: Sample) -> tuple[float, float]:
    """(run-time, CPU-time) overhead per task over the floor, in seconds. The CPU figure is the
    phloem process tree's user+sys minus the floor process's, start-up included (so it is
    large per task for a short run); a PostgreSQL server's own CPU is not in it (it runs
    outside the measured process tree)."""
    return (s.run - s.floor) / s.tasks, (s.cpu - s.floor_cpu) / s.tasks


def pg_transaction_and_round_trip(base_url: str, n: int = 1000) -> tuple[float, float]:
    """Medians of one durable PostgreSQL transaction (one UPDATE, COMMIT, with the server's
    own synchronous_commit) and of one round trip (SELECT 1), in seconds: the units that
    PostgreSQL's figures are made of, as ``durable_transaction`` is for SQLite."""
    import sqlalchemy as sa

    with pg_schema(base_url) as url:
        engine = sa.create_engine(url)
        try:
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("CREATE TABLE task (id INTEGER PRIMARY KEY, at DOUBLE PRECISION)")
                cur.execute("INSERT INTO task VALUES (1, 0)")
                raw.commit()
                txn, trip = [], []
                for _ in range(n):
                    t0 = time.perf_counter()
                    cur.execute("UPDATE task SET at = %s WHERE id = 1", (t0,))
                    raw.commit()
                    t1 = time.perf_counter()
                    cur.execute("SELECT 1")
                    cur.fetchall()
                    trip.append(time.perf_counter() - t1)
                    txn.append(t1 - t0)
                raw.rollback()
            finally:
                raw.close()
        finally:
            engine.dispose()
    return med(txn), med(trip)


def compare_stores(names: list[str], cmd: list[str], pg_url: str, repeat: int) -> None:
    """Each workload on SQLite and on PostgreSQL in alternating pairs (the order flips every
    pair, so load that drifts during a run falls on both), medians and paired ratios printed."""
    header = ["workload", "store", "tasks", "wall s", "cpu s", "run s", "floor ms"]
    header += ["overhead ms/task", "process cpu over floor ms/task"]
    rows: list[list[str]] = []
    lines: list[str] = []
    for name in names:
        pairs: list[tuple[Sample, Sample]] = []
        for i in range(repeat):
            order = ("sqlite", "postgres") if i % 2 == 0 else ("postgres", "sqlite")
            got: dict[str, Sample] = {}
            for store in order:
                got[store] = measure(name, cmd, pg_url if store == "postgres" else None)
                o, c = overheads(got[store])
                print(
                    f"  {name} #{i + 1} {store}: wall {got[store].wall:.3f} s, "
                    f"cpu {got[store].cpu:.3f} s, run {got[store].run:.3f} s, "
                    f"overhead {o * 1e3:.3f} ms/task (process cpu over floor {c * 1e3:.3f})",
                    flush=True,
                )
            pairs.append((got["sqlite"], got["postgres"]))
        for k, store in enumerate(("sqlite", "postgres")):
            ss = [p[k] for p in pairs]
            rows.append(
                [
                    name,
                    store,
                    str(ss[0].tasks),
                    f"{med([s.wall for s in ss]):.3f}",
                    f"{med([s.cpu for s in ss]):.3f}",
                    f"{med([s.run for s in ss]):.3f}",
                    f"{med([s.floor for s in ss]) * 1e3:.1f}",
                    f"{med([overheads(s)[0] for s in ss]) * 1e3:.3f}",
                    f"{med([overheads(s)[1] for s in ss]) * 1e3:.3f}",
                ]
            )
        run_ratio = med([overheads(pg)[0] / overheads(sq)[0] for sq, pg in pairs])
        cpu_ratio = med([overheads(pg)[1] / overheads(sq)[1] for sq, pg in pairs])
        wall_ratio = med([pg.wall / sq.wall for sq, pg in pairs])
        lines.append(
            f"{name}: PostgreSQL/SQLite overhead per task = {run_ratio:.2f}x (median of "
            f"{len(pairs)} paired ratios) <= {PG_RATIO_TARGET:g}x  "
            f"{verdict(run_ratio <= PG_RATIO_TARGET)};  CPU overhead {cpu_ratio:.2f}x, "
            f"process wall {wall_ratio:.2f}x"
        )
    print()
    print_rows(header, rows)
    print()
    for line in lines:
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated workloads (default: all; W1,W2 with --db-url)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per workload; medians reported")
    ap.add_argument("--db-url", help="a PostgreSQL URL; each run gets a fresh schema there")
    ap.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_PG_URL,
        metavar="URL",
        help="run W1 and W2 on SQLite and on PostgreSQL (default URL "
        f"{DEFAULT_PG_URL}; a fresh schema per run) in alternating pairs and print both "
        "overheads per task and their ratio",
    )
    ap.add_argument(
        "--threads",
        type=int,
        help="set OMP/OpenBLAS/MKL threads per process (both phloem and plain runs); "
        "default: left to the libraries, as a user would",
    )
    ap.add_argument("--plain", help=argparse.SUPPRESS)  # internal: one plain-Python run
    ap.add_argument("--durable", help=argparse.SUPPRESS)
    ap.add_argument("--import", dest="imports", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain:
        plain_main(args.plain, args.durable, tuple(args.imports))
        return 0
    default = "W1,W2" if args.db_url or args.postgres else ",".join(ALL)
    names = [n.strip() for n in (args.only or default).split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    if args.threads:
        for var in THREAD_VARS:
            os.environ[var] = str(args.threads)
    print(compile_bytecode())
    cmd, how = launcher()
    print(f"launcher: {how}")
    if args.postgres:
        print(
            f"stores: SQLite and PostgreSQL ({args.postgres}, fresh schema per run) in "
            f"alternating pairs, local executor, {WORKERS} workers, fresh PHLOEM_HOME per run, "
            f"{args.repeat} pairs"
        )
        print("load average before: " + load())
        txn = durable_transaction()
        pg_txn, pg_trip = pg_transaction_and_round_trip(args.postgres)
        print(
            f"one durable transaction: SQLite {txn * 1e6:.1f} µs (WAL, synchronous={SYNCHRONOUS}), "
            f"PostgreSQL {pg_txn * 1e6:.1f} µs (one round trip {pg_trip * 1e6:.1f} µs)"
        )
        compare_stores(names, cmd, args.postgres, args.repeat)
        print("load average after: " + load())
        return 0
    print(
        f"store: {'PostgreSQL (fresh schema per run)' if args.db_url else 'SQLite'}, "
        f"local executor, {WORKERS} workers, fresh PHLOEM_HOME per run, "
        f"median of {args.repeat}"
        + (f", {args.threads} OpenMP/BLAS thread(s) per process" if args.threads else "")
    )
    print("load average before: " + load())
    txn = durable_transaction()
    print(f"one durable SQLite transaction (WAL, synchronous={SYNCHRONOUS}): {txn * 1e6:.1f} µs")
    hops = durable_hops()
    for line in hop_lines(hops, txn):
        print(line)
    rows, targets = [], []
    for name in names:
        samples = []
        for i in range(args.repeat):
            s = measure(name, cmd, args.db_url)
            samples.append(s)
            extra = f", plain script {s.plain_wall:.3f} s" if s.plain_wall else ""
            print(
                f"  {name} #{i + 1}: wall {s.wall:.3f} s, cpu {s.cpu:.3f} s, run {s.run:.3f} s, "
                f"floor {s.floor:.3f} s{extra}",
                flush=True,
            )
        row, lines = summarize(name, samples, txn, hops)
        rows.append(row)
        targets.extend(lines)
    print()
    print_table(rows)
    print()
    for line in targets:
        print(line)
    print("load average after: " + load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
