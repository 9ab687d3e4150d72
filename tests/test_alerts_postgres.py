"""Alerts under several schedulers on the real PostgreSQL server: each alert is delivered
once, though two schedulers see the same runs, a receiver is down for a while, and the
schedulers are killed and started again in between."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from phloem.loading import load_pipeline
from phloem.runs import create_run
from phloem.states import RunState
from phloem.store import SqlStore
from processes import Processes
from receivers import free_port, http_receiver, wait_for

pytestmark = pytest.mark.postgres

PIPELINE = textwrap.dedent(
    """
    from phloem import pipeline, task
    from phloem.alerts import on_failure, on_retry, webhook

    URL = "{url}"

    @task(retries=1)
    def broken(i: int) -> int:
        raise RuntimeError(f"item {{i}} is broken")

    @pipeline(alerts=[on_failure(webhook(URL)), on_retry(webhook(URL))])
    def nightly(i: int = 0):
        broken(i)
    """
)
RUNS = 12


def _schedulers(
    processes: Processes, n: int, folder: Path, home: Path, db_url: str, logs: Path
) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PHLOEM_DB_URL": db_url, "PHLOEM_HOME": str(home), "PHLOEM_WORKERS": "2"}
    procs = []
    for k in range(n):
        with open(logs / f"scheduler-{k}.log", "w") as log:
            args = [sys.executable, "-m", "phloem", "scheduler", "--pipelines", str(folder)]
            procs.append(processes.start(args, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def test_two_schedulers_and_a_restart_deliver_each_alert_once(
    pg_url: str, tmp_path: Path, processes: Processes
) -> None:
    folder, home = tmp_path / "pipelines", tmp_path / "home"
    folder.mkdir()
    port = free_port()  # the receiver is down: nothing listens here yet
    url = f"http://127.0.0.1:{port}/hook"
    (folder / "nightly.py").write_text(PIPELINE.format(url=url))
    source = f"{folder / 'nightly.py'}:nightly"
    store = SqlStore(pg_url)
    spec = load_pipeline(source).spec
    runs = [
        create_run(store, spec, {"i": i}, f"2026-02-{i + 1:02d}", source=source).run_id
        for i in range(RUNS)
    ]
    (tmp_path / "a").mkdir()
    first = _schedulers(processes, 2, folder, home, pg_url, tmp_path / "a")
    try:
        wait_for(
            lambda: all(store.get_run(r).state is RunState.FAILED for r in runs),
            timeout=180,
            what="every run to fail",
        )
        # every alert is recorded (once: more would fail below), and the receiver being down
        # has been noticed; the last run's alert is recorded just after its end commits
        wait_for(
            lambda: len(store.alerts.history(limit=100)) == 2 * RUNS,
            timeout=60,
            what="every alert recorded",
        )
        wait_for(
            lambda: any(d.tries for d in store.alerts.history(limit=100)),
            timeout=60,
            what="a failed delivery",
        )
        history = store.alerts.history(limit=100)
        assert len(history) == 2 * RUNS
        assert {d.state for d in history} == {"pending"}
    finally:
        first[0].kill()  # one dies without a word, the other stops as asked
        processes.stop(*first)
    with http_receiver(port) as hook:
        (tmp_path / "b").mkdir()
        second = _schedulers(processes, 2, folder, home, pg_url, tmp_path / "b")
        try:
            wait_for(
                lambda: all(d.state == "sent" for d in store.alerts.history(limit=100)),
                timeout=180,
                what="every alert to be sent",
            )
            time.sleep(1.0)  # nothing more arrives after the records say sent
        finally:
            processes.stop(*second)
        got = collections.Counter((b["run_id"], b["kind"]) for b in hook.bodies)
    assert set(got) == {(r, k) for r in runs for k in ("failure", "retry")}
    assert set(got.values()) == {1}, got
    store.close()
