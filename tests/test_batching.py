"""Mapped instances sent to workers in batches: one message per batch, and still each instance
with its own state, tries, output and log; a failure, a timeout or a worker's death inside a
batch is pinned on the one instance it belongs to."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phloem
from phloem import pipeline, task
from phloem.dsl.options import MAX_BATCH_SIZE
from phloem.engine import TI, AttemptFinished, Capacity, Snapshot, decide
from phloem.errors import DefinitionError
from phloem.executors.local import LocalExecutor
from phloem.runner import Attempt
from phloem.states import AttemptOutcome, RunState, TaskState

MARKS = "PHLOEM_TEST_BATCH_MARKS"


def first_time(name: str) -> bool:
    """True the first time ``name`` is seen in this test (a file per name)."""
    mark = Path(os.environ[MARKS]) / name
    if mark.exists():
        return False
    mark.write_text("seen")
    return True


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    monkeypatch.setenv(MARKS, str(folder))  # inherited by the workers forked later
    return folder


class Recording(LocalExecutor):
    """A local executor that remembers each attempt's ``batch`` as it is handed out."""

    def __init__(self) -> None:
        super().__init__(2)
        self.batches: list[int] = []

    def submit(self, attempt: Attempt) -> None:
        self.batches.append(attempt.batch)
        super().submit(attempt)


# -- the option ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "8", MAX_BATCH_SIZE + 1])
def test_a_bad_batch_size_is_refused_when_the_task_is_defined(bad: Any) -> None:
    with pytest.raises(DefinitionError, match=r"option 'batch_size' must be an int from 1 to"):

        @task(batch_size=bad)
        def f(x: int) -> int:
            return x


def test_batch_size_one_none_and_pipeline_defaults_are_accepted() -> None:
    @task(batch_size=1)
    def alone(x: int) -> int:
        return x

    @task(batch_size=None)
    def chosen(x: int) -> int:
        return x

    @pipeline(default_task_options={"batch_size": 16})
    def p() -> None:
        chosen.expand(x=[1, 2])
        alone.expand(x=[1, 2])

    assert p.spec.tasks["alone"].options.batch_size == 1  # the task's own wins
    assert p.spec.tasks["chosen"].options.batch_size is None  # set explicitly on the task


# -- the engine: a batch takes one slot -------------------------------------------------------


def test_a_batch_of_instances_takes_one_slot() -> None:
    @task(batch_size=4)
    def part(x: int) -> int:
        return x

    @pipeline
    def p() -> None:
        part.expand(x=list(range(20)))

    spec = p.spec
    snap = Snapshot.build(spec, "r", RunState.QUEUED, {}, [TI(t) for t in spec.tasks])
    queued: list[tuple[str, int]] = []
    now = 1.0
    events: list[AttemptFinished] = []
    while not snap.run_state.is_terminal:
        d = decide(snap, now, events, Capacity(slots=2))
        for e in d.expansions:
            snap.apply_expansion(e, now)
        for t in d.transitions:
            snap.apply_transition(t)
        if d.run_state is not None:
            snap.run_state = d.run_state
        fresh = [t.key for t in d.transitions if t.new.state is TaskState.QUEUED]
        # two slots, four instances each: at most eight in flight at once
        assert len(snap.keys_in(TaskState.QUEUED, TaskState.RUNNING)) <= 8
        queued += fresh
        now += 1.0
        events = [
            AttemptFinished(k, 1, AttemptOutcome.SUCCESS, now, output="1")
            for k in snap.keys_in(TaskState.QUEUED)
        ]
    assert snap.run_state is RunState.SUCCESS
    assert sorted(queued) == [("part", i) for i in range(20)]
    assert len(queued) == 20


# -- runs on the local executor ----------------------------------------------------------------


@task(batch_size=8, retries=1)
def flaky(x: int) -> int:
    print(f"instance {x} says hello")
    if x == 13 and first_time("flaky-13"):
        raise ValueError("thirteen fails once")
    return x * 10


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@pipeline
def batched_flaky() -> None:
    total(flaky.expand(x=list(range(40))))


def test_a_failing_instance_of_a_batch_retries_alone(tmp_path: Path, marks: Path) -> None:
    ex = Recording()
    r = phloem.run(batched_flaky, store="memory", home=tmp_path, executor=ex)
    assert r.succeeded
    assert r.output("total") == 10 * sum(range(40))
    assert r.output("flaky") == [10 * x for x in range(40)]
    tries = {ti.map_index: ti.try_number for (t, _), ti in r.tasks.items() if t == "flaky"}
    assert tries == {i: 2 if i == 13 else 1 for i in range(40)}
    assert 8 in ex.batches  # they did travel in batches
    attempts = [a for a in r.app.store.attempts(r.run_id) if a.task_id == "flaky"]
    assert len(attempts) == 41
    failed = [a for a in attempts if a.error]
    assert [(a.map_index, a.try_number) for a in failed] == [(13, 1)]
    assert "thirteen fails once" in (failed[0].error or "")
    logs = tmp_path / "logs" / r.run_id
    for i in (0, 7, 8, 39):  # each instance's log holds its own output, and only it
        text = next(logs.glob(f"flaky[[]{i}[]].1.log")).read_text()
        assert f"instance {i} says hello" in text
        assert "says hello" not in text.replace(f"instance {i} says hello", "")
    assert "thirteen fails once" in next(logs.glob("flaky[[]13[]].1.log")).read_text()


@task(batch_size=10, retries=1)
def crashing(x: int) -> int:
    if x == 5 and first_time("crash-5"):
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies in the middle of its batch
    return x


@pipeline
def batched_crash() -> None:
    total(crashing.expand(x=list(range(30))))


def test_a_worker_killed_mid_batch_costs_only_the_running_instance_a_try(
    tmp_path: Path, marks: Path
) -> None:
    r = phloem.run(batched_crash, store=f"sqlite:///{tmp_path / 'db.sqlite'}", home=tmp_path)
    assert r.succeeded
    assert r.output("total") == sum(range(30))
    tries = {ti.map_index: ti.try_number for (t, _), ti in r.tasks.items() if t == "crashing"}
    assert tries == {i: 2 if i == 5 else 1 for i in range(30)}
    failed = [a for a in r.app.store.attempts(r.run_id) if a.error]
    assert [(a.task_id, a.map_index, a.try_number) for a in failed] == [("crashing", 5, 1)]
    assert "died from SIGKILL" in (failed[0].error or "")


@task(batch_size=10)
def crashing_for_good(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@pipeline
def batched_crash_for_good() -> None:
    crashing_for_good.expand(x=list(range(12)))


def test_without_retries_only_the_crashing_instance_fails(tmp_path: Path) -> None:
    r = phloem.run(batched_crash_for_good, store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    states = {ti.map_index: ti.state for (t, _), ti in r.tasks.items() if t == "crashing_for_good"}
    assert states == {i: TaskState.FAILED if i == 3 else TaskState.SUCCESS for i in range(12)}
    assert r.output("crashing_for_good", 4) == 4


@task(batch_size=4, timeout=1)
def slow_one(x: int) -> int:
    if x == 1:
        time.sleep(60)
    return x


@pipeline
def batched_timeout() -> None:
    slow_one.expand(x=list(range(8)))


def test_a_timeout_in_a_batch_stops_that_instance_only(tmp_path: Path) -> None:
    r = phloem.run(batched_timeout, store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    tis = {ti.map_index: ti for (t, _), ti in r.tasks.items() if t == "slow_one"}
    assert {i: ti.state for i, ti in tis.items()} == {
        i: TaskState.FAILED if i == 1 else TaskState.SUCCESS for i in range(8)
    }
    assert "timed out after 1s" in (tis[1].error or "")
    assert all(ti.try_number == 1 for ti in tis.values())


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def inc(x: int) -> int:
    return x + 1


@pipeline
def wide(n: int = 5_000) -> None:
    total(inc.expand(x=numbers(n)))


def test_tiny_instances_travel_in_batches_of_their_own_accord(tmp_path: Path) -> None:
    """How long it takes is measured by benchmarks/fanout.py, not asserted here."""
    ex = Recording()
    r = phloem.run(wide, store=f"sqlite:///{tmp_path / 'db.sqlite'}", home=tmp_path, executor=ex)
    assert r.succeeded
    assert r.output("total") == sum(range(5_000)) + 5_000
    assert max(ex.batches) > 1  # chosen automatically once a few instances had run
    tries = [ti.try_number for (t, _), ti in r.tasks.items() if t == "inc"]
    assert len(tries) == 5_000 and set(tries) == {1}
    assert len([a for a in r.app.store.attempts(r.run_id) if a.task_id == "inc"]) == 5_000


@task(batch_size=4)
def waiter(x: int) -> int:
    if x == 0:  # holds its batch until the test has looked
        go = Path(os.environ[MARKS]) / "go"
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return x


@pipeline
def batched_wait() -> None:
    waiter.expand(x=list(range(4)))


def test_only_the_instance_a_worker_runs_is_running(tmp_path: Path, marks: Path) -> None:
    """The others of its batch wait in the worker as queued: none is marked running before it
    runs, and the one that runs is reported running while it runs, not when its batch ends."""
    import threading

    from phloem.store import SqlStore

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    created: list[Any] = []  # the run record, once created
    out: list[Any] = []

    def drive() -> None:
        made = created.append
        out.append(phloem.run(batched_wait, store=url, home=tmp_path, on_created=made))

    driver = threading.Thread(target=drive)
    driver.start()
    store = SqlStore(url, migrate=False)
    try:
        states: dict[int, TaskState] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if created:
                tis = store.load_instances(created[0].run_id)
                states = {ti.map_index: ti.state for ti in tis if ti.task_id == "waiter"}
                if states.get(0) is TaskState.RUNNING:
                    break
            time.sleep(0.05)
        assert states == {
            0: TaskState.RUNNING,
            1: TaskState.QUEUED,
            2: TaskState.QUEUED,
            3: TaskState.QUEUED,
        }
    finally:
        (marks / "go").write_text("go")
        driver.join(120)
        store.close()
    assert out and out[0].succeeded
    assert out[0].output("waiter") == [0, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(0, 40),
    size=st.integers(1, 9),
    slots=st.integers(1, 4),
    fails=st.sets(st.integers(0, 39), max_size=8),
    retries=st.integers(0, 2),
    order=st.randoms(use_true_random=False),
)
def test_batches_never_hold_more_slots_than_granted_and_every_instance_ends(
    width: int, size: int, slots: int, fails: set[int], retries: int, order: Any
) -> None:
    """Random widths, batch sizes, capacities, failures (each fails its first try) and orders
    in which attempts report back: the batches in flight never take more slots than there are,
    each instance is tried at most its retries plus one times, and the run ends."""

    @task(batch_size=size, retries=retries)
    def part(x: int) -> int:
        return x

    @pipeline
    def p() -> None:
        total(part.expand(x=list(range(width))))

    spec = p.spec
    snap = Snapshot.build(spec, "r", RunState.QUEUED, {}, [TI(t) for t in spec.tasks])
    now = 1.0
    events: list[AttemptFinished] = []
    for _ in range(10_000):
        d = decide(snap, now, events, Capacity(slots=slots))
        for e in d.expansions:
            snap.apply_expansion(e, now)
        for t in d.transitions:
            snap.apply_transition(t)
        if d.run_state is not None:
            snap.run_state = d.run_state
        if snap.run_state.is_terminal:
            break
        active = snap.keys_in(TaskState.QUEUED, TaskState.RUNNING)
        per_task = Counter(k[0] for k in active)
        units = sum(-(-n // (size if t == "part" else 1)) for t, n in per_task.items())
        assert units <= slots
        now += 1.0
        done = list(active)
        order.shuffle(done)
        events = []
        for k in done[: max(1, len(done) // 2)]:  # some report now, the rest later
            ti = snap.tis[k]
            failed = k[0] == "part" and k[1] in fails and ti.try_number == 1
            events.append(
                AttemptFinished(
                    k,
                    ti.try_number,
                    AttemptOutcome.FAILED if failed else AttemptOutcome.SUCCESS,
                    now,
                    output="1",
                    error="boom" if failed else None,
                )
            )
        if not events:
            now = max(now, min((ti.next_try_at or now) for ti in snap.tis.values()))
    assert snap.run_state.is_terminal
    for (t, _), ti in snap.tis.items():
        if t == "part" and ti.map_index >= 0:
            assert ti.try_number <= retries + 1
            assert ti.state in (TaskState.SUCCESS, TaskState.FAILED)
