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


@pipeline(timeout=10)  # generous: a loaded machine must still run the retry (both tasks) within it
def hurried(flag: str = "") -> None:
    after(slow(flag))


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_a_run_past_its_timeout_fails_stops_its_attempts_and_resumes(
    home: Path, tmp_path: Path, executor: str
) -> None:
    flag = tmp_path / "hold"
    flag.touch()
    r = phloem.run(hurried, params={"flag": str(flag)}, executor=executor)
    assert r.state is RunState.FAILED, r.states()
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


# -- run retries (Prefect's flow retries) ----------------------------------------------------


@task
def counted(path: str) -> int:
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n


@task
def fails_until(path: str, good_from: int) -> int:
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    if n < good_from:
        raise RuntimeError(f"attempt {n} fails")
    return n


@task
def joined(a: int, b: int) -> int:
    return a + b


retried: list[Any] = []


@pipeline(retries=2, on_retry=retried.append)
def recovers(ok: str = "", flaky: str = "", good_from: int = 3) -> None:
    joined(counted(ok), fails_until(flaky, good_from))


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_failed_run_runs_its_failed_tasks_again_keeping_what_succeeded(
    home: Path, tmp_path: Path, executor: str
) -> None:
    retried.clear()
    ok, flaky = tmp_path / "ok", tmp_path / "flaky"
    r = phloem.run(recovers, params={"ok": str(ok), "flaky": str(flaky)}, executor=executor)
    assert r.state is RunState.SUCCESS, r.states()
    assert ok.read_text() == "1"  # the task that succeeded ran once
    assert flaky.read_text() == "3"  # once per run try
    assert r.output("joined") == 4
    reasons = {e.reason for e in r.app.store.events(r.run_id) if e.reason}
    assert {"run retry 1", "run retry 2"} <= reasons  # how a restarted driver counts them
    assert [c.failed for c in retried] == [
        {"fails_until": "RuntimeError: attempt 1 fails"},
        {"fails_until": "RuntimeError: attempt 2 fails"},
    ]


def test_run_retries_run_out(home: Path, tmp_path: Path) -> None:
    ok, flaky = tmp_path / "ok", tmp_path / "flaky"
    r = phloem.run(
        recovers,
        params={"ok": str(ok), "flaky": str(flaky), "good_from": 9},
        executor="inline",
    )
    assert r.state is RunState.FAILED
    assert flaky.read_text() == "3"  # the first try and two run retries
    assert r.tasks[("joined", -1)].state is S.UPSTREAM_FAILED


@pipeline(retries=1, retry_delay=60)
def patient() -> None:
    breaks()


@pipeline(retries=1)
def eager() -> None:
    breaks()


def test_a_run_retry_without_delay_is_taken_up_at_once() -> None:
    """The retry's tasks become pending in the decision that fails the run; with nothing
    running, only a timer brings the next turn (it was the loop's 1 s idle look)."""
    sim = Sim.of(eager, now=1000.0)
    sim.step()
    d = sim.run_attempt("breaks", "failed", error="boom")
    assert d.run_state is None  # not failed: retried
    assert sim.state("breaks") is S.PENDING
    assert d.wake_at == 1000.0
    sim.step(at=1000.0)
    assert sim.state("breaks") is S.QUEUED


def test_the_engine_waits_the_run_retry_delay() -> None:
    sim = Sim.of(patient, now=1000.0)
    sim.step()
    d = sim.run_attempt("breaks", "failed", error="boom")
    assert d.run_state is None  # not failed: retried
    assert sim.state("breaks") is S.PENDING
    assert d.wake_at == 1060.0
    sim.step(at=1030.0)
    assert sim.state("breaks") is S.PENDING  # still waiting
    sim.step(at=1060.0)
    assert sim.state("breaks") is S.QUEUED
    sim.snap.run_retries = 1  # as the session counts it from the change's reason
    d = sim.run_attempt("breaks", "failed", error="boom")
    assert sim.run_state is RunState.FAILED
