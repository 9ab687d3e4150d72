"""Fill a store with a realistic history, for the API's load benchmark (api_load.py).

    python benchmarks/fill_store.py sqlite:////tmp/big/phloem.db [--runs 100000] [--tasks 10]
    python benchmarks/fill_store.py postgresql+psycopg://postgres@127.0.0.1:5432/test

Writes ``--runs`` runs over ``--pipelines`` pipelines (two years of daily and hourly logical
dates, newest mostly succeeded, some failed, a few running or queued; scheduled, manual,
backfill and asset-triggered), ``--tasks`` task instances each (so 1,000,000 by default), one
attempt and a few events per instance, asset events, and one run named ``mapped-1000`` whose
task ``fit`` is mapped over 1,000 instances. Rows go in batches of ``--batch`` per statement
inside large transactions, the way a bulk load should; it prints how long each table took.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Table, text

from phloem.store import open_store
from phloem.store import schema as s

EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
MAPPED_RUN = "mapped-1000"
RUN_STATES = [("success", 0.86), ("failed", 0.1), ("running", 0.03), ("queued", 0.01)]
RUN_TYPES = [("scheduled", 0.8), ("manual", 0.1), ("backfill", 0.08), ("asset", 0.02)]
TASK_SECONDS = (0.2, 600.0)


def pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def task_states(rng: random.Random, run_state: str, n: int) -> list[str]:
    if run_state == "success":
        return ["success" if rng.random() > 0.05 else "cached" for _ in range(n)]
    if run_state == "queued":
        return ["pending"] * n
    cut = rng.randrange(n)
    if run_state == "failed":
        return ["success"] * cut + ["failed"] + ["upstream_failed"] * (n - cut - 1)
    return ["success"] * cut + ["running"] + ["pending"] * (n - cut - 1)


def generate(args: argparse.Namespace) -> Iterator[tuple[Table, dict[str, Any]]]:
    """Rows, table by table, in the order they are inserted."""
    rng = random.Random(args.seed)
    span = 2 * 365 * 86400.0
    for i in range(args.runs):
        pipeline = f"pipeline_{i % args.pipelines:03d}"
        hourly = (i % args.pipelines) % 4 == 0
        k = i // args.pipelines
        logical = EPOCH + (timedelta(hours=k) if hourly else timedelta(days=k))
        created = EPOCH.timestamp() + span * i / args.runs + rng.random()
        state = pick(rng, RUN_STATES) if i < args.runs - 200 else pick(rng, RUN_STATES[:3])
        run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(created))}-{i:012x}"
        started = created + rng.uniform(0, 5)
        t = started
        states = task_states(rng, state, args.tasks)
        for j, ts in enumerate(states):
            took = rng.uniform(*TASK_SECONDS) if ts in ("success", "failed", "running") else 0.0
            begun = None if ts in ("pending", "upstream_failed", "cached") else t
            ended = None if begun is None or ts == "running" else t + took
            yield s.task_instances, {
                "run_id": run_id,
                "task_id": f"task_{j:02d}",
                "map_index": -1,
                "state": ts,
                "try_number": 1 if begun is not None else 0,
                "retry_base": 0,
                "started_at": begun,
                "ended_at": ended,
                "first_started_at": begun,
                "output": '{"v": 1}' if ts == "success" else None,
                "error": "ValueError: bad input row 17" if ts == "failed" else None,
                "pool": "default",
                "pool_slots": 1,
            }
            if begun is not None:
                yield s.attempts, {
                    "run_id": run_id,
                    "task_id": f"task_{j:02d}",
                    "map_index": -1,
                    "try_number": 1,
                    "state": "running" if ts == "running" else ts,
                    "queued_at": begun,
                    "started_at": begun,
                    "ended_at": ended,
                    "heartbeat_at": ended or begun,
                }
            t = ended or t
        ended_run = t if state in ("success", "failed") else None
        yield s.runs, {
            "run_id": run_id,
            "pipeline": pipeline,
            "state": state,
            "logical_date": iso(logical),
            "data_interval_start": iso(logical),
            "data_interval_end": iso(logical + (timedelta(hours=1) if hourly else timedelta(1))),
            "params": "{}",
            "run_type": pick(rng, RUN_TYPES),
            "source": f"/srv/pipelines/{pipeline}.py:{pipeline}",
            "code_hash": "0" * 16,
            "created_at": created,
            "started_at": None if state == "queued" else started,
            "ended_at": ended_run,
        }
        yield s.events, {"run_id": run_id, "new_state": "queued", "at": created, "reason": "new"}
        if state != "queued":
            yield s.events, {
                "run_id": run_id,
                "old_state": "queued",
                "new_state": state if ended_run is not None else "running",
                "at": ended_run or started,
            }
        if state == "success" and i % 7 == 0:
            yield s.asset_events, {
                "asset": f"warehouse.table_{i % 40:02d}",
                "run_id": run_id,
                "task_id": f"task_{args.tasks - 1:02d}",
                "at": t,
            }
    now = time.time()
    yield s.runs, {
        "run_id": MAPPED_RUN,
        "pipeline": "mapped",
        "state": "success",
        "logical_date": iso(datetime.now(timezone.utc)),
        "params": "{}",
        "run_type": "manual",
        "created_at": now,
        "started_at": now,
        "ended_at": now + 60,
    }
    for m in range(1000):
        yield s.task_instances, {
            "run_id": MAPPED_RUN,
            "task_id": "fit",
            "map_index": m,
            "state": "success" if m % 100 else "failed",
            "try_number": 1,
            "retry_base": 0,
            "started_at": now + m * 0.05,
            "ended_at": now + m * 0.05 + 1,
            "first_started_at": now + m * 0.05,
            "output": str(m),
            "pool": "default",
            "pool_slots": 1,
        }


def fill(conn: Connection, args: argparse.Namespace) -> dict[str, int]:
    batches: dict[str, list[dict[str, Any]]] = {}
    tables = {t.name: t for t in (s.runs, s.task_instances, s.attempts, s.events, s.asset_events)}
    counts = dict.fromkeys(tables, 0)
    columns = {name: [c.name for c in t.columns if c.name != "id"] for name, t in tables.items()}
    for table, row in generate(args):
        name = table.name
        full = dict.fromkeys(columns[name])
        full.update(row)
        batch = batches.setdefault(name, [])
        batch.append(full)
        if len(batch) >= args.batch:
            conn.execute(table.insert(), batch)
            counts[name] += len(batch)
            batch.clear()
    for name, batch in batches.items():
        if batch:
            conn.execute(tables[name].insert(), batch)
            counts[name] += len(batch)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db_url")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--tasks", type=int, default=10, help="task instances per run")
    ap.add_argument("--pipelines", type=int, default=50)
    ap.add_argument("--batch", type=int, default=5000, help="rows per INSERT")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    store = open_store(args.db_url)
    try:
        with store.engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM runs")).scalar():
                where = store.display_url
                print(f"{where} holds runs already; fill an empty store", file=sys.stderr)
                return 2
        began = time.perf_counter()
        with store.engine.begin() as conn:
            counts = fill(conn, args)
        took = time.perf_counter() - began
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))  # fresh statistics, as a long-lived store has
    finally:
        store.close()
    rows = sum(counts.values())
    print(f"filled {store.display_url} in {took:.1f} s ({rows / took:,.0f} rows/s)")
    for name, n in counts.items():
        print(f"  {name:15} {n:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
