"""``phloem.trigger`` inside a task: a run of another pipeline on the same store, recorded as
triggered by the run and task that made it, driven by a scheduler; ``wait=True`` follows it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import phloem
from phloem.app import Phloem
from phloem.states import RunState, RunType, TaskState
from processes import Processes

RETRAIN = textwrap.dedent(
    """
    from phloem import pipeline, task

    @task
    def train(reason: str, fail: bool) -> str:
        if fail:
            raise RuntimeError("no data to train on")
        return f"trained because of {reason}"

    @pipeline
    def retrain(reason: str = "manual", fail: bool = False):
        train(reason, fail)
    """
)

MONITOR = textwrap.dedent(
    """
    import phloem
    from phloem import pipeline, task

    @task(retries={retries}, retry_delay=0)
    def kick(target: str, fail: bool, wait: bool, timeout: float, date: str) -> str:
        run_id = phloem.trigger(
            target,
            params={{"reason": "drift", "fail": fail}},
            logical_date=date or None,
            wait=wait,
            poke_interval=0.05,
            timeout=timeout or None,
        )
        if phloem.context().try_number == 1 and {retries}:
            raise RuntimeError("lost after triggering")
        return run_id

    @pipeline
    def monitor(target: str = "retrain", fail: bool = False, wait: bool = False,
                timeout: float = 0.0, date: str = ""):
        kick(target, fail, wait, timeout, date)
    """
)


def _folder(tmp_path: Path, retries: int = 0) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)
    (folder / "retrain.py").write_text(RETRAIN)
    (folder / "monitor.py").write_text(MONITOR.format(retries=retries))
    return folder


def _register(app: Phloem, folder: Path) -> None:
    """Make the store's catalog know the folder's pipelines, as a scheduler does."""
    from phloem.scheduler import Scheduler, SchedulerConfig

    sched = Scheduler(app, SchedulerConfig(folder=folder))
    sched.start()
    try:
        sched.refresh(time.time())
    finally:
        sched.shutdown()


def _monitor(folder: Path) -> str:
    return f"{folder / 'monitor.py'}:monitor"


def test_a_task_queues_a_run_recorded_as_triggered_by_it(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    app = Phloem.open()
    _register(app, folder)
    r = phloem.run(_monitor(folder), executor="inline", app=app)
    assert r.succeeded, r.tasks
    new_id = r.output("kick")
    new = app.store.get_run(new_id)
    assert new.pipeline == "retrain" and new.state is RunState.QUEUED  # no scheduler: it waits
    assert new.run_type is RunType.TRIGGERED
    assert new.triggered_by == f"{r.run_id}/kick"
    assert new.source == f"{folder / 'retrain.py'}:retrain"
    assert new.params == {"reason": "drift", "fail": False}
    assert new.owner is None  # any scheduler of the store may take it
    app.close()


def test_file_colon_pipeline_needs_no_scheduler_catalog(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    target = f"{folder / 'retrain.py'}:retrain"
    day = "2026-03-01T00:00:00+00:00"
    r = phloem.run(_monitor(folder), params={"target": target, "date": day}, executor="inline")
    assert r.succeeded, r.tasks
    new = r.app.store.get_run(r.output("kick"))
    assert new.pipeline == "retrain" and new.logical_date.startswith("2026-03-01T00:00:00")


def test_a_retried_task_gets_the_run_it_triggered_before(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path, retries=1)
    target = f"{folder / 'retrain.py'}:retrain"
    day = "2026-03-02T00:00:00+00:00"
    r = phloem.run(_monitor(folder), params={"target": target, "date": day}, executor="inline")
    assert r.succeeded and r.tasks[("kick", -1)].try_number == 2
    runs = r.app.store.list_runs(pipeline="retrain")
    assert [x.run_id for x in runs] == [r.output("kick")]


def test_a_retried_task_without_a_date_does_not_trigger_twice(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path, retries=1)
    target = f"{folder / 'retrain.py'}:retrain"
    r = phloem.run(_monitor(folder), params={"target": target}, executor="inline")
    assert r.succeeded and r.tasks[("kick", -1)].try_number == 2
    runs = r.app.store.list_runs(pipeline="retrain")
    assert [x.run_id for x in runs] == [r.output("kick")]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("retrian", "unknown pipeline 'retrian'; did you mean 'retrain'?"),
        ("nothing_like_it", "or name its file as phloem.trigger('path/to/file.py:"),
        ("/no/such/file.py:retrain", "no such pipeline file"),
    ],
)
def test_an_unknown_pipeline_fails_the_task_with_the_fix(
    home: Path, tmp_path: Path, target: str, message: str
) -> None:
    folder = _folder(tmp_path)
    app = Phloem.open()
    _register(app, folder)
    r = phloem.run(_monitor(folder), params={"target": target}, executor="inline", app=app)
    ti = r.tasks[("kick", -1)]
    assert ti.state is TaskState.FAILED and message in (ti.error or "")
    assert app.store.list_runs(pipeline="retrain") == []
    app.close()


def test_a_bad_wait_timeout_fails_the_task_before_queuing_a_run(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    target = f"{folder / 'retrain.py'}:retrain"
    params = {"target": target, "wait": True, "timeout": -1.0}
    r = phloem.run(_monitor(folder), params=params, executor="inline")
    ti = r.tasks[("kick", -1)]
    assert ti.state is TaskState.FAILED
    assert "timeout must not be negative" in (ti.error or "")
    assert r.app.store.list_runs(pipeline="retrain") == []


def test_an_in_memory_store_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    r = phloem.run(_monitor(folder), executor="inline", store="memory", home=tmp_path)
    ti = r.tasks[("kick", -1)]
    assert ti.state is TaskState.FAILED and "needs a shared store" in (ti.error or "")


def test_outside_a_task_it_points_at_the_command() -> None:
    with pytest.raises(phloem.PhloemError, match="`phloem trigger retrain`"):
        phloem.trigger("retrain")


def test_waiting_without_a_scheduler_ends_at_its_timeout(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    target = f"{folder / 'retrain.py'}:retrain"
    r = phloem.run(
        _monitor(folder),
        params={"target": target, "wait": True, "timeout": 0.3},
        executor="inline",
    )
    ti = r.tasks[("kick", -1)]
    assert ti.state is TaskState.FAILED
    assert "did not end within 0.3s" in (ti.error or "") and "scheduler" in (ti.error or "")


def _known(home: Path, name: str) -> bool:
    from phloem.store import SqlStore

    db = home / "phloem.db"
    if not db.exists():
        return False
    store = SqlStore(f"sqlite:///{db}")
    try:
        return any(p.info.name == name for p in store.catalog.pipelines())
    except Exception:  # not migrated yet
        return False
    finally:
        store.close()


def test_a_scheduler_drives_the_triggered_run_and_wait_follows_it(
    home: Path, tmp_path: Path, processes: Processes
) -> None:
    folder = _folder(tmp_path)
    env = {**os.environ, "PHLOEM_HOME": str(home), "PHLOEM_WORKERS": "2"}
    args = [sys.executable, "-m", "phloem", "scheduler", "--pipelines", str(folder)]
    with open(tmp_path / "scheduler.log", "w") as log:
        proc = processes.start(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _known(home, "retrain") and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.1)
        assert _known(home, "retrain"), (tmp_path / "scheduler.log").read_text()

        ok = phloem.run(_monitor(folder), params={"wait": True, "timeout": 60.0}, executor="inline")
        assert ok.succeeded, (ok.tasks, (tmp_path / "scheduler.log").read_text())
        done = ok.app.store.get_run(ok.output("kick"))
        assert done.state is RunState.SUCCESS and done.triggered_by == f"{ok.run_id}/kick"
        train = ok.app.store.get_instance(done.run_id, "train")
        assert train.state is TaskState.SUCCESS

        bad = phloem.run(
            _monitor(folder),
            params={"wait": True, "timeout": 60.0, "fail": True},
            executor="inline",
        )
        ti = bad.tasks[("kick", -1)]
        assert ti.state is TaskState.FAILED
        assert "failed (failed: train)" in (ti.error or ""), ti.error
    finally:
        processes.stop(proc)


def test_runs_show_says_who_triggered_a_run(home: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from phloem.cli.main import app as cli

    folder = _folder(tmp_path)
    target = f"{folder / 'retrain.py'}:retrain"
    r = phloem.run(_monitor(folder), params={"target": target}, executor="inline")
    new_id = r.output("kick")
    shown = CliRunner().invoke(cli, ["runs", "show", new_id])
    assert shown.exit_code == 0 and f"{r.run_id}/kick" in shown.output, shown.output
    as_json = CliRunner().invoke(cli, ["runs", "show", new_id, "--json"])
    assert json.loads(as_json.output)["triggered_by"] == f"{r.run_id}/kick"
    assert json.loads(as_json.output)["run_type"] == "triggered"
