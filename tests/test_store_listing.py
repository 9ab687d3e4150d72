"""Listings (store.listing) on every backend: filters, keyset pages whose cursors stay valid
while runs are added, cursors refused when altered, page sizes bounded; and cancelling a run in
the store."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phloem.errors import BadCursor, PhloemError, RunNotFound
from phloem.records import TI, RunRecord, Transition, iso_utc
from phloem.states import RunState, RunType, TaskState
from phloem.store import MemoryStore, SqlStore
from phloem.store.listing import MAX_PAGE, InstanceFilter, Page, RunFilter

S = TaskState


def _run(i: int, *, pipeline: str = "etl", created: float | None = None, **kw: object) -> RunRecord:
    return RunRecord(
        run_id=f"run-{i:04d}",
        pipeline=pipeline,
        state=kw.pop("state", RunState.SUCCESS),  # type: ignore[arg-type]
        logical_date=iso_utc(datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=i)),
        params={},
        created_at=float(i) if created is None else created,
        run_type=kw.pop("run_type", RunType.SCHEDULED),  # type: ignore[arg-type]
    )


def _all_pages(store: SqlStore, where: RunFilter, limit: int) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        page = store.listing.runs(where, limit=limit, cursor=cursor)
        out += [r.run_id for r in page.items]
        if page.next_cursor is None:
            return out
        assert len(page.items) == limit
        cursor = page.next_cursor


def test_runs_newest_first_filtered_and_paged(store: SqlStore) -> None:
    for i in range(30):
        run = _run(
            i,
            pipeline="etl" if i % 2 else "train",
            state=RunState.FAILED if i % 3 == 0 else RunState.SUCCESS,
            run_type=RunType.BACKFILL if i % 5 == 0 else RunType.SCHEDULED,
        )
        store.create_run(run, [TI(task_id="a")])
    everything = _all_pages(store, RunFilter(), 7)
    assert everything == [f"run-{i:04d}" for i in reversed(range(30))]
    etl_failed = _all_pages(store, RunFilter(pipeline="etl", states=(RunState.FAILED,)), 2)
    assert etl_failed == [f"run-{i:04d}" for i in reversed(range(30)) if i % 2 and i % 3 == 0]
    backfills = _all_pages(store, RunFilter(run_types=(RunType.BACKFILL,)), 50)
    assert backfills == [f"run-{i:04d}" for i in reversed(range(30)) if i % 5 == 0]
    dated = _all_pages(store, RunFilter(logical_from="2024-01-03", logical_to="2024-01-05"), 4)
    assert dated == [f"run-{i:04d}" for i in reversed(range(30)) if 2 <= i <= 4]
    assert store.listing.runs(RunFilter(pipeline="nope")) == Page([], None)


@pytest.mark.parametrize("narrow", [0, 2, 10_000])
def test_a_logical_date_range_pages_alike_however_it_is_read(
    store: SqlStore, narrow: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phloem.store.listing as listing

    monkeypatch.setattr(listing, "NARROW", narrow)  # the range read by its index, or not
    for i in range(12):
        store.create_run(_run(i, created=float(i % 5)), [])
    got = _all_pages(store, RunFilter(logical_from="2024-01-02", logical_to="2024-01-10"), 3)
    want = sorted(((float(i % 5), f"run-{i:04d}") for i in range(1, 10)), reverse=True)
    assert got == [rid for _, rid in want]


def test_a_cursor_stays_valid_while_runs_are_added(store: SqlStore) -> None:
    for i in range(10):
        store.create_run(_run(i), [])
    first = store.listing.runs(limit=4)
    assert [r.run_id for r in first.items] == ["run-0009", "run-0008", "run-0007", "run-0006"]
    store.create_run(_run(100), [])  # newer: not on the pages after the first
    store.create_run(_run(200, created=5.5), [])  # older than the first page's last
    second = store.listing.runs(limit=4, cursor=first.next_cursor)
    assert [r.run_id for r in second.items] == ["run-0200", "run-0005", "run-0004", "run-0003"]


def test_runs_created_at_the_same_moment_are_paged_by_id(store: SqlStore) -> None:
    for i in range(9):
        store.create_run(_run(i, created=42.0), [])
    assert _all_pages(store, RunFilter(), 2) == [f"run-{i:04d}" for i in reversed(range(9))]


@pytest.mark.parametrize(
    "cursor",
    ["nonsense", "", "eyJ4Ijox", "WyJpbnN0YW5jZXMiLCJhIiwxXQ", "WyJydW5zIiwiMSIsMV0"],
)
def test_an_altered_or_foreign_cursor_is_refused(store: SqlStore, cursor: str) -> None:
    with pytest.raises(BadCursor, match="next_cursor of the page before"):
        store.listing.runs(cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1, 10**9])
def test_a_page_size_out_of_range_is_refused(store: SqlStore, limit: int) -> None:
    with pytest.raises(PhloemError, match=f"ask for 1 to {MAX_PAGE} rows"):
        store.listing.runs(limit=limit)


def test_a_bad_logical_date_filter_is_refused(store: SqlStore) -> None:
    with pytest.raises(PhloemError, match="not an ISO 8601 date"):
        store.listing.runs(RunFilter(logical_from="yesterday'; DROP TABLE runs; --"))


def test_instances_of_a_mapped_run_are_paged(store: SqlStore) -> None:
    mapped = [TI(task_id="fit", map_index=i, state=S.SUCCESS) for i in range(1000)]
    mapped[17] = TI(task_id="fit", map_index=17, state=S.FAILED)
    store.create_run(_run(1), [TI(task_id="load", state=S.SUCCESS), *mapped])
    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        page = store.listing.instances("run-0001", limit=300, cursor=cursor)
        seen += [ti.key for ti in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [("fit", i) for i in range(1000)] + [("load", -1)]
    failed = store.listing.instances("run-0001", InstanceFilter(states=(S.FAILED,)))
    assert [ti.key for ti in failed.items] == [("fit", 17)]
    load = store.listing.instances("run-0001", InstanceFilter(task_id="load"))
    assert [ti.key for ti in load.items] == [("load", -1)]
    with pytest.raises(RunNotFound):
        store.listing.instances("run-9999")
    found = store.listing.task_counts("run-0001")
    counts = {(c.task_id, c.state): (c.count, c.mapped) for c in found}
    assert counts == {
        ("fit", S.SUCCESS): (999, True),
        ("fit", S.FAILED): (1, True),
        ("load", S.SUCCESS): (1, False),
    }
    store.create_run(_run(2), [TI(task_id="load", state=S.FAILED)])
    both = store.listing.task_counts_of(["run-0001", "run-0002", "run-9999"])
    assert sorted((c.task_id, c.state, c.count) for c in both["run-0001"]) == sorted(
        (c.task_id, c.state, c.count) for c in found
    )
    assert [(c.task_id, c.state, c.count, c.mapped) for c in both["run-0002"]] == [
        ("load", S.FAILED, 1, False)
    ]
    assert both["run-9999"] == [] and store.listing.task_counts_of([]) == {}


def test_assets_and_their_events_newest_first(store: SqlStore) -> None:
    for n in range(3):
        run = store.create_run(_run(n, state=RunState.RUNNING), [TI(task_id="w", state=S.QUEUED)])
        ti = store.get_instance(run.run_id, "w")
        outputs = ("s3://b/table", "warehouse.t") if n == 0 else ("x",)
        store.commit(
            run.run_id, [Transition(ti, replace(ti, state=S.SUCCESS))], asset_outputs={"w": outputs}
        )
    names = {a.name: a.events for a in store.listing.assets()}
    assert names == {"s3://b/table": 1, "warehouse.t": 1, "x": 2}
    page = store.listing.asset_events(limit=2)
    assert page.items[0].asset == "x"
    rest = store.listing.asset_events(limit=2, cursor=page.next_cursor)
    ids = [e.id for e in page.items + rest.items]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4
    only = store.listing.asset_events("warehouse.t")
    assert [(e.asset, e.run_id, e.task_id) for e in only.items] == [
        ("warehouse.t", "run-0000", "w")
    ]


def test_cancel_fails_every_unfinished_instance_and_the_run(store: SqlStore) -> None:
    store.create_run(
        _run(1, state=RunState.RUNNING),
        [
            TI(task_id="done", state=S.SUCCESS),
            TI(task_id="busy", state=S.SCHEDULED),
            TI(task_id="waits", state=S.SCHEDULED),
            TI(task_id="later", state=S.PENDING),
            TI(task_id="again", state=S.UP_FOR_RETRY, try_number=1),
        ],
    )
    busy = store.get_instance("run-0001", "busy")
    queued = replace(busy, state=S.QUEUED, try_number=1)
    running = replace(queued, state=S.RUNNING, started_at=5.0)
    store.commit("run-0001", [Transition(busy, queued), Transition(queued, running)])
    assert store.cancel_run("run-0001", "cancelled by ada", 10.0) == 4
    after = {ti.task_id: ti for ti in store.load_instances("run-0001")}
    assert {t: ti.state for t, ti in after.items()} == {
        "done": S.SUCCESS,
        "busy": S.FAILED,
        "waits": S.FAILED,
        "later": S.FAILED,
        "again": S.FAILED,
    }
    assert after["busy"].error == "cancelled by ada"
    assert store.get_run("run-0001").state is RunState.FAILED
    (attempt,) = store.attempts("run-0001", "busy")
    assert attempt.state.value == "failed" and attempt.error == "cancelled by ada"
    assert store.cancel_run("run-0001", "again", 11.0) == 0  # ended already: nothing to do
    with pytest.raises(RunNotFound):
        store.cancel_run("no-such-run", "x", 1.0)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    created=st.lists(st.integers(0, 5), min_size=0, max_size=25),
    states=st.lists(st.sampled_from(list(RunState)), min_size=25, max_size=25),
    limit=st.integers(1, 6),
    wanted=st.sets(st.sampled_from(list(RunState)), max_size=2),
)
def test_pages_together_are_the_filtered_listing(
    created: list[int], states: list[RunState], limit: int, wanted: set[RunState]
) -> None:
    store = MemoryStore()
    try:
        for i, c in enumerate(created):
            store.create_run(_run(i, created=float(c), state=states[i]), [])
        kept = [i for i in range(len(created)) if not wanted or states[i] in wanted]
        expect = sorted(((float(created[i]), f"run-{i:04d}") for i in kept), reverse=True)
        got = _all_pages(store, RunFilter(states=tuple(wanted)), limit)
        assert got == [rid for _, rid in expect]
    finally:
        store.close()


def test_recent_runs_of_many_pipelines_in_one_call(store: SqlStore) -> None:
    from phloem.store import listing

    names = [f"p{k:03d}" for k in range(listing.RECENT_CHUNK + 5)]  # more than one statement
    i = 0
    for k, name in enumerate(names):
        for _ in range(k % 4):
            store.create_run(_run(i, pipeline=name), [TI(task_id="a")])
            i += 1
    recent = store.listing.recent_runs([*names, "none-such"], per_pipeline=2)
    assert set(recent) == {*names, "none-such"}
    assert recent["none-such"] == [] and recent["p000"] == []
    for k, name in enumerate(names):
        got = recent[name]
        assert len(got) == min(2, k % 4)
        assert all(r.pipeline == name for r in got)
        assert [r.created_at for r in got] == sorted((r.created_at for r in got), reverse=True)
    every = [r.run_id for r in store.list_runs("p003", limit=10)]
    assert [r.run_id for r in recent["p003"]] == every[:2]
    with pytest.raises(PhloemError, match="page size"):
        store.listing.recent_runs(names, per_pipeline=0)
