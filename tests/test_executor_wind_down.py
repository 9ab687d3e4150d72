"""A run's driver tells its idle workers to stop as the commit that ends the run goes to the
store, so they exit while it commits; ``shutdown`` then only waits for them. A worker told to
stop takes nothing more (an attempt that comes anyway starts another), a busy one is left to
``shutdown``, and every worker is gone when the run's driver returns."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import phloem
from attempts import make_attempt, measures, waits_for
from phloem import pipeline
from phloem.artifacts import ArtifactStore
from phloem.executors.local import LocalExecutor
from phloem.runner import Result
from phloem.states import RunState
from phloem.store import open_store


@pipeline
def small() -> None:
    measures(b"ab")
    waits_for(".")


def _result(ex: LocalExecutor, within: float = 60.0) -> Result:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for r in ex.wait(1.0):
            if isinstance(r, Result):
                return r
    raise AssertionError("no result came")


def _executor(tmp_path: Path) -> LocalExecutor:
    ex = LocalExecutor(workers=1)
    ex.start({"small": small.spec}, ArtifactStore(str(tmp_path / "a")))
    return ex


def test_an_idle_worker_told_to_stop_exits_and_a_later_attempt_gets_another(
    tmp_path: Path,
) -> None:
    ex = _executor(tmp_path)
    try:
        ex.submit(make_attempt(tmp_path, "small", "measures", args=(b"abc",)))
        assert _result(ex).output == "3"
        [first] = ex._workers
        ex.wind_down()
        assert ex._workers == []
        first.process.join(30)  # it exits by itself, told to, before any shutdown
        assert first.process.exitcode == 0
        ex.submit(make_attempt(tmp_path, "small", "measures", try_number=2, args=(b"ab",)))
        assert _result(ex).output == "2"
        [second] = ex._workers
        assert second is not first and second.process.is_alive()
    finally:
        ex.shutdown()
    assert not second.process.is_alive()


def test_a_busy_worker_is_left_to_shutdown(tmp_path: Path) -> None:
    go_on = tmp_path / "go-on"
    ex = _executor(tmp_path)
    try:
        ex.submit(make_attempt(tmp_path, "small", "waits_for", args=(str(go_on),)))
        ex.wait(0)  # sent
        [busy] = ex._workers
        ex.wind_down()
        assert ex._workers == [busy]  # still running its attempt: not told to stop
        go_on.touch()
        assert _result(ex).output == '"went on"'
        assert busy.process.is_alive()
    finally:
        ex.shutdown()
    assert not busy.process.is_alive()


class Watched(LocalExecutor):
    """A local executor that notes what the run's stored state is when it is wound down."""

    def __init__(self, store: Any) -> None:
        super().__init__(workers=2)
        self.store = store
        self.seen: list[tuple[str, Any]] = []

    def wind_down(self) -> None:
        self.seen.append(("wind_down", self.store.list_runs(limit=1)[0].state))
        self.pids = [p for w in self._workers for p in (w.process.pid, w.process.child_pid)]
        super().wind_down()

    def shutdown(self) -> None:
        self.seen.append(("shutdown", None))
        super().shutdown()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_run_s_driver_winds_its_workers_down_before_the_commit_that_ends_the_run(
    home: Path, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    ex = Watched(store)
    try:
        result = phloem.run(small, executor=ex, store=store, home=home)
    finally:
        store.close()
    assert result.succeeded
    # the run was not yet ended in the store when its workers were told to stop
    assert ex.seen == [("wind_down", RunState.RUNNING), ("shutdown", None)]
    assert ex.pids and all(_gone(p) for p in ex.pids)  # gone when the driver returned
