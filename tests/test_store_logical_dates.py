"""The store's runs by logical date, on every backend (memory, SQLite, PostgreSQL): a window,
run states, and runs in which one task succeeded."""

from __future__ import annotations

from dataclasses import replace

from phloem.records import TI, RunRecord, Transition
from phloem.states import RunState, RunType, TaskState
from phloem.store import SqlStore


def day(n: int, hour: int = 0) -> str:
    return f"2024-01-{n:02d}T{hour:02d}:00:00.000000+00:00"


def add_run(
    store: SqlStore, run_id: str, logical_date: str, *, pipeline: str = "etl", state: RunState
) -> RunRecord:
    record = RunRecord(
        run_id=run_id,
        pipeline=pipeline,
        state=RunState.QUEUED,
        logical_date=logical_date,
        params={},
        created_at=1000.0,
        run_type=RunType.SCHEDULED,
    )
    store.create_run(record, [TI(task_id="load"), TI(task_id="report")])
    if state is not RunState.QUEUED:
        store.set_run_state(run_id, RunState.QUEUED, RunState.RUNNING, 1001.0)
        if state is not RunState.RUNNING:
            store.set_run_state(run_id, RunState.RUNNING, state, 1002.0)
    return record


def finish(store: SqlStore, run_id: str, task_id: str, state: TaskState) -> None:
    ti = store.get_instance(run_id, task_id)
    steps = [TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING, state]
    if state in (TaskState.UPSTREAM_FAILED, TaskState.SKIPPED):
        steps = [state]
    for new in steps:
        try_number = ti.try_number + (1 if new is TaskState.QUEUED else 0)
        nxt = replace(ti, state=new, try_number=try_number)
        assert store.commit(run_id, [Transition(ti, nxt)]).complete
        ti = nxt


def ids(runs: list[RunRecord]) -> list[str]:
    return [r.run_id for r in runs]


def test_runs_in_a_window_latest_logical_date_first(store: SqlStore) -> None:
    add_run(store, "d1", day(1), state=RunState.SUCCESS)
    add_run(store, "d2", day(2), state=RunState.FAILED)
    add_run(store, "d3", day(3), state=RunState.SUCCESS)
    add_run(store, "d3b", day(3, 12), state=RunState.RUNNING)
    add_run(store, "d5", day(5), state=RunState.SUCCESS)
    add_run(store, "other", day(3), pipeline="train", state=RunState.SUCCESS)

    # both ends are inclusive; other pipelines are not counted
    assert ids(store.runs_by_logical_date("etl", day(2), day(3, 12))) == ["d3b", "d3", "d2"]
    assert ids(store.runs_by_logical_date("etl", day(3), day(3))) == ["d3"]
    assert ids(store.runs_by_logical_date("etl", day(4), day(4, 23))) == []
    assert ids(store.runs_by_logical_date("nope", day(1), day(9))) == []
    success = [RunState.SUCCESS]
    assert ids(store.runs_by_logical_date("etl", day(1), day(9), states=success)) == [
        "d5",
        "d3",
        "d1",
    ]
    assert ids(store.runs_by_logical_date("etl", day(1), day(9), states=success, limit=1)) == [
        "d5"
    ]
    both = [RunState.FAILED, RunState.RUNNING]
    assert ids(store.runs_by_logical_date("etl", day(1), day(9), states=both)) == ["d3b", "d2"]


def test_runs_in_which_one_task_succeeded(store: SqlStore) -> None:
    add_run(store, "d1", day(1), state=RunState.SUCCESS)
    add_run(store, "d2", day(2), state=RunState.FAILED)
    add_run(store, "d3", day(3), state=RunState.FAILED)
    add_run(store, "d4", day(4), state=RunState.RUNNING)
    finish(store, "d1", "load", TaskState.SUCCESS)
    finish(store, "d2", "load", TaskState.SUCCESS)  # the run failed later, its load did not
    finish(store, "d3", "load", TaskState.FAILED)
    finish(store, "d4", "report", TaskState.SUCCESS)  # another task

    found = store.runs_by_logical_date("etl", day(1), day(9), task_succeeded="load")
    assert ids(found) == ["d2", "d1"]
    assert ids(store.runs_by_logical_date("etl", day(3), day(9), task_succeeded="load")) == []
    assert ids(
        store.runs_by_logical_date(
            "etl", day(1), day(9), task_succeeded="load", states=[RunState.SUCCESS]
        )
    ) == ["d1"]
    assert ids(store.runs_by_logical_date("etl", day(1), day(9), task_succeeded="nope")) == []
