"""A fan-in's cost per decision does not grow with its width.

The work is counted, not timed: the number of Python lines decide() executes for one turn of a
waiting fan-in (one upstream attempt finishes, the fan-in waits for the others) must be the same
whether the fan-in has 50 upstream tasks or 2,000.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import phloem
from phloem import task
from phloem.engine import TI, AttemptFinished, Capacity, Snapshot, decide
from phloem.states import RunState, TaskState

S = TaskState
STILL_RUNNING = 3  # upstream attempts still running at the measured turn


@task
def part(i: int) -> int:
    return i


@task
def gather(xs: list[int]) -> int:
    return sum(xs)


def fan_in(width: int) -> phloem.Pipeline:
    def body() -> None:
        gather([part.with_options(name=f"part_{i}")(i) for i in range(width)])

    return phloem.pipeline(name=f"fan_in_{width}")(body)


def waiting_snapshot(pipe: phloem.Pipeline) -> Snapshot:
    """Every upstream task succeeded but the last few, which are running; the fan-in waits."""
    spec = pipe.spec
    parts = [t for t in spec.tasks if t.startswith("part_")]
    instances = []
    for n, task_id in enumerate(parts):
        if n < len(parts) - STILL_RUNNING:
            instances.append(TI(task_id, state=S.SUCCESS, try_number=1, ended_at=1.0))
        else:
            instances.append(TI(task_id, state=S.RUNNING, try_number=1, started_at=1.0))
    instances.extend(TI(t) for t in spec.tasks if not t.startswith("part_"))
    return Snapshot.build(spec, "run-1", RunState.RUNNING, {}, instances)


def lines_executed(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``fn`` and count the Python lines it executes (every frame, every loop pass)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    # a garbage collection inside would count the finalizers of whatever earlier tests left
    gc.collect()
    gc.disable()
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = fn()
    finally:
        sys.settrace(previous)
        gc.enable()
    return count, result


def one_turn(width: int) -> tuple[int, list[tuple[str, TaskState]]]:
    snap = waiting_snapshot(fan_in(width))
    done = f"part_{width - STILL_RUNNING}"
    event = AttemptFinished((done, -1), 1, "success", 2.0)
    lines, decision = lines_executed(lambda: decide(snap, 2.0, [event]))
    return lines, [(t.key[0], t.new.state) for t in decision.transitions]


def test_a_waiting_fan_in_costs_the_same_at_any_width() -> None:
    one_turn(5)  # first calls warm caches (enum lookups, lazy imports); count the later ones
    narrow_lines, narrow = one_turn(50)
    wide_lines, wide = one_turn(2_000)
    assert narrow == [("part_47", S.SUCCESS)]
    assert wide == [("part_1997", S.SUCCESS)]
    assert wide_lines == narrow_lines, (
        f"one turn of a waiting fan-in ran {narrow_lines} lines at width 50 "
        f"but {wide_lines} at width 2,000"
    )


def busy_turn(width: int) -> tuple[int, list[tuple[str, TaskState]]]:
    """Two slots, two parts running and every other part scheduled (ready, waiting for a
    slot): one part finishes and the next one is handed out."""
    spec = fan_in(width).spec
    parts = [t for t in spec.tasks if t.startswith("part_")]
    instances = [TI(t, state=S.RUNNING, try_number=1, started_at=1.0) for t in parts[:2]]
    instances += [TI(t, state=S.SCHEDULED) for t in parts[2:]]
    instances += [TI(t) for t in spec.tasks if not t.startswith("part_")]
    snap = Snapshot.build(spec, "run-1", RunState.RUNNING, {}, instances)
    event = AttemptFinished(("part_0", -1), 1, "success", 2.0)
    lines, decision = lines_executed(lambda: decide(snap, 2.0, [event], Capacity(slots=2)))
    return lines, [(t.key[0], t.new.state) for t in decision.transitions]


def test_handing_out_work_costs_the_same_however_much_is_ready() -> None:
    busy_turn(5)  # warm caches
    narrow_lines, narrow = busy_turn(50)
    wide_lines, wide = busy_turn(2_000)
    assert narrow == wide == [("part_0", S.SUCCESS), ("part_2", S.QUEUED)]
    assert wide_lines == narrow_lines, (
        f"one turn with 48 instances ready ran {narrow_lines} lines, with 1,998 {wide_lines}"
    )


@pytest.mark.parametrize("width", [1, 7, 300])
def test_the_fan_in_runs_once_its_last_upstream_ends(width: int) -> None:
    pipe = fan_in(width)
    running = min(width, STILL_RUNNING)
    snap = waiting_snapshot(pipe)
    at = 2.0
    for n in range(width - running, width):
        d = decide(snap, at, [AttemptFinished((f"part_{n}", -1), 1, "success", at)])
        for t in d.transitions:
            snap.apply_transition(t)
        fan = snap.tis[("gather", -1)].state
        assert fan is (S.QUEUED if n == width - 1 else S.PENDING), (n, fan)
        at += 1.0


def test_a_failed_upstream_fails_a_wide_fan_in_at_once() -> None:
    snap = waiting_snapshot(fan_in(1_000))
    d = decide(snap, 2.0, [AttemptFinished(("part_998", -1), 1, "failed", 2.0, retryable=False)])
    states = {t.key[0]: t.new.state for t in d.transitions}
    assert states == {"part_998": S.FAILED, "gather": S.UPSTREAM_FAILED}
