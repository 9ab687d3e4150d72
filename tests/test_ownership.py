"""Who drives a run: leases fence out a driver that lost its run; one bad run never stops a
scheduler; runs survive code changes; stopping a scheduler frees its runs at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from phloem import pipeline, task
from phloem.app import Phloem
from phloem.artifacts import ArtifactStore
from phloem.driver import Loop, RunSession
from phloem.errors import RunConflict
from phloem.executors.inline import InlineExecutor
from phloem.records import TI
from phloem.runs import create_run
from phloem.states import RunState, TaskState
from phloem.store import Commit, SqlStore
from phloem.store.catalog import Catalog


@task
def a() -> int:
    return 1


@task
def b(x: int) -> int:
    return x + 1


@pipeline
def v1() -> None:
    a()


@pipeline(name="v1")
def v2() -> None:
    b(a())


def test_a_driver_that_lost_its_run_cannot_change_it(store: SqlStore) -> None:
    run = create_run(store, v1.spec, owner="scheduler:a:1")
    now = time.time()
    catalog = Catalog(store)
    assert (
        catalog.claim_run(run.run_id, "scheduler:b:2", 30, now, take_from="scheduler:a:1") is None
    )
    ti = store.load_instances(run.run_id)[0]
    from dataclasses import replace

    from phloem.records import Transition

    stale = Commit(
        run.run_id, (Transition(ti, replace(ti, state=TaskState.SCHEDULED)),), owner="scheduler:a:1"
    )
    applied = store.commit_many([stale], now=now)[0]
    assert applied.fenced and not applied.transitions
    assert store.load_instances(run.run_id)[0].state is TaskState.PENDING
    fresh = Commit(
        run.run_id, (Transition(ti, replace(ti, state=TaskState.SCHEDULED)),), owner="scheduler:b:2"
    )
    assert store.commit_many([fresh], now=now)[0].transitions
    assert store.get_run(run.run_id).owner == "scheduler:b:2"


def _session(store: SqlStore, spec: object, run: object, tmp_path: Path) -> RunSession:
    env = Phloem.open(store, tmp_path)
    return RunSession(store, spec, run, env.artifacts, env.logs_dir)  # type: ignore[arg-type]


def test_a_run_picks_up_tasks_its_pipeline_gained(store: SqlStore, tmp_path: Path) -> None:
    run = create_run(store, v1.spec)
    session = _session(store, v2.spec, run, tmp_path)
    assert {ti.task_id for ti in store.load_instances(run.run_id)} == {"a", "b"}
    ex = InlineExecutor()
    ex.start({"v1": v2.spec}, ArtifactStore(str(tmp_path / "artifacts")))
    loop = Loop(ex)
    loop.add(session)
    loop.run_until_idle()
    assert store.get_run(run.run_id).state is RunState.SUCCESS
    assert {ti.task_id: ti.state for ti in store.load_instances(run.run_id)} == {
        "a": TaskState.SUCCESS,
        "b": TaskState.SUCCESS,
    }


def test_one_broken_run_is_let_go_and_the_others_finish(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = create_run(store, v2.spec, logical_date="2026-01-01")
    good = create_run(store, v2.spec, logical_date="2026-01-02")
    from phloem.driver.inputs import Inputs

    real = Inputs.arguments

    def arguments(self: Inputs, snap: object, ti: TI) -> object:
        if snap.run_id == bad.run_id and ti.task_id == "b":  # type: ignore[attr-defined]
            raise KeyError("a bug in the driver, for this run only")
        return real(self, snap, ti)  # type: ignore[arg-type]

    monkeypatch.setattr(Inputs, "arguments", arguments)
    ex = InlineExecutor()
    ex.start({"v1": v2.spec}, ArtifactStore(str(tmp_path / "artifacts")))
    loop = Loop(ex, isolate=True)
    loop.add(_session(store, v2.spec, bad, tmp_path))
    loop.add(_session(store, v2.spec, good, tmp_path))
    deadline = time.time() + 20
    while loop.sessions and time.time() < deadline:
        loop.turn(max_wait=0.1)
    assert store.get_run(good.run_id).state is RunState.SUCCESS
    assert bad.run_id in loop.broken and bad.run_id not in loop.sessions
    assert store.get_run(bad.run_id).state is RunState.RUNNING  # left resumable


def test_without_isolation_the_error_reaches_the_caller(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = create_run(store, v2.spec)
    from phloem.driver.inputs import Inputs

    monkeypatch.setattr(Inputs, "arguments", lambda *a: (_ for _ in ()).throw(KeyError("x")))
    ex = InlineExecutor()
    ex.start({"v1": v2.spec}, ArtifactStore(str(tmp_path / "artifacts")))
    loop = Loop(ex)
    loop.add(_session(store, v2.spec, run, tmp_path))
    with pytest.raises(KeyError):
        loop.run_until_idle()


def test_a_run_id_collision_picks_a_new_id_and_loses_no_interval(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phloem.runs as runs

    first = create_run(store, v1.spec, logical_date="2026-01-01")
    ids = iter([first.run_id, first.run_id, "20260101T000000-fresh0000001"])
    with monkeypatch.context() as m:
        m.setattr(runs, "new_run_id", lambda now: next(ids))
        second = create_run(store, v1.spec, logical_date="2026-01-02")
    assert second.run_id == "20260101T000000-fresh0000001"
    assert {r.logical_date[:10] for r in store.list_runs()} == {"2026-01-01", "2026-01-02"}
    with pytest.raises(RunConflict, match="already has a run"):
        create_run(store, v1.spec, logical_date="2026-01-02")


@task
def make_list() -> list[int]:
    return [1, 2]


@task
def boom(x: int) -> int:
    raise ValueError("bad")


@pipeline
def mapped_failure() -> None:
    boom.expand(x=make_list())


def test_reopening_a_run_is_all_or_nothing(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phloem
    from phloem.runs import reopen
    from phloem.store.writes import Writer

    r = phloem.run(mapped_failure, executor="inline", store=store, home=tmp_path)
    assert r.state is RunState.FAILED
    before = {ti.key: ti.state for ti in store.load_instances(r.run_id)}

    def crash(*args: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(Writer, "replace_mapped", crash)
    with pytest.raises(RuntimeError):
        reopen(store, mapped_failure.spec, r.run_id, task="make_list", downstream=True, reason="t")
    assert store.get_run(r.run_id).state is RunState.FAILED
    assert {ti.key: ti.state for ti in store.load_instances(r.run_id)} == before


def test_backfill_runs_yield_to_scheduled_runs_but_not_forever(
    store: SqlStore, tmp_path: Path
) -> None:
    import phloem.driver.loop as loop_mod

    back = create_run(store, v1.spec, logical_date="2026-01-01", run_type="backfill")
    sched = create_run(store, v1.spec, logical_date="2026-01-02", run_type="scheduled")
    ex = InlineExecutor()  # one slot: somebody has to wait
    ex.start({"v1": v1.spec}, ArtifactStore(str(tmp_path / "artifacts")))
    loop = Loop(ex)
    loop.add(_session(store, v1.spec, back, tmp_path))
    loop.add(_session(store, v1.spec, sched, tmp_path))
    loop.run_until_idle()
    first = {r: store.attempts(r)[0].queued_at for r in (back.run_id, sched.run_id)}
    assert first[sched.run_id] < first[back.run_id]
    # a backfill run that waited past its patience goes first
    back2 = create_run(store, v1.spec, logical_date="2026-01-03", run_type="backfill")
    sched2 = create_run(store, v1.spec, logical_date="2026-01-04", run_type="scheduled")
    clock = [1000.0]
    loop = Loop(ex, clock=lambda: clock[0])
    loop.add(_session(store, v1.spec, back2, tmp_path))
    clock[0] += loop_mod.BACKFILL_PATIENCE + 1
    loop.add(_session(store, v1.spec, sched2, tmp_path))
    loop.turn(max_wait=0)  # one slot: the run that goes first takes it
    assert store.attempts(back2.run_id) and not store.attempts(sched2.run_id)
    loop.run_until_idle()


def test_a_fenced_run_in_a_shared_commit_changes_nothing_and_the_others_go_on(
    store: SqlStore,
) -> None:
    """One loop turn commits many runs at once; on PostgreSQL their fencing checks travel with
    the compare-and-sets. A run another driver took changes nothing, the others are applied."""
    from dataclasses import replace

    from phloem.records import Transition

    ours = create_run(store, v1.spec, owner="scheduler:a:1")
    taken = create_run(store, v1.spec, owner="scheduler:a:1")
    now = time.time()
    assert (
        Catalog(store).claim_run(taken.run_id, "scheduler:b:2", 30, now, take_from="scheduler:a:1")
        is None
    )

    def schedule(run_id: str) -> Commit:
        ti = store.load_instances(run_id)[0]
        change = Transition(ti, replace(ti, state=TaskState.SCHEDULED))
        return Commit(run_id, (change,), owner="scheduler:a:1")

    applied = store.commit_many([schedule(ours.run_id), schedule(taken.run_id)], now=now)
    assert [a.fenced for a in applied] == [False, True]
    assert applied[0].transitions and not applied[1].transitions
    assert store.load_instances(ours.run_id)[0].state is TaskState.SCHEDULED
    assert store.load_instances(taken.run_id)[0].state is TaskState.PENDING
    assert store.get_run(taken.run_id).owner == "scheduler:b:2"


def test_a_run_s_lease_is_given_back_once_as_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's lease keeper gives the lease back as the run ends; the driver does not give
    it back again (one write less), unless the keeper could not."""
    import phloem

    store = SqlStore(f"sqlite:///{tmp_path / 'p.db'}")  # shared: runs are leased

    calls: list[list[str]] = []
    release = Catalog.release_runs

    def counted(self: Catalog, owner: str, run_ids: object) -> None:
        calls.append(list(run_ids))  # type: ignore[call-overload]
        release(self, owner, calls[-1])

    monkeypatch.setattr(Catalog, "release_runs", counted)
    app = Phloem.open(store, tmp_path / "home")
    result = phloem.run(v2, executor="inline", app=app)
    assert result.succeeded
    assert calls == [[result.run_id]]
    assert store.get_run(result.run_id).owner is None

    def broken(self: Catalog, owner: str, run_ids: object) -> None:
        calls.append(list(run_ids))  # type: ignore[call-overload]
        if len(calls) == 1:
            raise OSError("the store is away")
        release(self, owner, calls[-1])

    calls.clear()
    monkeypatch.setattr(Catalog, "release_runs", broken)
    again = phloem.run(v2, executor="inline", app=app, logical_date="2026-01-02")
    assert again.succeeded
    assert calls == [[again.run_id], [again.run_id]]  # the driver gave it back after all
    assert store.get_run(again.run_id).owner is None
    store.close()
