"""Does the API slow the scheduler? Scheduler throughput and cron-tick latency with
``phloem scheduler`` alone, then with ``phloem server`` idle, then while clients call its API.

    python benchmarks/server.py [--runs 300] [--clients 8] [--seconds 8] [--repeat 3]
                                [--db-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each scenario starts the real command as a process, queues ``--runs`` runs of a 5-task chain
and times them to the end (tasks/s), with the CPU time the scheduler and its workers used per
task and, under ``server``, the CPU time of the API process. Then, for ``--seconds`` with no
backlog, a pipeline scheduled every second gives the latency from each interval's end to its
run being created and to its first task starting (the scheduler loop's latency). Under load,
``--clients`` threads send API requests in a loop (pipelines list and detail, a page of runs,
an event stream opened and closed) from a process at the API's priority; the figures include
the requests per second they got while the runs went. ``--repeat N`` alternates the three
scenarios N times and prints medians, and each round's throughput against the same round's
scheduler alone (paired). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scheduler import database

from phloem.server.process import yield_cpus

FILES = {
    "work.py": """
        from phloem import pipeline, task

        @task
        def step(x: int = 0) -> int:
            return x + 1

        @pipeline
        def work():
            step(step(step(step(step()))))
    """,
    "every.py": """
        from datetime import timedelta
        from phloem import pipeline, task

        @task
        def first() -> int:
            return 1

        @pipeline(schedule=timedelta(seconds=1), start_date="2026-01-01", catchup=False)
        def every():
            first()
    """,
}


def _cpu(pid: int, *, tree: bool = True) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and, with ``tree``, by every process
    below it (the scheduler's workers), read from /proc; 0 where there is no /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        if tree:
            todo.extend(c for c, (parent, _) in stats.items() if parent == p)
    return total


def _start(mode: str, env: dict[str, str], folder: Path) -> tuple[subprocess.Popen[str], str, int]:
    args = [
        sys.executable,
        "-m",
        "phloem",
        mode,
        "--pipelines",
        str(folder),
        "--parse-interval",
        "1",
    ]
    if mode == "server":
        args += ["--port", "0"]
    proc = subprocess.Popen(
        args,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        process_group=0,  # its own group (stopped as one), in this session's CPU share
    )
    url, scheduler = "", proc.pid
    if mode == "server":
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.search(r"phloem server: (http://\S+?)/api/v1.*scheduler pid (\d+)", line)
            if m:
                url, scheduler = m.group(1), int(m.group(2))
                break
    threading.Thread(target=lambda: proc.stderr and proc.stderr.read(), daemon=True).start()
    return proc, url, scheduler


def _load_process(url: str, token: str, clients: int, counter: Any) -> None:
    """The clients, in a process of their own at the API's priority (``yield_cpus``): on a
    real deployment they run elsewhere, so they must not take the scheduler's CPU here. They
    stay in this session (as the server does): Linux shares the CPUs fairly between sessions
    (autogroups) before niceness counts, so clients in a session of their own would take up
    to half the machine whatever their niceness."""
    yield_cpus()
    stop = threading.Event()
    counts = [0] * clients
    _load(url, token, clients, stop, counts)
    while True:
        time.sleep(0.2)
        counter.value = sum(counts)


def _load(url: str, token: str, clients: int, stop: threading.Event, counts: list[int]) -> None:
    import httpx

    # what a few open browser tabs ask: listings, a pipeline's page, and event streams
    paths = [
        "/api/v1/pipelines",
        "/api/v1/pipelines/work",
        "/api/v1/runs?limit=50",
        "/api/v1/events",
    ]

    def client(k: int) -> None:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as c:
            i = k
            while not stop.is_set():
                path = paths[i % len(paths)]
                try:
                    if "events" in path:
                        with c.stream("GET", path) as r:
                            for _ in r.iter_lines():
                                break  # the first lines; then hang up
                    else:
                        c.get(path)
                    counts[k] += 1
                except httpx.HTTPError:
                    pass
                i += 1

    for k in range(clients):
        threading.Thread(target=client, args=(k,), daemon=True).start()


@dataclass(frozen=True)
class Result:
    name: str
    tasks_per_s: float
    tick: float  # median seconds from a cron tick to its first task
    cpu_per_task: float  # ms of CPU, scheduler and its workers
    api_cpu: float  # seconds of CPU the API process used while the runs went
    line: str


def scenario(mode: str, runs: int, clients: int, seconds: float, db_url: str | None) -> Result:
    from phloem.accounts import manage
    from phloem.app import Phloem
    from phloem.config import Settings
    from phloem.errors import PipelineNotFound
    from phloem.loading import load_pipeline
    from phloem.runs import create_run
    from phloem.scheduler.wakeup import notify_all
    from phloem.states import RunState

    with database(db_url) as (url, d):
        folder = d / "pipelines"
        folder.mkdir()
        for name, text in FILES.items():
            (folder / name).write_text(textwrap.dedent(text))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHLOEM_")}
        env.update(PHLOEM_HOME=str(d / "home"), PHLOEM_DB_URL=url, PHLOEM_WORKERS="2")
        app = Phloem(Settings.from_env(environ=env))
        store = app.store
        proc, server_url, sched_pid = _start(mode, env, folder)
        counter = mp.get_context("fork").Value("q", 0)
        loader = None
        try:
            deadline = time.monotonic() + 60
            while True:  # until the scheduler has read the folder
                try:
                    store.catalog.pipeline("work")
                    break
                except PipelineNotFound:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit(f"{mode} did not start") from None
                    time.sleep(0.1)
            if mode == "server" and clients:
                if store.accounts.user("bench") is None:
                    manage.add_user(app, "bench", "viewer", "bench password")
                token, _ = manage.create_token(app, "bench", "bench")
                loader = mp.get_context("fork").Process(
                    target=_load_process, args=(server_url, token, clients, counter), daemon=True
                )
                loader.start()
                time.sleep(1.0)  # the load is on before the clock starts
            spec = load_pipeline(f"{folder / 'work.py'}:work").spec
            base = datetime(2026, 1, 1, tzinfo=timezone.utc)
            started_at = time.time()
            c0 = counter.value
            cpu0, api0 = _cpu(sched_pid), _cpu(proc.pid, tree=False)
            t = time.perf_counter()
            for i in range(runs):
                create_run(
                    store,
                    spec,
                    None,
                    base + timedelta(minutes=i),
                    source=f"{folder / 'work.py'}:work",
                )
            notify_all(app.home, store)
            while True:
                done = sum(
                    1
                    for r in store.list_runs("work", limit=runs + 10)
                    if r.state is RunState.SUCCESS
                )
                if done == runs:
                    break
                time.sleep(0.05)
            took = time.perf_counter() - t
            busy_requests = counter.value - c0
            cpu = _cpu(sched_pid) - cpu0
            api_cpu = _cpu(proc.pid, tree=False) - api0 if mode == "server" else 0.0
            # then a while with no backlog (the API still under load): each cron tick's run
            # should start at once, so what its latency shows is the scheduler's loop
            quiet_from = time.time()
            time.sleep(seconds)
            requests = counter.value - c0
            window = time.time() - started_at
            lat, made = [], []
            for run in store.list_runs("every", limit=500):
                if run.data_interval_end is None:
                    continue
                due = datetime.fromisoformat(run.data_interval_end).timestamp()
                if not quiet_from <= due <= quiet_from + seconds - 1:
                    continue
                made.append(run.created_at - due)
                atts = store.attempts(run.run_id)
                if atts and atts[0].started_at:
                    lat.append(atts[0].started_at - due)
        finally:
            if loader is not None:
                loader.kill()
                loader.join()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            app.close()
        lat.sort()
        tick = (
            f"cron tick -> run created: median {statistics.median(made) * 1e3:.0f} ms; "
            f"-> first task: median {statistics.median(lat) * 1e3:.0f} ms, "
            f"max {lat[-1] * 1e3:.0f} ms ({len(lat)} ticks)"
            if lat
            else "cron tick: no ticks in the window"
        )
        load = (
            f", API {busy_requests / took:.0f} req/s while the runs went and "
            f"{requests / window:.0f} over the window, from {clients} clients"
            if requests
            else ""
        )
        return Result(
            f"{mode}{f' + {clients} clients' if clients else ''}",
            runs * 5 / took,
            statistics.median(lat) if lat else float("nan"),
            cpu * 1e3 / (runs * 5),
            api_cpu,
            f"{mode:9} {runs * 5 / took:6.0f} tasks/s ({runs} runs in {took:.2f}s; scheduler "
            f"and workers {cpu * 1e3 / (runs * 5):.2f} ms CPU/task"
            + (f", API process {api_cpu:.2f} s CPU" if mode == "server" else "")
            + f"); {tick}{load}",
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--db-url", default=None)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the three scenarios, alternated; medians at the end",
    )
    a = ap.parse_args()
    print(f"store: {'PostgreSQL' if a.db_url else 'SQLite'}; {os.cpu_count()} CPUs")
    results: dict[str, list[Result]] = {}
    for _ in range(a.repeat):
        for mode, clients in (("scheduler", 0), ("server", 0), ("server", a.clients)):
            r = scenario(mode, a.runs, clients, a.seconds, a.db_url)
            results.setdefault(r.name, []).append(r)
            print(r.line, flush=True)
    if a.repeat > 1:
        print(f"medians of {a.repeat} alternated rounds (vs the scheduler alone):")
        base = results["scheduler"]
        for name, rs in results.items():
            tps = statistics.median(r.tasks_per_s for r in rs)
            tick = statistics.median(r.tick for r in rs)
            cpu = statistics.median(r.cpu_per_task for r in rs)
            # paired: each round's figure against the same round's scheduler alone
            pairs = zip(rs, base, strict=True)
            ratio = statistics.median(r.tasks_per_s / b.tasks_per_s for r, b in pairs)
            print(
                f"  {name:20} {tps:6.0f} tasks/s ({ratio - 1:+.0%} paired), tick median "
                f"{tick * 1e3:.0f} ms, {cpu:.2f} ms CPU/task"
            )


if __name__ == "__main__":
    main()
