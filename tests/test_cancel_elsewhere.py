"""``phloem cancel`` from another process stops a running attempt at once, not at its heartbeat.

The driver runs with an hour's lease, so its attempts' heartbeats come every ten minutes: a
driver that left the stop to them would outlast every wait below.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from phloem.driver.ended import EndWatch
from phloem.store import SqlStore
from phloem.store.schema import runs
from processes import Processes, alive, wait_gone
from receivers import wait_for

PIPELINE = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from phloem import pipeline, task

    HERE = Path(__file__).parent

    @task
    def first() -> int:
        return 1

    @task
    def held(x: int) -> int:
        (HERE / "held.pid").write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)

    @task
    def after(x: int) -> int:
        return x

    @pipeline
    def long_one() -> None:
        after(held(first()))

    @task(retries=1, retry_delay=3600)
    def flaky() -> int:
        raise RuntimeError("not yet")

    @pipeline
    def patient() -> None:
        after(flaky())
    """
)


def _start(
    pipeline: str, tmp_path: Path, processes: Processes, url: str | None
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``phloem run`` of ``pipeline`` with an hour's lease, on ``url`` or the home's SQLite."""
    (tmp_path / "flows.py").write_text(PIPELINE)
    (tmp_path / "home").mkdir()
    env = {**os.environ, "PHLOEM_HOME": str(tmp_path / "home"), "PHLOEM_LEASE_TTL": "3600"}
    env.pop("PHLOEM_DB_URL", None)
    if url is not None:
        env["PHLOEM_DB_URL"] = url
    driver = processes.start(
        [sys.executable, "-m", "phloem", "run", f"{tmp_path / 'flows.py'}:{pipeline}"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return driver, env


def _cancel(run_id: str, env: dict[str, str], stopped: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "phloem", "cancel", run_id, "--reason", "enough"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"{stopped} task instance(s) stopped" in out.stdout


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


def test_cancel_from_another_process_stops_the_running_attempt_now(
    db_url: str | None, tmp_path: Path, processes: Processes
) -> None:
    driver, env = _start("long_one", tmp_path, processes, db_url)
    pid_file = tmp_path / "held.pid"
    wait_for(pid_file.exists, 60, "the held task to start")
    held = int(pid_file.read_text())
    store = SqlStore(db_url or f"sqlite:///{tmp_path / 'home' / 'phloem.db'}")
    try:
        (run,) = store.list_runs()
        # the driver took the lease time from the settings (its attempts beat every 600 s)
        with store.engine.connect() as conn:
            expires = conn.execute(select(runs.c.lease_expires_at)).scalar_one()
        assert expires > time.time() + 600
        _cancel(run.run_id, env, stopped=2)
        stdout, stderr = driver.communicate(timeout=60)  # an hour's heartbeat never came
        assert driver.returncode == 1, stderr  # the run failed
        assert "held" in stdout and "cancelled: enough" in stdout  # the summary says why
        assert wait_gone(lambda: processes.left_by(driver), 20) == []
        assert not alive(held)
        states = {ti.task_id: (ti.state.value, ti.error) for ti in store.load_instances(run.run_id)}
        assert states == {
            "first": ("success", None),
            "held": ("failed", "cancelled: enough"),
            "after": ("failed", "cancelled: enough"),
        }
        assert store.get_run(run.run_id).state.value == "failed"
        # the attempt ended once, as the cancel recorded it: nothing claims to run
        assert [a.state for a in store.attempts(run.run_id, "held")] == ["failed"]
    finally:
        store.close()


def test_cancel_from_another_process_ends_a_driver_waiting_for_a_retry(
    db_url: str | None, tmp_path: Path, processes: Processes
) -> None:
    """Nothing runs: the task waits an hour for its retry. The driver does not wait with it."""
    driver, env = _start("patient", tmp_path, processes, db_url)
    store = SqlStore(db_url or f"sqlite:///{tmp_path / 'home' / 'phloem.db'}")
    try:

        def waiting() -> str | None:
            for run in store.list_runs():
                states = {ti.task_id: ti.state.value for ti in store.load_instances(run.run_id)}
                if states.get("flaky") == "up_for_retry":
                    return run.run_id
            return None

        run_id = wait_for(waiting, 60, "the task to wait for its retry")
        _cancel(run_id, env, stopped=2)
        stdout, stderr = driver.communicate(timeout=60)  # not in an hour
        assert driver.returncode == 1, stderr
        assert "cancelled: enough" in stdout
        assert wait_gone(lambda: processes.left_by(driver), 20) == []
        states = {ti.task_id: (ti.state.value, ti.error) for ti in store.load_instances(run_id)}
        assert states == {
            "flaky": ("failed", "cancelled: enough"),
            "after": ("failed", "cancelled: enough"),
        }
        tries = [a.state.value for a in store.attempts(run_id, "flaky")]
        assert tries == ["up_for_retry"]  # its one try; the retry never ran
    finally:
        store.close()


class _Catalog:
    def __init__(self, ended: set[str] | Exception) -> None:
        self.ended = ended
        self.asked: list[list[str]] = []

    def ended_runs(self, run_ids: list[str]) -> set[str]:
        self.asked.append(list(run_ids))
        if isinstance(self.ended, Exception):
            raise self.ended
        return self.ended & set(run_ids)


def test_the_watch_asks_at_most_once_per_period_and_survives_a_store_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    catalog = _Catalog({"b"})
    watch = EndWatch(catalog, every=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert watch.due_in() == 1.0
    assert watch.ended(["a", "b"]) == set() and catalog.asked == []  # not due yet
    now[0] = 101.0
    assert watch.due_in() == 0.0
    assert watch.ended(["a", "b"]) == {"b"}
    assert watch.ended(["a", "b"]) == set() and len(catalog.asked) == 1  # asked once
    now[0] = 102.5
    assert watch.ended([]) == set() and len(catalog.asked) == 1  # nothing out: no query
    catalog.ended = OSError("database is down")
    now[0] = 104.0
    assert watch.ended(["a"]) == set()
    now[0] = 105.0
    assert watch.ended(["a"]) == set()
    assert [r.getMessage() for r in caplog.records].count(
        "could not look for cancelled runs (database is down); retrying"
    ) == 1  # once per outage
    catalog.ended = {"a"}
    now[0] = 106.0
    assert watch.ended(["a"]) == {"a"}
