"""Scheduler figures: discovery of many files, a tick over many scheduled pipelines, the
latency from a schedule's due time to its first task, and task throughput across many runs.

    python benchmarks/scheduler.py [--files 1000] [--pipelines 10000] [--runs 200]
                                   [--db-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Prints figures; asserts nothing (targets in benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

FILE = textwrap.dedent(
    """
    from phloem import pipeline, task

    @task
    def step(x: int = 0) -> int:
        return x + 1

    @pipeline(name="p{i}", schedule="{cron}", start_date="2026-01-01")
    def p():
        step(step())
    """
)


@contextmanager
def database(url: str | None):
    """A throwaway store: a SQLite file, or a fresh PostgreSQL schema."""
    if not url:
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/phloem.db", Path(d)
        return
    import sqlalchemy as sa

    schema = "bench_" + secrets.token_hex(4)
    admin = sa.create_engine(url)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        with tempfile.TemporaryDirectory() as d:
            sep = "&" if "?" in url else "?"
            yield f"{url}{sep}options=-csearch_path%3D{schema}", Path(d)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def env_for(db_url: str, home: Path):
    os.environ["PHLOEM_HOME"] = str(home / "home")
    os.environ["PHLOEM_DB_URL"] = db_url
    from phloem.app import Phloem

    return Phloem.open()


def bench_discovery(files: int, db_url: str | None) -> None:
    from phloem.scheduler import Scheduler, SchedulerConfig

    with database(db_url) as (url, d):
        folder = d / "pipelines"
        folder.mkdir()
        for i in range(files):
            (folder / f"p{i}.py").write_text(FILE.format(i=i, cron="0 2 * * *"))
        env = env_for(url, d)
        sched = Scheduler(env, SchedulerConfig(folder=folder))
        try:
            t = time.perf_counter()
            sched.refresh(time.time())
            first = time.perf_counter() - t
            t = time.perf_counter()
            sched.refresh(time.time())
            again = time.perf_counter() - t
            (folder / "p0.py").write_text(FILE.format(i=0, cron="0 3 * * *"))
            t = time.perf_counter()
            sched.refresh(time.time())
            one = time.perf_counter() - t
        finally:
            sched.pool.close()
        print(
            f"discovery: {files} files parsed in {first:.2f}s ({first / files * 1e3:.1f} ms/file); "
            f"rescan with no change {again * 1e3:.0f} ms; one changed file {one * 1e3:.0f} ms"
        )


def bench_tick(pipelines: int, db_url: str | None) -> None:
    from phloem.scheduler import Scheduler, SchedulerConfig
    from phloem.store.catalog import PipelineInfo

    with database(db_url) as (url, d):
        env = env_for(url, d)
        sched = Scheduler(env, SchedulerConfig(folder=d / "none"))
        now = time.time()
        for i in range(pipelines):  # as if discovered: no need to write 10,000 files here
            info = PipelineInfo(
                f"p{i}",
                f"/nowhere/p{i}.py",
                "h",
                f"{i % 60} * * * *",
                "UTC",
                datetime.now(timezone.utc).isoformat(),
                False,
                16,
                (),
            )
            sched.discovery.pipelines[info.name] = info
        t = time.perf_counter()
        sched.schedule(now)  # first tick: every pipeline computes its next due time
        first = time.perf_counter() - t
        samples = []
        for k in range(200):
            t = time.perf_counter()
            sched.schedule(now + 0.5 + k * 0.01)
            samples.append(time.perf_counter() - t)
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[int(len(samples) * 0.99) - 1]
        sched.pool.close()
        print(
            f"scheduler tick over {pipelines} pipelines: first {first:.2f}s, then p50 "
            f"{p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms (target p99 <= 1 s)"
        )


def bench_latency(db_url: str | None) -> None:
    """From a cron tick (the interval's end) to the run's first task starting."""
    from phloem.scheduler import Scheduler, SchedulerConfig

    with database(db_url) as (url, d):
        folder = d / "pipelines"
        folder.mkdir()
        (folder / "every.py").write_text(
            textwrap.dedent(
                """
            from datetime import timedelta, datetime, timezone
            from phloem import pipeline, task

            @task
            def first() -> int:
                return 1

            @pipeline(schedule=timedelta(seconds=1), start_date="2026-01-01", catchup=False)
            def every():
                first()
            """
            )
        )
        env = env_for(url, d)
        sched = Scheduler(env, SchedulerConfig(folder=folder, tick=0.25))
        sched.run(until=time.time() + 6)
        lat = []
        for run in env.store.list_runs(pipeline="every", limit=100):
            atts = env.store.attempts(run.run_id)
            if atts and atts[0].started_at and run.data_interval_end:
                due = datetime.fromisoformat(run.data_interval_end).timestamp()
                lat.append(atts[0].started_at - due)
        lat.sort()
        if lat:
            print(
                f"cron tick -> first task started: median {statistics.median(lat) * 1e3:.0f} ms,"
                f" max {lat[-1] * 1e3:.0f} ms over {len(lat)} runs (target <= 1 s)"
            )


def bench_throughput(runs: int, db_url: str | None) -> None:
    from phloem.loading import load_pipeline
    from phloem.runs import create_run
    from phloem.scheduler import Scheduler, SchedulerConfig
    from phloem.states import RunState

    with database(db_url) as (url, d):
        folder = d / "pipelines"
        folder.mkdir()
        (folder / "work.py").write_text(
            textwrap.dedent(
                """
            from phloem import pipeline, task

            @task
            def step(x: int = 0) -> int:
                return x + 1

            @pipeline
            def work():
                step(step(step(step(step()))))
            """
            )
        )
        env = env_for(url, d)
        spec = load_pipeline(f"{folder / 'work.py'}:work").spec
        base = datetime(2026, 1, 1, tzinfo=timezone.utc)
        ids = [
            create_run(
                env.store,
                spec,
                None,
                base + timedelta(minutes=i),
                source=f"{folder / 'work.py'}:work",
            ).run_id
            for i in range(runs)
        ]
        sched = Scheduler(env, SchedulerConfig(folder=folder, tick=0.1))
        sched.start()
        t = time.perf_counter()
        try:
            check = time.perf_counter()
            while True:
                sched.step()
                if time.perf_counter() < check:
                    continue
                check = time.perf_counter() + 0.2
                done = sum(
                    1 for r in env.store.list_runs(limit=runs + 10) if r.state is RunState.SUCCESS
                )
                if done == runs:
                    break
        finally:
            sched.shutdown()
        took = time.perf_counter() - t
        tasks = runs * 5
        print(
            f"throughput: {runs} runs x 5 tasks on {'PostgreSQL' if db_url else 'SQLite'} in "
            f"{took:.2f}s = {tasks / took:.0f} tasks/s"
        )
        del ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--pipelines", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--db-url", default=None)
    ap.add_argument("--only", default="discovery,tick,latency,throughput")
    a = ap.parse_args()
    only = set(a.only.split(","))
    if "discovery" in only:
        bench_discovery(a.files, a.db_url)
    if "tick" in only:
        bench_tick(a.pipelines, a.db_url)
    if "latency" in only:
        bench_latency(a.db_url)
    if "throughput" in only:
        bench_throughput(a.runs, a.db_url)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
