"""A turn's draft looks at what changed since the last turn, not at every pending task.

The work is counted, not timed: how many tasks the trigger rules are applied to in each turn
of a long chain (each turn ends one task and starts the next), and the Python lines one such
turn executes, which must not grow with the chain's length.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

import phloem
from phloem import task
from phloem.engine import (
    TI,
    AttemptFinished,
    AttemptStarted,
    CacheHit,
    Draft,
    Snapshot,
    decide,
)
from phloem.states import RunState, TaskState
from strategies import Sim
from test_engine_fanin import lines_executed

S = TaskState
#: the module (``phloem.engine.decide`` the package exports is its function)
decide_module = importlib.import_module("phloem.engine.decide")


@task
def step(x: int = 0) -> int:
    return x + 1


def chain(length: int) -> phloem.Pipeline:
    def body() -> None:
        ref = step.with_options(name="step_0")()
        for i in range(1, length):
            ref = step.with_options(name=f"step_{i}")(ref)

    return phloem.pipeline(name=f"chain_{length}")(body)


@pytest.fixture
def looked_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The tasks the trigger rules were applied to, in order."""
    seen: list[str] = []
    apply = decide_module._trigger_task

    def counting(w, t, now, wake):  # type: ignore[no-untyped-def]
        seen.append(t.task_id)
        return apply(w, t, now, wake)

    monkeypatch.setattr(decide_module, "_trigger_task", counting)
    yield seen


def test_each_turn_of_a_long_chain_looks_at_a_few_tasks(looked_at: list[str]) -> None:
    length = 300
    sim = Sim.of(chain(length))
    per_turn: list[int] = []

    def turn(*events: AttemptStarted | AttemptFinished) -> None:
        looked_at.clear()
        sim.apply(decide(sim.snap, sim.now, events))
        per_turn.append(len(looked_at))

    turn()  # the first turn looks at every pending task once
    assert per_turn == [length]
    for i in range(length):
        assert sim.state(f"step_{i}") is S.QUEUED
        turn(sim.started(f"step_{i}"), sim.finished(f"step_{i}"))
        sim.now += 1.0
    assert sim.run_state is RunState.SUCCESS
    # the task that just ended's successor, and the one started in the turn before
    assert max(per_turn[1:]) <= 2, per_turn


def middle_of_chain(length: int) -> tuple[Snapshot, AttemptFinished]:
    """A chain half done, its middle task running, after one turn that found the rest
    waiting; and the report that the middle task ended."""
    spec = chain(length).spec
    mid = length // 2
    tis = [TI(f"step_{i}", state=S.SUCCESS, try_number=1, ended_at=1.0) for i in range(mid)]
    tis.append(TI(f"step_{mid}", state=S.RUNNING, try_number=1, started_at=1.0))
    tis += [TI(f"step_{i}") for i in range(mid + 1, length)]
    snap = Snapshot.build(spec, "run-1", RunState.RUNNING, {}, tis)
    assert decide(snap, 2.0).empty
    return snap, AttemptFinished((f"step_{mid}", -1), 1, "success", 2.0)


def test_a_turn_of_a_chain_costs_the_same_at_any_length() -> None:
    def one_turn(length: int) -> tuple[int, list[tuple[str, TaskState]]]:
        snap, event = middle_of_chain(length)
        lines, d = lines_executed(lambda: decide(snap, 3.0, [event]))
        return lines, [(t.key[0], t.new.state) for t in d.transitions]

    one_turn(6)  # warm caches
    short_lines, short = one_turn(50)
    long_lines, long = one_turn(2_000)
    assert short == [("step_25", S.SUCCESS), ("step_26", S.SCHEDULED), ("step_26", S.QUEUED)]
    assert long == [("step_1000", S.SUCCESS), ("step_1001", S.SCHEDULED), ("step_1001", S.QUEUED)]
    assert long_lines == short_lines, (
        f"one turn of a chain ran {short_lines} lines at length 50 but {long_lines} at 2,000"
    )


def test_a_reloaded_snapshot_looks_at_its_pending_tasks_again(looked_at: list[str]) -> None:
    """A snapshot built again (a driver that recovers a run, or reloads it) remembers nothing
    as waiting: its first turn applies every pending task's rule."""
    snap, _ = middle_of_chain(10)
    again = Snapshot.build(snap.spec, snap.run_id, snap.run_state, {}, snap.tis.values())
    looked_at.clear()
    decide(again, 2.0)
    assert looked_at == [f"step_{i}" for i in range(6, 10)]
    looked_at.clear()
    decide(again, 2.0)
    assert looked_at == []


def test_cache_hits_down_a_chain_end_it_in_one_turn(looked_at: list[str]) -> None:
    """Each hit makes the next task ready within the same draft (the driver looks up what
    became ready, round after round): the tasks each hit touched are looked at again."""
    sim = Sim.of(chain(6))

    def every_ready(d: Draft) -> list[CacheHit]:
        return [CacheHit(k, f"{k[0]}@cache") for k in d.ready]

    d = sim.step(hits=every_ready)
    assert [sim.state(f"step_{i}") for i in range(6)] == [S.CACHED] * 6
    assert d.run_state is RunState.SUCCESS
