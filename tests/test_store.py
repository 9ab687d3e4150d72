"""The store's contract, on every backend (memory, SQLite, PostgreSQL): runs, compare-and-set
commits, expansions, run state, artifacts, pools, look-ups, and races between two stores."""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from phloem.errors import RunConflict, RunNotFound, StoreError, TaskNotFound
from phloem.records import TI, Expansion, RunRecord, Transition
from phloem.states import RunState, RunType, TaskState
from phloem.store import (
    ArtifactRecord,
    ArtifactUse,
    MemoryStore,
    SqlStore,
    StoreCapabilities,
    open_store,
)

S = TaskState
DAY1 = "2024-01-01T00:00:00+00:00"
DAY2 = "2024-01-02T00:00:00+00:00"


def make_run(
    run_id: str = "run-1",
    pipeline: str = "etl",
    logical_date: str = DAY1,
    key: str | None = None,
    created_at: float = 1000.0,
    state: RunState = RunState.QUEUED,
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        pipeline=pipeline,
        state=state,
        logical_date=logical_date,
        params={"n": 3, "name": "x", "items": [1, 2]},
        created_at=created_at,
        run_type=RunType.MANUAL,
        source="flows.py:etl",
        code_hash="abc123",
        data_interval_start=logical_date,
        data_interval_end=logical_date,
        idempotency_key=key,
    )


def tis(*task_ids: str) -> list[TI]:
    return [TI(task_id=t) for t in task_ids]


def new_run(store: SqlStore, run_id: str = "run-1", *task_ids: str, **kw: object) -> RunRecord:
    return store.create_run(make_run(run_id, **kw), tis(*(task_ids or ("a", "b"))))  # type: ignore[arg-type]


def move(ti: TI, state: TaskState, reason: str | None = None, **changes: object) -> Transition:
    return Transition(ti, replace(ti, state=state, **changes), reason)  # type: ignore[arg-type]


def by_key(store: SqlStore, run_id: str = "run-1") -> dict[tuple[str, int], TI]:
    return {ti.key: ti for ti in store.load_instances(run_id)}


# -- runs ---------------------------------------------------------------------------------------


def test_create_run_round_trip(store: SqlStore) -> None:
    run = make_run(key="k-1")
    instances = [
        TI(task_id="a"),
        TI(task_id="m", map_index=-1),
        TI(
            task_id="c",
            state=S.SUCCESS,
            try_number=2,
            retry_base=1,
            next_try_at=5.5,
            queued_at=1.0,
            started_at=2.0,
            ended_at=3.25,
            first_started_at=1.0,
            map_length=4,
            follow=("x", "y"),
            output='{"v": 1}',
            error="old error",
        ),
    ]
    store.create_run(run, instances)
    assert store.get_run("run-1") == run
    assert sorted(store.load_instances("run-1"), key=lambda t: t.task_id) == sorted(
        instances, key=lambda t: t.task_id
    )
    assert store.get_instance("run-1", "c") == instances[2]
    events = store.events("run-1")
    assert [(e.task_id, e.new_state) for e in events] == [(None, "queued")]
    assert store.find_run("etl", DAY1) == run
    assert store.find_run("etl", idempotency_key="k-1") == run
    assert store.find_run("etl", DAY2) is None
    assert store.find_run("other", DAY1) is None


def test_empty_follow_round_trips(store: SqlStore) -> None:
    store.create_run(make_run(), [TI(task_id="b", state=S.SUCCESS, follow=())])
    assert store.get_instance("run-1", "b").follow == ()


def test_get_instance_unknown(store: SqlStore) -> None:
    new_run(store)
    with pytest.raises(TaskNotFound, match="no task instance 'zz\\[3\\]'"):
        store.get_instance("run-1", "zz", 3)


def _nothing_written(store: SqlStore, run_id: str) -> None:
    with pytest.raises(RunNotFound):
        store.get_run(run_id)
    assert store.load_instances(run_id) == []
    assert store.events(run_id) == []


def test_duplicate_logical_date_conflicts(store: SqlStore) -> None:
    new_run(store, "run-1")
    with pytest.raises(RunConflict) as info:
        new_run(store, "run-2", "a", "b", "c")
    assert "run-1" in str(info.value)
    assert DAY1 in str(info.value)
    assert info.value.context["run"] == "run-1"
    _nothing_written(store, "run-2")
    # another pipeline, or another day, is fine
    new_run(store, "run-3", pipeline="other")
    new_run(store, "run-4", logical_date=DAY2)
    assert len(store.load_instances("run-1")) == 2


def test_duplicate_idempotency_key_conflicts(store: SqlStore) -> None:
    new_run(store, "run-1", key="nightly")
    with pytest.raises(RunConflict) as info:
        new_run(store, "run-2", logical_date=DAY2, key="nightly")
    assert "run-1" in str(info.value)
    _nothing_written(store, "run-2")
    new_run(store, "run-3", logical_date=DAY2, key="other")
    new_run(store, "run-4", pipeline="p2", key="nightly")  # keys are per pipeline
    # runs without a key never conflict on it
    new_run(store, "run-5", logical_date="2024-02-01T00:00:00+00:00")
    new_run(store, "run-6", logical_date="2024-02-02T00:00:00+00:00")


def test_failed_create_leaves_nothing_behind(store: SqlStore) -> None:
    """The run row goes in before its instances; a bad instance list rolls both back."""
    with pytest.raises(StoreError, match="could not create run run-9"):
        store.create_run(make_run("run-9"), [TI(task_id="a"), TI(task_id="a")])
    _nothing_written(store, "run-9")
    new_run(store, "run-9")  # and the same run can then be created


def test_get_run_by_unique_prefix(store: SqlStore) -> None:
    new_run(store, "abc123", logical_date=DAY1)
    new_run(store, "abd456", logical_date=DAY2)
    assert store.get_run("abc").run_id == "abc123"
    assert store.get_run("abd4").run_id == "abd456"
    assert store.get_run("abc123").run_id == "abc123"
    with pytest.raises(RunNotFound):
        store.get_run("ab")  # ambiguous
    with pytest.raises(RunNotFound, match="no run 'zz'"):
        store.get_run("zz")


def test_list_runs_filters(store: SqlStore) -> None:
    for i in range(5):
        new_run(
            store,
            f"r{i}",
            pipeline="etl" if i % 2 == 0 else "train",
            logical_date=f"2024-01-0{i + 1}T00:00:00+00:00",
            created_at=100.0 + i,
        )
    store.set_run_state("r4", RunState.QUEUED, RunState.RUNNING, 200.0)
    store.set_run_state("r2", RunState.QUEUED, RunState.FAILED, 200.0)
    assert [r.run_id for r in store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["r4", "r3"]
    assert [r.run_id for r in store.list_runs(pipeline="etl")] == ["r4", "r2", "r0"]
    assert [r.run_id for r in store.list_runs(pipeline="train")] == ["r3", "r1"]
    assert [r.run_id for r in store.list_runs(states=[RunState.QUEUED])] == ["r3", "r1", "r0"]
    assert [
        r.run_id
        for r in store.list_runs(pipeline="etl", states=[RunState.RUNNING, RunState.FAILED])
    ] == ["r4", "r2"]
    assert store.list_runs(pipeline="nope") == []


def test_run_state_compare_and_set(store: SqlStore) -> None:
    new_run(store)
    assert not store.set_run_state("run-1", RunState.RUNNING, RunState.SUCCESS, 5.0)
    assert store.get_run("run-1").state is RunState.QUEUED
    assert store.set_run_state("run-1", RunState.QUEUED, RunState.RUNNING, 10.0)
    run = store.get_run("run-1")
    assert (run.state, run.started_at, run.ended_at) == (RunState.RUNNING, 10.0, None)
    applied = store.commit("run-1", [], run_state=(RunState.QUEUED, RunState.SUCCESS), now=20.0)
    assert applied.run_state is None  # it is no longer queued
    applied = store.commit("run-1", [], run_state=(RunState.RUNNING, RunState.SUCCESS), now=30.0)
    assert applied.run_state is RunState.SUCCESS
    run = store.get_run("run-1")
    assert (run.state, run.started_at, run.ended_at) == (RunState.SUCCESS, 10.0, 30.0)
    # a retry brings it back to running, with no end yet, started again (a pipeline's timeout
    # counts from the reopen)
    assert store.set_run_state("run-1", RunState.SUCCESS, RunState.RUNNING, 40.0)
    run = store.get_run("run-1")
    assert (run.state, run.started_at, run.ended_at) == (RunState.RUNNING, 40.0, None)
    states = [(e.old_state, e.new_state) for e in store.events("run-1")]
    assert states == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "success"),
        ("success", "running"),
    ]


# -- commits --------------------------------------------------------------------------------------


def test_commit_applies_transitions_events_and_attempts(store: SqlStore) -> None:
    new_run(store)
    a, b = TI(task_id="a"), TI(task_id="b")
    a1 = move(a, S.SCHEDULED).new
    applied = store.commit(
        "run-1",
        [
            move(a, S.SCHEDULED, "ready"),
            Transition(a1, replace(a1, state=S.QUEUED, try_number=1, queued_at=10.0)),
        ],
        run_state=(RunState.QUEUED, RunState.RUNNING),
        now=10.0,
    )
    assert applied.complete and applied.lost == []
    assert applied.run_state is RunState.RUNNING
    assert [t.new.state for t in applied.transitions] == [S.SCHEDULED, S.QUEUED]
    got = by_key(store)
    assert got[("a", -1)].state is S.QUEUED
    assert got[("a", -1)].try_number == 1
    assert got[("b", -1)] == b
    [att] = store.attempts("run-1")
    assert (att.task_id, att.map_index, att.try_number, att.state, att.queued_at) == (
        "a",
        -1,
        1,
        "queued",
        10.0,
    )
    # started, then failed: the attempt row follows
    q = got[("a", -1)]
    r = replace(q, state=S.RUNNING, started_at=11.0)
    store.commit("run-1", [Transition(q, r)], now=11.0)
    f = replace(r, state=S.UP_FOR_RETRY, ended_at=12.0, error="boom", next_try_at=20.0)
    store.commit("run-1", [Transition(r, f, "retry 1 of 1")], now=12.0)
    [att] = store.attempts("run-1", "a")
    assert (att.state, att.started_at, att.ended_at, att.error) == (
        "up_for_retry",
        11.0,
        12.0,
        "boom",
    )
    # the second try gets its own attempt row
    s2 = replace(f, state=S.SCHEDULED)
    q2 = replace(s2, state=S.QUEUED, try_number=2, queued_at=20.0, started_at=None, ended_at=None)
    done = replace(q2, state=S.SUCCESS, started_at=21.0, ended_at=22.0, output="ref", error=None)
    store.commit("run-1", [Transition(f, s2), Transition(s2, q2)], now=20.0)
    store.commit("run-1", [Transition(q2, done)], now=22.0)
    assert [(x.try_number, x.state) for x in store.attempts("run-1", "a")] == [
        (1, "up_for_retry"),
        (2, "success"),
    ]
    assert store.attempts("run-1", "b") == []
    assert store.get_instance("run-1", "a") == done
    events = [
        (e.task_id, e.try_number, e.old_state, e.new_state, e.at, e.reason)
        for e in store.events("run-1")
        if e.task_id
    ]
    assert events == [
        ("a", 0, "pending", "scheduled", 10.0, "ready"),
        ("a", 1, "scheduled", "queued", 10.0, None),
        ("a", 1, "queued", "running", 11.0, None),
        ("a", 1, "running", "up_for_retry", 12.0, "retry 1 of 1"),
        ("a", 1, "up_for_retry", "scheduled", 20.0, None),
        ("a", 2, "scheduled", "queued", 20.0, None),
        ("a", 2, "queued", "success", 22.0, None),
    ]


def test_lost_compare_and_set_changes_nothing(store: SqlStore) -> None:
    new_run(store, "run-1", "a", "b", "c")
    a, b, c = TI(task_id="a"), TI(task_id="b"), TI(task_id="c")
    stale_state = Transition(
        replace(a, state=S.SCHEDULED), replace(a, state=S.QUEUED, try_number=1)
    )
    stale_try = Transition(replace(b, try_number=3), replace(b, state=S.SCHEDULED, try_number=3))
    good = move(c, S.SCHEDULED)
    applied = store.commit("run-1", [stale_state, good, stale_try], now=5.0)
    assert sorted(applied.lost) == [("a", -1), ("b", -1)]
    assert not applied.complete
    assert applied.transitions == [good]
    got = by_key(store)
    assert got[("a", -1)] == a
    assert got[("b", -1)] == b
    assert got[("c", -1)].state is S.SCHEDULED
    assert [e.task_id for e in store.events("run-1") if e.task_id] == ["c"]
    assert store.attempts("run-1") == []  # the lost queued transition made no attempt row


def test_every_transition_lost(store: SqlStore) -> None:
    new_run(store)
    a = TI(task_id="a")
    stale = replace(a, state=S.SCHEDULED)  # the store holds it pending: the CAS loses
    applied = store.commit(
        "run-1", [Transition(stale, replace(a, state=S.QUEUED, try_number=1))], now=1.0
    )
    assert applied.lost == [("a", -1)]
    assert applied.transitions == []
    assert by_key(store)[("a", -1)] == a


def test_lost_transition_keeps_the_run_state(store: SqlStore) -> None:
    """A run state decided from a transition that lost its compare-and-set is not applied: the
    driver reloads and decides again from what really happened."""
    new_run(store)
    store.set_run_state("run-1", RunState.QUEUED, RunState.RUNNING, 1.0)
    a = TI(task_id="a")
    store.commit("run-1", [move(a, S.SCHEDULED)], now=1.0)
    # another actor moved 'a' on; this decision thought 'a' still scheduled and the run done
    store.commit("run-1", [move(replace(a, state=S.SCHEDULED), S.SKIPPED)], now=2.0)
    late = move(replace(a, state=S.SCHEDULED), S.UPSTREAM_FAILED)
    applied = store.commit("run-1", [late], run_state=(RunState.RUNNING, RunState.FAILED), now=3.0)
    assert applied.lost == [("a", -1)]
    assert applied.run_state is None
    assert store.get_run("run-1").state is RunState.RUNNING


def test_chain_of_one_key_collapses(store: SqlStore) -> None:
    new_run(store, "run-1", "a", "b")
    a, b = TI(task_id="a"), TI(task_id="b")
    s1 = replace(a, state=S.SCHEDULED)
    q1 = replace(s1, state=S.QUEUED, try_number=1, queued_at=3.0)
    r1 = replace(q1, state=S.RUNNING, started_at=3.5)
    chain = [Transition(a, s1), Transition(s1, q1), Transition(q1, r1)]
    applied = store.commit("run-1", [*chain, move(b, S.SKIPPED)], now=3.0)
    assert applied.complete
    assert store.get_instance("run-1", "a") == r1
    assert [(e.old_state, e.new_state) for e in store.events("run-1") if e.task_id == "a"] == [
        ("pending", "scheduled"),
        ("scheduled", "queued"),
        ("queued", "running"),
    ]
    [att] = store.attempts("run-1")
    assert (att.try_number, att.state, att.started_at) == (1, "running", 3.5)
    # a chain that starts from a stale state is lost as a whole; others still apply
    stale_chain = [Transition(s1, q1), Transition(q1, r1)]
    b_now = store.get_instance("run-1", "b")
    applied = store.commit("run-1", [*stale_chain, move(b_now, S.PENDING)], now=4.0)
    assert applied.lost == [("a", -1)]
    assert [t.key for t in applied.transitions] == [("b", -1)]
    assert store.get_instance("run-1", "a") == r1


def test_chains_interleaved_with_other_keys(store: SqlStore) -> None:
    new_run(store, "run-1", "a", "b")
    a, b = TI(task_id="a"), TI(task_id="b")
    a1, b1 = replace(a, state=S.SCHEDULED), replace(b, state=S.SCHEDULED)
    a2 = replace(a1, state=S.QUEUED, try_number=1)
    applied = store.commit(
        "run-1", [Transition(a, a1), Transition(b, b1), Transition(a1, a2)], now=1.0
    )
    assert applied.complete
    assert by_key(store) == {("a", -1): a2, ("b", -1): b1}


def test_expansion_replaces_the_placeholder(store: SqlStore) -> None:
    store.create_run(make_run(), tis("m", "z"))
    ph = TI(task_id="m")
    first = TI(task_id="m", map_index=0, state=S.SCHEDULED)
    queued = replace(first, state=S.QUEUED, try_number=1, queued_at=2.0)
    applied = store.commit(
        "run-1", [Transition(first, queued)], expansions=[Expansion(ph, 3)], now=2.0
    )
    assert applied.complete
    assert applied.expansions == [Expansion(ph, 3)]
    got = by_key(store)
    assert ("m", -1) not in got
    assert got[("m", 0)] == queued
    assert got[("m", 1)] == TI(task_id="m", map_index=1, state=S.SCHEDULED)
    assert got[("m", 2)].state is S.SCHEDULED
    assert [(a.task_id, a.map_index, a.try_number) for a in store.attempts("run-1")] == [
        ("m", 0, 1),
    ]


def test_empty_expansion_skips_the_placeholder(store: SqlStore) -> None:
    store.create_run(make_run(), tis("m"))
    applied = store.commit("run-1", [], expansions=[Expansion(TI(task_id="m"), 0)], now=7.0)
    assert applied.complete
    [ti] = store.load_instances("run-1")
    assert (ti.key, ti.state, ti.ended_at) == (("m", -1), S.SKIPPED, 7.0)


def test_expansions_are_in_the_history(store: SqlStore) -> None:
    """Every change is an event row: the instances an expansion creates, and the placeholder
    an empty expansion skips."""
    store.create_run(make_run(), tis("m", "e"))
    store.commit(
        "run-1",
        [],
        expansions=[Expansion(TI(task_id="m"), 2), Expansion(TI(task_id="e"), 0)],
        now=4.0,
    )
    events = {
        (e.task_id, e.map_index, e.old_state, e.new_state, e.at)
        for e in store.events("run-1")
        if e.task_id
    }
    assert events == {
        ("m", 0, "pending", "scheduled", 4.0),
        ("m", 1, "pending", "scheduled", 4.0),
        ("e", -1, "pending", "skipped", 4.0),
    }


def test_stale_expansion_is_lost_with_its_instances(store: SqlStore) -> None:
    store.create_run(make_run(), tis("m", "z"))
    z = TI(task_id="z")
    stale = replace(TI(task_id="m"), state=S.SCHEDULED)
    first = TI(task_id="m", map_index=0, state=S.SCHEDULED)
    applied = store.commit(
        "run-1",
        [Transition(first, replace(first, state=S.QUEUED, try_number=1)), move(z, S.SCHEDULED)],
        expansions=[Expansion(stale, 2)],
        now=1.0,
    )
    assert sorted(applied.lost) == [("m", -1), ("m", 0)]
    assert applied.expansions == []
    assert [t.key for t in applied.transitions] == [("z", -1)]
    assert by_key(store) == {("m", -1): TI(task_id="m"), ("z", -1): replace(z, state=S.SCHEDULED)}


def test_reopen_resets_instances_and_replaces_mapped_ones(store: SqlStore) -> None:
    store.create_run(make_run(), [TI(task_id="a", state=S.FAILED, try_number=2), *tis("m")])
    store.set_run_state("run-1", RunState.QUEUED, RunState.FAILED, 4.0)
    failed = store.get_instance("run-1", "a")
    store.commit("run-1", [], expansions=[Expansion(TI(task_id="m"), 2)], now=4.5)
    reset = [(failed, replace(failed, state=S.PENDING))]
    placeholder = TI(task_id="m", try_number=1, retry_base=1)
    n = store.reopen_run("run-1", reset, [placeholder], "retry", 5.0)
    assert n == 2
    assert store.get_instance("run-1", "a").state is S.PENDING
    got = by_key(store)
    assert [k for k in got if k[0] == "m"] == [("m", -1)]
    assert got[("m", -1)].try_number == 1
    assert store.get_run("run-1").state is RunState.RUNNING
    # again: the reset's compare-and-set loses, nothing more changes
    assert store.reopen_run("run-1", reset, [], "retry", 6.0) == 0
    assert store.get_run("run-1").state is RunState.RUNNING


# -- artifacts and pools --------------------------------------------------------------------------


def test_artifacts_and_uses_are_recorded_once(store: SqlStore) -> None:
    new_run(store)
    art = ArtifactRecord("d" * 64, "json", "builtins.list", 12, "ab/cd")
    other = ArtifactRecord("e" * 64, "parquet", "pandas.DataFrame", 3400, "ef/gh")
    out = ArtifactUse(art.digest, "a", -1, "output", 1)
    inp = ArtifactUse(art.digest, "b", -1, "input", 1)
    store.commit("run-1", [], artifacts=[art, art, other], uses=[out, out, inp], now=1.0)
    store.commit("run-1", [], artifacts=[art], uses=[out, inp], now=2.0)
    assert store.artifact(art.digest) == art
    assert store.artifact(other.digest) == other
    assert store.artifact("f" * 64) is None
    assert sorted(store.artifact_uses("run-1"), key=lambda u: u.role) == [inp, out]
    # the same artifact used by another run is recorded for that run
    new_run(store, "run-2", logical_date=DAY2)
    store.commit("run-2", [], artifacts=[art], uses=[inp], now=3.0)
    assert store.artifact_uses("run-2") == [inp]
    assert len(store.artifact_uses("run-1")) == 2


def test_recording_a_use_reads_none_of_the_runs_earlier_uses(store: SqlStore) -> None:
    """Every instance of a mapped task reads the same input: a commit that read the run's
    earlier uses of it grew with the run, and a wide run became quadratic."""
    from sqlalchemy import event

    new_run(store)
    art = ArtifactRecord("d" * 64, "json", "builtins.list", 12, "ab/cd")
    store.commit("run-1", [], artifacts=[art], uses=[], now=1.0)
    reads: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "artifact_uses" in statement:
            reads.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        for i in range(20):
            use = ArtifactUse(art.digest, "mapped", i, "input", 1)
            store.commit("run-1", [], artifacts=[art], uses=[use, use], now=2.0 + i)
        store.commit("run-1", [], uses=[ArtifactUse(art.digest, "mapped", 3, "input", 1)], now=9.0)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert reads == []
    assert len(store.artifact_uses("run-1")) == 20


def test_pools(store: SqlStore) -> None:
    assert store.pools() == {}
    store.set_pool("gpu", 2, "the two GPUs")
    store.set_pool("db", 0)
    assert store.pools() == {"gpu": 2, "db": 0}
    store.set_pool("gpu", 4)
    assert store.pools() == {"gpu": 4, "db": 0}
    with pytest.raises(StoreError, match="negative"):
        store.set_pool("gpu", -1)
    assert store.pools()["gpu"] == 4


# -- two stores racing ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'phloem.db'}"
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


def _concurrently(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls in threads released together; each result, or the exception raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported by the caller
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _race(url: str, run_id: str, transitions: list[list[Transition]]) -> list[object]:
    """Each list of transitions committed at the same moment by a store of its own."""
    stores = [SqlStore(url) for _ in transitions]
    try:
        return _concurrently(
            [
                partial(st.commit, run_id, ts, now=float(i))
                for i, (st, ts) in enumerate(zip(stores, transitions, strict=True))
            ]
        )
    finally:
        for st in stores:
            st.close()


def test_two_stores_racing_for_one_transition(shared_url: str) -> None:
    setup = SqlStore(shared_url)
    names = [f"t{i}" for i in range(8)]
    setup.create_run(make_run(), tis(*names))
    for name in names:
        ti = TI(task_id=name)
        results = _race(shared_url, "run-1", [[move(ti, S.SCHEDULED)], [move(ti, S.SKIPPED)]])
        assert not [r for r in results if isinstance(r, Exception)], results
        winners = [r for r in results if r.transitions]  # type: ignore[attr-defined]
        losers = [r for r in results if r.lost]  # type: ignore[attr-defined]
        assert len(winners) == 1 and len(losers) == 1, (name, results)
        final = setup.get_instance("run-1", name)
        assert final == winners[0].transitions[0].new  # type: ignore[attr-defined]
        assert len([e for e in setup.events("run-1") if e.task_id == name]) == 1
    setup.close()


def test_racing_queue_makes_one_attempt(shared_url: str) -> None:
    setup = SqlStore(shared_url)
    setup.create_run(make_run(), tis("a"))
    sched = replace(TI(task_id="a"), state=S.SCHEDULED)
    setup.commit("run-1", [move(TI(task_id="a"), S.SCHEDULED)], now=0.0)
    q = Transition(sched, replace(sched, state=S.QUEUED, try_number=1))
    results = _race(shared_url, "run-1", [[q], [q], [q]])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(1 for r in results if r.transitions) == 1  # type: ignore[attr-defined]
    assert len(setup.attempts("run-1")) == 1
    setup.close()


@pytest.mark.postgres
def test_overlapping_commits_in_opposite_orders_do_not_deadlock(pg_url: str) -> None:
    """Two actors committing changes of the same instances, listed in opposite orders, must
    not deadlock: one wins each instance, the other loses it, neither raises."""
    setup = SqlStore(pg_url)
    names = [f"t{i:02d}" for i in range(40)]
    setup.create_run(make_run(), tis(*names))
    for rnd in range(15):
        batches = []
        for order in (names, names[::-1]):
            batch = []
            for name in order:
                cur = TI(task_id=name, try_number=rnd)
                batch.append(Transition(cur, replace(cur, try_number=rnd + 1)))
            batches.append(batch)
        results = _race(pg_url, "run-1", batches)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors[0]
        won = [t.key for r in results for t in r.transitions]  # type: ignore[attr-defined]
        assert sorted(won) == [(n, -1) for n in names]  # each instance changed exactly once
    setup.close()


def test_racing_expansions_create_the_instances_once(shared_url: str) -> None:
    setup = SqlStore(shared_url)
    setup.create_run(make_run(), tis("m"))
    e = Expansion(TI(task_id="m"), 3)
    stores = [SqlStore(shared_url) for _ in range(2)]
    results = _concurrently([partial(st.commit, "run-1", [], expansions=[e]) for st in stores])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(len(r.expansions) for r in results) == [0, 1]  # type: ignore[attr-defined]
    assert sorted(ti.map_index for ti in setup.load_instances("run-1")) == [0, 1, 2]
    for st in (*stores, setup):
        st.close()


def test_two_runs_recording_the_same_new_artifact_at_once(shared_url: str) -> None:
    """Two runs that produce the same content commit it concurrently: one artifact row, one
    use per run, and neither commit fails."""
    setup = SqlStore(shared_url)
    setup.create_run(make_run("run-1"), tis("a"))
    setup.create_run(make_run("run-2", logical_date=DAY2), tis("a"))
    stores = [SqlStore(shared_url) for _ in range(2)]
    for n in range(10):
        art = ArtifactRecord(f"{n:064d}", "json", "builtins.dict", 10, f"k/{n}")
        use = ArtifactUse(art.digest, "a", -1, "output", 1)
        calls = [
            partial(st.commit, f"run-{i + 1}", [], artifacts=[art], uses=[use], now=1.0)
            for i, st in enumerate(stores)
        ]
        results = _concurrently(calls)  # type: ignore[arg-type]
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors[0]
        assert setup.artifact(art.digest) == art
    assert len(setup.artifact_uses("run-1")) == 10
    assert len(setup.artifact_uses("run-2")) == 10
    for st in (*stores, setup):
        st.close()


def test_the_store_refuses_a_transition_the_table_forbids(store: SqlStore) -> None:
    from dataclasses import replace

    from phloem.records import Transition
    from phloem.states import TaskState

    new_run(store, "run-forbidden")
    ti = store.load_instances("run-forbidden")[0]
    done = replace(ti, state=TaskState.SUCCESS)
    with pytest.raises(StoreError, match="refused transition"):
        store.commit("run-forbidden", [Transition(ti, done)])
    assert store.load_instances("run-forbidden")[0].state is TaskState.PENDING


# -- the port: capabilities instead of dialects ----------------------------------------------------


def test_capabilities_say_what_each_backend_can_do(store: SqlStore, store_url: str) -> None:
    caps = store.capabilities
    if store_url == "memory":
        assert caps == StoreCapabilities(shared=False, notify=False, multi_writer=False)
        assert store.shared_url is None  # no other process can open it
        assert store.work_listener() is None
    elif store_url.startswith("sqlite"):
        assert caps == StoreCapabilities(shared=True, notify=False, multi_writer=False)
        assert store.shared_url == store_url
        assert store.work_listener() is None
    else:
        assert caps == StoreCapabilities(shared=True, notify=True, multi_writer=True)
        listener = store.work_listener()
        assert listener is not None
        try:
            store.announce_work()
            select.select([listener], [], [], 5)
            assert listener.drain()
        finally:
            listener.close()
    store.announce_work()  # a hint: never fails, whatever the backend


def test_the_memory_store_is_opened_by_name_not_as_a_sql_url() -> None:
    store = open_store("memory")
    assert isinstance(store, MemoryStore)
    store.close()
    with pytest.raises(StoreError, match="open_store"):
        SqlStore("memory")


def test_outage_timeout_belongs_to_the_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", outage_timeout=1.5)
    assert store.outage_timeout == 1.5 and store.catalog.outage_timeout == 1.5
    store.close()


def _synchronous(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)


def test_sqlite_commits_survive_a_process_crash_by_default(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert _synchronous(store) == 1  # NORMAL: through a process crash, not a power loss
    finally:
        store.close()


def test_sqlite_url_asks_for_full_sync_and_workers_get_it_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}?synchronous=full"
    store = SqlStore(url)
    try:
        assert _synchronous(store) == 2  # FULL: every commit synced, through a power loss
        assert store.shared_url == url  # the processes a run starts open it the same way
        store.create_run(make_run(), [])
        assert len(store.list_runs()) == 1
    finally:
        store.close()


def test_sqlite_url_with_an_unknown_sync_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"synchronous='often'.*normal, full, extra"):
        SqlStore(f"sqlite:///{tmp_path / 'p.db'}?synchronous=often")
