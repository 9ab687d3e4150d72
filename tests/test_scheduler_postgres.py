"""Several schedulers on the real PostgreSQL server share the work without duplicating it."""

from __future__ import annotations

import itertools
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from phloem.loading import load_pipeline
from phloem.runs import create_run
from phloem.states import RunState
from phloem.store import SqlStore
from processes import Processes, wait_gone

pytestmark = pytest.mark.postgres

HA = textwrap.dedent(
    """
    from datetime import datetime, timedelta
    from phloem import pipeline, task

    @task
    def step(i: int, x: int = 0) -> int:
        return i + x

    @pipeline
    def work(i: int = 0):
        step(i, step(i, step(i)))

    @pipeline(schedule=timedelta(seconds=1), catchup=True, max_active_runs=8,
              start_date=datetime.fromisoformat("{start}"))
    def ticker():
        step(1)
    """
)


def _schedulers(
    processes: Processes, n: int, folder: Path, home: Path, db_url: str, tmp: Path
) -> list[subprocess.Popen[bytes]]:
    """``n`` ``phloem scheduler`` processes, each logging to ``tmp/scheduler-K.log``."""
    env = {**os.environ, "PHLOEM_DB_URL": db_url, "PHLOEM_HOME": str(home), "PHLOEM_WORKERS": "2"}
    procs = []
    for k in range(n):
        with open(tmp / f"scheduler-{k}.log", "w") as log:
            args = [sys.executable, "-m", "phloem", "scheduler", "--pipelines", str(folder)]
            args += ["--parse-interval", "1"]
            procs.append(processes.start(args, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def test_three_schedulers_share_runs_exactly_once(
    pg_url: str, tmp_path: Path, processes: Processes
) -> None:
    folder, home = tmp_path / "pipelines", tmp_path / "home"
    folder.mkdir()
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=20)
    (folder / "ha.py").write_text(HA.format(start=start.isoformat()))
    store = SqlStore(pg_url)
    spec = load_pipeline(f"{folder / 'ha.py'}:work").spec
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runs = [
        create_run(
            store, spec, {"i": i}, base + timedelta(minutes=i), source=f"{folder / 'ha.py'}:work"
        ).run_id
        for i in range(200)
    ]
    procs = _schedulers(processes, 3, folder, home, pg_url, tmp_path)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            done = [r for r in store.list_runs(limit=1000) if r.state is RunState.SUCCESS]
            ticks = [r for r in done if r.pipeline == "ticker"]
            if len([r for r in done if r.pipeline == "work"]) == 200 and len(ticks) >= 20:
                break
            assert all(p.poll() is None for p in procs), "a scheduler exited"
            time.sleep(0.5)
        else:
            pytest.fail("the runs did not complete in time")
    finally:
        processes.stop(*procs)
    everything = store.list_runs(limit=2000)
    assert all(r.state is RunState.SUCCESS for r in everything if r.pipeline == "work")
    # one run per (pipeline, logical date), and the ticker has no gap
    keys = [(r.pipeline, r.logical_date) for r in everything]
    assert len(keys) == len(set(keys))
    ticks = sorted(
        datetime.fromisoformat(r.logical_date) for r in everything if r.pipeline == "ticker"
    )
    assert ticks[0] == start
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    # no task instance ever had two attempts at once: each ran exactly once
    for run_id in runs:
        per_ti: dict[tuple[str, int], list] = defaultdict(list)
        for a in store.attempts(run_id):
            per_ti[(a.task_id, a.map_index)].append(a)
        assert len(per_ti) == 3
        assert all(len(v) == 1 and v[0].state == "success" for v in per_ti.values())
    assert sum(store.get_run(r).state is RunState.SUCCESS for r in runs) == 200
    # the work was shared
    drivers = [
        Path(tmp_path / f"scheduler-{k}.log").read_text().count("driving run") for k in range(3)
    ]
    assert sum(1 for d in drivers if d > 0) >= 2, drivers


GATED = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from phloem import pipeline, task

    @task
    def before() -> int:
        return 1

    @task
    def wait_gate(x: int, gate: str) -> int:
        while not Path(gate).exists():
            time.sleep(0.05)
        return x + 1

    @task
    def after(x: int) -> int:
        return x + 1

    @pipeline
    def gated(gate: str = ""):
        after(wait_gate(before(), gate))
    """
)


def _restart_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        pytest.fail("cannot find the local PostgreSQL cluster to restart (/etc/postgresql)")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _cluster(*action: str) -> subprocess.Popen[bytes]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        pytest.fail("cannot find the local PostgreSQL cluster (/etc/postgresql)")
    return subprocess.Popen(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", *action],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_store_opened_while_postgres_shuts_down_waits_for_it_to_come_back(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduler or CLI started during a restart must not exit: a smart shutdown held open
    by a session keeps the server refusing newcomers with "shutting down" for as long as the
    test wants, then it stops (refusals), then it starts again."""
    import psycopg

    plain = pg_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
    held = psycopg.connect(plain)
    stopping = _cluster("stop", "-m", "smart")
    opened: list[object] = []
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the server refuses newcomers
            try:
                psycopg.connect(plain).close()
            except psycopg.OperationalError as exc:
                assert "shutting down" in str(exc), exc
                break
            assert time.monotonic() < deadline, "PostgreSQL never began to shut down"
            time.sleep(0.05)

        def open_it() -> None:
            try:
                opened.append(SqlStore(pg_url, outage_timeout=120))
            except Exception as exc:  # kept for the assertion below
                opened.append(exc)

        with caplog.at_level("WARNING", logger="phloem.store"):
            opener = threading.Thread(target=open_it)
            opener.start()
            deadline = time.monotonic() + 30
            while "the database is unavailable" not in caplog.text and not opened:
                assert time.monotonic() < deadline, "the store never tried to open"
                time.sleep(0.05)
            assert not opened, f"the store gave up during the shutdown: {opened}"
            held.close()
            # other sessions (pools) may hold the smart shutdown: end it fast, then the
            # server refuses connections until it is started again
            _cluster("stop", "-m", "fast").wait(timeout=60)
            stopping.wait(timeout=60)
            _cluster("start").wait(timeout=60)
            opener.join(timeout=150)
    finally:
        held.close()
        if stopping.poll() is None:
            _cluster("stop", "-m", "fast").wait(timeout=60)
            stopping.wait(timeout=60)
        _cluster("start").wait(timeout=60)  # whatever happened, leave the server up
    assert len(opened) == 1 and isinstance(opened[0], SqlStore), opened
    store = opened[0]
    assert store.list_runs() == []
    store.close()


def test_a_postgres_restart_mid_run_loses_and_duplicates_nothing(
    pg_url: str, tmp_path: Path, processes: Processes
) -> None:
    folder, home = tmp_path / "pipelines", tmp_path / "home"
    folder.mkdir()
    (folder / "gated.py").write_text(GATED)
    gate = tmp_path / "gate"
    store = SqlStore(pg_url)
    spec = load_pipeline(f"{folder / 'gated.py'}:gated").spec
    run_ids = [
        create_run(
            store,
            spec,
            {"gate": str(gate)},
            f"2026-02-0{i + 1}",
            source=f"{folder / 'gated.py'}:gated",
        ).run_id
        for i in range(3)
    ]
    procs = _schedulers(processes, 1, folder, home, pg_url, tmp_path)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # two workers: which runs reach the gate first varies
            if any(
                ti.task_id == "wait_gate" and ti.state.value == "running"
                for r in run_ids
                for ti in store.load_instances(r)
            ):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no run reached the gated task")
        restarted = time.time()
        _restart_postgres()
        gate.write_text("open")
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if all(store.get_run(r).state is RunState.SUCCESS for r in run_ids):
                    break
            except Exception:
                pass
            assert procs[0].poll() is None, "the scheduler exited when the database blinked"
            time.sleep(0.2)
        else:
            pytest.fail("runs did not complete after the database restart")
        print(f"recovered {time.time() - restarted:.1f}s after the restart began")
    finally:
        processes.stop(*procs)
    for r in run_ids:
        attempts = store.attempts(r)
        assert sorted(a.task_id for a in attempts) == ["after", "before", "wait_gate"]
        assert all(a.state == "success" for a in attempts)
        events = store.events(r)
        finals = [e for e in events if e.new_state == "success" and e.task_id]
        assert len(finals) == 3  # each success recorded once


def test_a_killed_scheduler_s_runs_are_taken_over_when_its_lease_expires(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: Processes
) -> None:
    monkeypatch.setenv("PHLOEM_LEASE_TTL", "3")
    folder, home = tmp_path / "pipelines", tmp_path / "home"
    folder.mkdir()
    (folder / "gated.py").write_text(GATED)
    gate = tmp_path / "gate"
    store = SqlStore(pg_url)
    spec = load_pipeline(f"{folder / 'gated.py'}:gated").spec
    run_id = create_run(
        store, spec, {"gate": str(gate)}, "2026-03-01", source=f"{folder / 'gated.py'}:gated"
    ).run_id
    first = _schedulers(processes, 1, folder, home, pg_url, tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline:
        states = {ti.task_id: ti.state.value for ti in store.load_instances(run_id)}
        if states.get("wait_gate") == "running":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the run never reached the gated task")
    assert store.get_run(run_id).owner is not None
    first[0].kill()  # SIGKILL: no clean-up, its lease must run out
    first[0].wait(10)
    # its workers and file readers died with it
    assert wait_gone(lambda: processes.left_by(first[0]), 20) == []
    gate.write_text("open")
    killed_at = time.time()
    with store.engine.connect() as conn:  # the dead scheduler's lease, as it left it
        expires = conn.exec_driver_sql(
            "SELECT lease_expires_at FROM runs WHERE run_id = %(r)s", {"r": run_id}
        ).scalar()
    (tmp_path / "second").mkdir()
    second = _schedulers(processes, 1, folder, home, pg_url, tmp_path / "second")
    try:
        while time.time() < killed_at + 60:
            if store.get_run(run_id).state is RunState.SUCCESS:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the run was not taken over")
    finally:
        processes.stop(*second)
    retried = [a for a in store.attempts(run_id) if a.task_id == "wait_gate"][-1]
    assert retried.queued_at is not None and retried.queued_at >= expires  # not before expiry
    attempts = {
        a.task_id: [x.state for x in store.attempts(run_id) if x.task_id == a.task_id]
        for a in store.attempts(run_id)
    }
    assert attempts["before"] == ["success"]  # the finished task did not run again
    assert attempts["wait_gate"] == ["interrupted", "success"]
    assert attempts["after"] == ["success"]


def test_a_trigger_from_another_machine_wakes_the_scheduler_through_notify(
    pg_url: str, tmp_path: Path
) -> None:
    from phloem.app import Phloem
    from phloem.scheduler import Scheduler, SchedulerConfig
    from phloem.scheduler.commands import trigger

    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "ha.py").write_text(HA.format(start="2100-01-01T00:00:00+00:00"))
    here = Phloem.open(SqlStore(pg_url), tmp_path / "scheduler-home")
    elsewhere = Phloem.open(SqlStore(pg_url), tmp_path / "other-home")  # no shared socket
    sched = Scheduler(here, SchedulerConfig(folder=folder, tick=30.0, parse_interval=60.0))
    sched.start()
    try:
        sched.step()
        sched.step()
        run, _ = trigger(elsewhere, "work", params={"i": 3})
        # woken by NOTIFY, not by the tick 30 s away: its listener has something to read
        listeners = [w for w in sched.wakers if w is not sched.wakeup and w.usable()]
        assert select.select(listeners, [], [], 20)[0]
        deadline = time.time() + 60
        while time.time() < deadline:
            sched.step()
            if here.store.get_run(run.run_id).state is RunState.SUCCESS:
                break
        assert here.store.get_run(run.run_id).state is RunState.SUCCESS
    finally:
        sched.shutdown()
