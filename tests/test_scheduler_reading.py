"""A pipeline file that hangs never pauses the runs a scheduler drives.

Files are read off the loop thread: the runs' tasks keep starting and ending while a file
hangs in a parser process, and while a file hangs when the scheduler itself imports it. The
tests assert on what happened first, never on durations.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from phloem.app import Phloem
from phloem.scheduler import Scheduler, SchedulerConfig
from phloem.scheduler.commands import trigger
from phloem.states import RunState
from phloem.store.catalog import Catalog
from test_scheduler import drive, write

STEADY = textwrap.dedent(
    """
    import time
    from phloem import pipeline, task

    @task
    def step(x: int = 0) -> int:
        time.sleep(0.05)
        return x + 1

    @pipeline
    def steady():
        x = step()
        for _ in range(5):
            x = step(x)
    """
)

HANGS = "import time\nwhile True:\n    time.sleep(1)\n"

# fine in the parser processes; hangs in the scheduler's process while the hold file exists
HANGS_IN_THE_SCHEDULER = textwrap.dedent(
    """
    import multiprocessing, os, time
    from phloem import pipeline, task

    if multiprocessing.current_process().name != "phloem-parser":
        while os.path.exists({hold!r}):
            time.sleep(0.02)

    @task
    def nothing() -> None:
        return None

    @pipeline
    def sluggish():
        nothing()
    """
)


@pytest.fixture
def env(home: Path) -> Phloem:
    return Phloem.open()


@pytest.fixture
def sched(env: Phloem, tmp_path: Path) -> Iterator[Scheduler]:
    cfg = SchedulerConfig(
        folder=tmp_path / "pipelines", tick=0.05, parse_interval=0.2, parse_timeout=120.0
    )
    s = Scheduler(env, cfg)
    s.start()
    yield s
    s.shutdown()


def _succeeded(env: Phloem, run_id: str) -> bool:
    return env.store.get_run(run_id).state is RunState.SUCCESS


def test_runs_go_on_while_a_file_hangs_at_import(env: Phloem, sched: Scheduler) -> None:
    folder = sched.config.folder
    write(folder, "steady.py", STEADY)
    sched.refresh(0.0)
    write(folder, "hangs.py", HANGS)
    sched.step()  # starts reading the folder: hangs.py is new
    assert sched.reader.busy
    run, _ = trigger(env, "steady")
    drive(sched, lambda: _succeeded(env, run.run_id), timeout=60)
    # the whole run (six tasks, one after another) happened while hangs.py was being read
    assert sched.reader.busy
    assert str(folder / "hangs.py") not in Catalog(env.store).import_errors()
    ended = [a.ended_at for a in env.store.attempts(run.run_id)]
    assert len(ended) == 6 and all(e is not None for e in ended)


def test_runs_go_on_while_the_scheduler_imports_a_slow_file(
    env: Phloem, sched: Scheduler, tmp_path: Path
) -> None:
    folder = sched.config.folder
    hold = tmp_path / "hold"
    write(folder, "steady.py", STEADY)
    write(folder, "sluggish.py", HANGS_IN_THE_SCHEDULER.format(hold=str(hold)))
    sched.refresh(0.0)
    slow, _ = trigger(env, "sluggish")  # imports the file here, before the hold
    run, _ = trigger(env, "steady")
    hold.touch()
    try:
        drive(sched, lambda: _succeeded(env, run.run_id), timeout=60)
        # steady's run ended while the scheduler was still importing sluggish's file
        assert env.store.get_run(slow.run_id).state is RunState.QUEUED
        assert env.store.attempts(slow.run_id) == []
        hold.unlink()
        drive(sched, lambda: _succeeded(env, slow.run_id), timeout=60)
    finally:
        hold.unlink(missing_ok=True)  # let the import thread end whatever happened


def test_many_runs_of_a_slow_file_do_not_crowd_out_the_others(
    env: Phloem, sched: Scheduler, tmp_path: Path
) -> None:
    """Runs waiting for their file's import are not claimed again and again ahead of the
    runs that could start now."""
    folder = sched.config.folder
    hold = tmp_path / "hold"
    write(folder, "steady.py", STEADY)
    write(folder, "sluggish.py", HANGS_IN_THE_SCHEDULER.format(hold=str(hold)))
    sched.refresh(0.0)
    assert sched.loop is not None
    # more of them, created first, than one claim takes
    waiting = [
        trigger(env, "sluggish", logical_date=f"2026-01-{day:02d}")[0]
        for day in range(1, 4 * sched.loop.slots + 2)
    ]
    run, _ = trigger(env, "steady")
    hold.touch()
    try:
        drive(sched, lambda: _succeeded(env, run.run_id), timeout=60)
        assert all(env.store.get_run(w.run_id).state is RunState.QUEUED for w in waiting)
    finally:
        hold.unlink(missing_ok=True)
