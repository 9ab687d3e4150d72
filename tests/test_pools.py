"""A task naming a pool the store does not define is refused when its run would be created,
with the task, the pool and the command that defines it; the default pool needs no definition."""

from __future__ import annotations

import logging
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import phloem
from phloem.app import Phloem
from phloem.cli.main import app as cli
from phloem.errors import PoolNotFound
from phloem.scheduler import Scheduler, SchedulerConfig
from phloem.scheduler.commands import trigger

PIPELINES = textwrap.dedent(
    """
    from datetime import datetime, timedelta, timezone
    from phloem import pipeline, task

    @task(pool="gpu")
    def train() -> int:
        return 1

    @task(pool="default")
    def report(x: int) -> int:
        return x

    @pipeline
    def gpu_pipe():
        report(train())

    @pipeline(schedule=timedelta(seconds=1), catchup=False,
              start_date=datetime(2020, 1, 1, tzinfo=timezone.utc))
    def gpu_every_second():
        train()
    """
)


@phloem.task(pool="gpu")
def train() -> int:
    return 1


@phloem.task(pool="gpu", pool_slots=3)
def big() -> int:
    return 3


@phloem.task(pool="default")
def plain(x: int = 0) -> int:
    return x


@phloem.pipeline
def gpu_pipe() -> None:
    plain(train())
    train.with_options(name="train_again")()


@phloem.pipeline
def default_only() -> None:
    plain()


@phloem.pipeline
def too_big() -> None:
    big()


def test_phloem_run_refuses_an_undefined_pool_and_creates_no_run(store_url: str) -> None:
    app = Phloem.open(store_url)
    try:
        with pytest.raises(PoolNotFound) as info:
            phloem.run(gpu_pipe, executor="inline", app=app)
        msg = str(info.value)
        assert "pool 'gpu'" in msg and "tasks 'train', 'train_again'" in msg
        if app.store.capabilities.shared:
            assert "phloem pools set gpu SIZE" in msg
        else:  # a private store cannot be reached by the CLI
            assert "app.store.set_pool('gpu', SIZE)" in msg
        assert app.store.list_runs() == []
        app.store.set_pool("gpu", 1)
        assert phloem.run(gpu_pipe, executor="inline", app=app).succeeded
    finally:
        app.close()


def test_the_default_pool_needs_no_definition() -> None:
    assert phloem.run(default_only, executor="inline", store="memory").succeeded


def test_a_task_taking_more_slots_than_its_pool_has_is_refused() -> None:
    app = Phloem.open("memory")
    app.store.set_pool("gpu", 2)
    with pytest.raises(PoolNotFound, match=r"task 'big' takes 3 slots of pool 'gpu', which has 2"):
        phloem.run(too_big, executor="inline", app=app)
    app.store.set_pool("gpu", 3)
    assert phloem.run(too_big, executor="inline", app=app).succeeded


def test_cli_run_exits_2_with_the_fix(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "pipes.py"
    path.write_text(PIPELINES)
    result = CliRunner().invoke(cli, ["run", f"{path}:gpu_pipe", "--executor", "inline"])
    assert result.exit_code == 2, result.output
    assert "task 'train' uses pool 'gpu'" in result.output
    assert "phloem pools set gpu SIZE" in result.output
    assert CliRunner().invoke(cli, ["pools", "set", "gpu", "1"]).exit_code == 0
    result = CliRunner().invoke(cli, ["run", f"{path}:gpu_pipe", "--executor", "inline"])
    assert result.exit_code == 0, result.output


def _known_to_the_store(app: Phloem, tmp_path: Path) -> Scheduler:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "pipes.py").write_text(PIPELINES)
    sched = Scheduler(app, SchedulerConfig(folder=folder, tick=0.05, parse_interval=0.2))
    sched.start()
    sched.refresh(time.time())
    return sched


def test_a_trigger_is_refused_and_the_scheduler_makes_no_run(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = Phloem.open()
    sched = _known_to_the_store(app, tmp_path)
    try:
        with pytest.raises(PoolNotFound, match="phloem pools set gpu SIZE"):
            trigger(app, "gpu_pipe")
        result = CliRunner().invoke(cli, ["trigger", "gpu_pipe"])
        assert result.exit_code == 2 and "pool 'gpu'" in result.output
        # the schedule comes due (once the scheduler has imported the pipeline in the
        # background): the scheduler says why it makes no run
        errors: list[logging.LogRecord] = []
        deadline = time.time() + 20
        with caplog.at_level(logging.ERROR, logger="phloem"):
            while not errors and time.time() < deadline:
                sched.step()
                errors = [r for r in caplog.records if "gpu_every_second" in r.getMessage()]
        assert app.store.list_runs() == []
        assert errors and "phloem pools set gpu SIZE" in errors[0].getMessage()
        assert errors[0].exc_info is None  # a user's mistake, not a traceback
        app.store.set_pool("gpu", 1)
        run, created = trigger(app, "gpu_pipe")
        assert created and run.state is phloem.RunState.QUEUED
    finally:
        sched.shutdown()
        app.close()
