"""Attempt leases: heartbeats are fenced compare-and-sets, successors wait for them to expire,
and a driver that cannot renew its leases counts them as lost."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from phloem import pipeline, task
from phloem.app import Phloem
from phloem.driver import LeaseKeeper, RunSession
from phloem.engine.allocate import Grant
from phloem.executors.fencing import Fence
from phloem.records import Transition
from phloem.runner import Attempt
from phloem.runs import create_run
from phloem.states import TaskState
from phloem.store import Commit, SqlStore
from phloem.store.catalog import Catalog
from phloem.store.types import AttemptLease, Beat

S = TaskState


@task
def one() -> int:
    return 1


@pipeline
def single() -> None:
    one()


def _running(store: SqlStore, owner: str) -> tuple[str, Beat]:
    """A run leased to ``owner`` whose only task is running (try 1)."""
    run = create_run(store, single.spec, owner=owner)
    Catalog(store).claim_run(run.run_id, owner, 30, time.time())
    ti = store.load_instances(run.run_id)[0]
    queued = replace(ti, state=S.QUEUED, try_number=1)
    running = replace(queued, state=S.RUNNING, started_at=time.time())
    ts = (
        Transition(ti, replace(ti, state=S.SCHEDULED)),
        Transition(replace(ti, state=S.SCHEDULED), queued),
        Transition(queued, running),
    )
    store.commit_many([Commit(run.run_id, ts, owner=owner)])
    return run.run_id, Beat(run.run_id, "one", -1, 1, owner)


def test_a_heartbeat_is_written_only_while_its_attempt_is_current(store: SqlStore) -> None:
    leases = store.attempt_leases
    run_id, beat = _running(store, "scheduler:a:1")
    # none sent yet
    assert leases.heartbeats(run_id)[1] == {("one", -1, 1): AttemptLease(None, "scheduler:a:1")}
    assert leases.beat([beat]) == {beat}
    db_now, beats = leases.heartbeats(run_id)
    written = beats[("one", -1, 1)].heartbeat_at
    assert written is not None and written <= db_now
    # a driver that does not own the run cannot keep its attempts alive
    assert leases.beat([replace(beat, owner="scheduler:b:2")]) == set()
    # nor can an older try
    assert leases.beat([replace(beat, try_number=0)]) == set()
    # once another driver took the run, the old owner's attempt is no longer current
    Catalog(store).claim_run(run_id, "scheduler:b:2", 30, time.time(), take_from="scheduler:a:1")
    assert leases.beat([beat]) == set()
    assert leases.beat([replace(beat, owner="scheduler:b:2")]) == {
        replace(beat, owner="scheduler:b:2")
    }


def test_a_heartbeat_of_a_finished_attempt_is_refused(store: SqlStore) -> None:
    leases = store.attempt_leases
    run_id, beat = _running(store, "scheduler:a:1")
    ti = store.load_instances(run_id)[0]
    store.commit(run_id, [Transition(ti, replace(ti, state=S.SUCCESS, ended_at=time.time()))])
    assert leases.beat([beat]) == set()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_successor_retries_an_attempt_only_after_its_heartbeat_expired(
    store: SqlStore, tmp_path: Path
) -> None:
    # long enough that the heartbeat is still fresh when the successor looks, however slow
    # the machine; everything slow is done before the heartbeat is written
    ttl = 5.0
    run_id, beat = _running(store, "scheduler:a:1")
    env = Phloem.open(store, tmp_path)
    assert store.attempt_leases.beat([beat]) == {beat}
    Catalog(store).claim_run(run_id, "scheduler:b:2", ttl, time.time(), take_from="scheduler:a:1")
    session = RunSession(
        store,
        single.spec,
        store.get_run(run_id),
        env.artifacts,
        env.logs_dir,
        owner="scheduler:b:2",
        lease_ttl=ttl,
    )
    session.recover()
    now = time.time()
    d, req = session.plan(session.draft(now), Grant(slots=4), now)
    applied = store.commit_many([req], now=now)[0] if req is not None else None
    step = session.absorb(d, applied, now)
    # the retry is queued, but not handed out while the old attempt's heartbeat is fresh
    assert store.load_instances(run_id)[0].state is S.QUEUED
    assert step.submits == [] and step.wake_at is not None
    while time.time() < step.wake_at:
        time.sleep(0.05)
    now = time.time()
    d, req = session.plan(session.draft(now), Grant(slots=4), now)
    later = session.absorb(d, None, now)
    assert [(a.task_id, a.try_number) for a in later.submits] == [("one", 2)]
    assert later.submits[0].owner == "scheduler:b:2"


def test_a_lease_that_cannot_be_renewed_is_lost() -> None:
    # a server nobody listens on: every renewal fails at once
    store = SqlStore("postgresql+psycopg://postgres@127.0.0.1:1/none", migrate=False)
    keeper = LeaseKeeper(Catalog(store), "scheduler:a:1", ttl=1.0)
    keeper.track(["r1"])
    keeper.start()
    try:
        lost: set[str] = set()
        deadline = time.monotonic() + 30
        while not lost and time.monotonic() < deadline:
            time.sleep(0.1)
            lost = keeper.take_lost()
        assert lost == {"r1"}
    finally:
        keeper.stop()
        store.close()


def test_a_commit_that_extended_a_lease_keeps_it_while_renewals_cannot_reach_the_store() -> None:
    # renewals fail (as they wait while a long commit holds SQLite); a commit that extended a
    # run's lease says so, and that run is not taken for lost
    store = SqlStore("postgresql+psycopg://postgres@127.0.0.1:1/none", migrate=False)
    keeper = LeaseKeeper(Catalog(store), "scheduler:a:1", ttl=10.0)
    keeper.track(["r1", "r2"])
    keeper.start()
    try:
        began = time.monotonic()
        with keeper._lock:  # both were last renewed long ago
            keeper._confirmed = {"r1": began - 60, "r2": began - 60}
        keeper.confirm(["r1", "other"], began)  # a commit extended r1's lease
        assert keeper.take_lost() == {"r2"}
        assert "other" not in keeper._confirmed  # a run it does not keep stays unknown
    finally:
        keeper.stop()
        store.close()


def _attempt(store: SqlStore, beat: Beat, tmp_path: Path, *, lease_from: float) -> Attempt:
    return Attempt(
        run_id=beat.run_id,
        pipeline="single",
        task_id=beat.task_id,
        map_index=beat.map_index,
        try_number=beat.try_number,
        args=(),
        kwargs={},
        logical_date="2026-01-01T00:00:00+00:00",
        data_interval_start=None,
        data_interval_end=None,
        params={},
        log_path=str(tmp_path / "log"),
        first_started_at=time.time(),
        store_url=store.shared_url,
        owner=beat.owner,
        lease_from=lease_from,
        heartbeat_ttl=6.0,  # beats every 1 s; a loaded machine never misses 3 s of them
    )


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_worker_stops_an_attempt_whose_run_was_taken_over(
    store: SqlStore, tmp_path: Path
) -> None:
    run_id, beat = _running(store, "scheduler:a:1")
    stopped: list[str] = []
    fence = Fence(lambda a, why: stopped.append(why))
    try:
        attempt = _attempt(store, beat, tmp_path, lease_from=time.time())
        assert fence.begin(attempt) is None  # confirmed by the commit that queued it
        deadline = time.monotonic() + 30
        while store.attempt_leases.heartbeats(run_id)[1][("one", -1, 1)].heartbeat_at is None:
            assert time.monotonic() < deadline, "no heartbeat was written"
            time.sleep(0.05)
        assert stopped == []
        Catalog(store).claim_run(run_id, "scheduler:b:2", 30, time.time(), take_from=beat.owner)
        while not stopped:
            assert time.monotonic() < deadline, "the attempt was not stopped"
            time.sleep(0.05)
        assert "no longer current" in stopped[0] and "taken over" in stopped[0]
        fence.end(attempt)
        # an attempt its driver handed out long ago asks the store before it starts
        late = _attempt(store, beat, tmp_path, lease_from=time.time() - 60)
        refused = fence.begin(late)
        assert refused is not None and "was not started" in refused
    finally:
        fence.close()


def test_a_renewal_error_without_a_message_is_a_failed_renewal() -> None:
    """A bare ``ConnectionResetError()`` must not end the keeper's thread (its runs' leases
    would silently stop being renewed)."""

    class Unreachable:
        def renew_runs(self, *args: object) -> set[str]:
            raise ConnectionResetError()

    keeper = LeaseKeeper(Unreachable(), "scheduler:a:1", ttl=30.0)  # type: ignore[arg-type]
    assert keeper.renew(["r1"], time.time()) == set()
    assert keeper.renew(["r1"], time.time()) == set()  # and again, quietly
