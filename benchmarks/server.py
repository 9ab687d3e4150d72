"""Does the API slow the scheduler? Scheduler throughput and cron-tick latency with
``phloem scheduler`` alone, then with ``phloem server`` while clients hammer its API.

    python benchmarks/server.py [--runs 100] [--clients 8] [--seconds 8]
                                [--db-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Both runs start the real command as a process, queue ``--runs`` runs of a 5-task chain and
time them to the end (tasks/s); a pipeline scheduled every second meanwhile gives the latency
from each interval's end to its first task starting. Under ``server``, ``--clients`` threads
send API requests in a loop (pipelines list and detail, a page of runs, an event stream
opened and closed); the figures include the requests per second they got. Prints figures;
asserts nothing.
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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scheduler import database

#: the load generator's niceness, the same as the server gives its API (``API_NICE``)
LOAD_NICE = 5

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


def _start(mode: str, env: dict[str, str], folder: Path) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "phloem", mode, "--pipelines", str(folder),
            "--parse-interval", "1"]
    if mode == "server":
        args += ["--port", "0"]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    url = ""
    if mode == "server":
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.search(r"phloem server: (http://\S+?)/api/v1", line)
            if m:
                url = m.group(1)
                break
    threading.Thread(target=lambda: proc.stderr and proc.stderr.read(), daemon=True).start()
    return proc, url


def _load_process(url: str, token: str, clients: int, counter: Any) -> None:
    """The clients, in a process of their own at the API's priority (``LOAD_NICE``): on a
    real deployment they run elsewhere, so they must not take the scheduler's CPU here."""
    os.nice(LOAD_NICE)
    stop = threading.Event()
    counts = [0] * clients
    _load(url, token, clients, stop, counts)
    while True:
        time.sleep(0.2)
        counter.value = sum(counts)


def _load(url: str, token: str, clients: int, stop: threading.Event, counts: list[int]) -> None:
    import httpx

    # what a few open browser tabs ask: listings, a pipeline's page, and event streams
    paths = ["/api/v1/pipelines", "/api/v1/pipelines/work", "/api/v1/runs?limit=50",
             "/api/v1/events"]

    def client(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as c:
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


def scenario(mode: str, runs: int, clients: int, seconds: float, db_url: str | None) -> str:
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
        proc, server_url = _start(mode, env, folder)
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
            t = time.perf_counter()
            for i in range(runs):
                create_run(store, spec, None, base + timedelta(minutes=i),
                           source=f"{folder / 'work.py'}:work")
            notify_all(app.home, store)
            while True:
                done = sum(1 for r in store.list_runs("work", limit=runs + 10)
                           if r.state is RunState.SUCCESS)
                if done == runs:
                    break
                time.sleep(0.05)
            took = time.perf_counter() - t
            rest = seconds - (time.time() - started_at)
            if rest > 0:
                time.sleep(rest)
            requests = counter.value - c0
            window = time.time() - started_at
            lat = []
            for run in store.list_runs("every", limit=500):
                if run.data_interval_end is None:
                    continue
                due = datetime.fromisoformat(run.data_interval_end).timestamp()
                if due < started_at:
                    continue
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
            f"cron tick -> first task: median {statistics.median(lat) * 1e3:.0f} ms, "
            f"max {lat[-1] * 1e3:.0f} ms ({len(lat)} ticks)"
            if lat
            else "cron tick: no ticks in the window"
        )
        load = f", API {requests / window:.0f} req/s from {clients} clients" if requests else ""
        return f"{mode:9} {runs * 5 / took:6.0f} tasks/s ({runs} runs in {took:.2f}s); {tick}{load}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--db-url", default=None)
    a = ap.parse_args()
    print(f"store: {'PostgreSQL' if a.db_url else 'SQLite'}; {os.cpu_count()} CPUs")
    print(scenario("scheduler", a.runs, 0, a.seconds, a.db_url), flush=True)
    print(scenario("server", a.runs, 0, a.seconds, a.db_url), flush=True)
    print(scenario("server", a.runs, a.clients, a.seconds, a.db_url), flush=True)


if __name__ == "__main__":
    main()
