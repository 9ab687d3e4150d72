"""Pipeline-level options: a run's timeout, run callbacks, owner."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import phloem
from phloem import pipeline, task
from phloem.states import RunState, TaskState
from strategies import Sim

S = TaskState


@task
def first() -> int:
    return 1


@task
def second(x: int) -> int:
    return x + 1


@pipeline(timeout=30)
def bounded() -> None:
    second(first())


def test_the_engine_fails_a_run_past_its_timeout() -> None:
    sim = Sim.of(bounded, now=1000.0)
    d = sim.step()
    assert d.wake_at == 1030.0  # the loop wakes for the deadline
    sim.snap.started_at = 1000.0  # as the session records it when the run starts
    sim.run_attempt("first")
    sim.step(sim.started("second"), at=1010.0)
    d = sim.step(at=1030.0)
    assert [k.key for k in d.kills] == [("second", -1)]
    assert "the run timed out after 30s" in d.kills[0].reason
    assert sim.state("first") is S.SUCCESS
    assert sim.state("second") is S.FAILED
    assert sim.ti("second").error == "the run timed out after 30s"
    assert sim.run_state is RunState.FAILED


@task
def slow(flag: str) -> str:
    import time

    while os.path.exists(flag):
        time.sleep(0.05)
    return "done"


@task
def after(x: str) -> str:
    return x + "!"


@pipeline(timeout=1)
def hurried(flag: str = "") -> None:
    after(slow(flag))


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_a_run_past_its_timeout_fails_stops_its_attempts_and_resumes(
    home: Path, tmp_path: Path, executor: str
) -> None:
    flag = tmp_path / "hold"
    flag.touch()
    r = phloem.run(hurried, params={"flag": str(flag)}, executor=executor)
    assert r.state is RunState.FAILED
    assert r.tasks[("slow", -1)].state is S.FAILED
    assert "timed out" in (r.tasks[("slow", -1)].error or "")  # inline: its own alarm
    assert r.tasks[("after", -1)].state is S.UPSTREAM_FAILED
    flag.unlink()
    again = phloem.retry(r.run_id, executor=executor)  # the timeout counts from the retry
    assert again.state is RunState.SUCCESS, again.states()
    assert again.output("after") == "done!"


calls: list[Any] = []


@task
def breaks() -> None:
    raise ValueError("bad batch")


@pipeline(on_failure=calls.append, on_success=calls.append, owner="ml-platform")
def watched() -> None:
    second(first())
    breaks.with_options(name="maybe")()


@pipeline(on_failure=calls.append, on_success=calls.append)
def fine() -> None:
    second(first())


def test_run_callbacks_are_called_once_with_the_failures(home: Path) -> None:
    calls.clear()
    r = phloem.run(watched, executor="inline")
    assert r.state is RunState.FAILED
    assert len(calls) == 1
    ctx = calls[0]
    assert (ctx.run_id, ctx.pipeline, ctx.state) == (r.run_id, "watched", "failed")
    assert ctx.failed == {"maybe": "ValueError: bad batch"}
    assert watched.spec.owner == "ml-platform"
    ok = phloem.run(fine, executor="inline")
    assert [c.state for c in calls] == ["failed", "success"]
    assert calls[1].run_id == ok.run_id and calls[1].failed == {}


def test_pipeline_timeout_is_a_pipeline_option_not_a_hint() -> None:
    with pytest.raises(phloem.DefinitionError, match="'timeout' must be"):
        pipeline(timeout="soon")(lambda: None)
