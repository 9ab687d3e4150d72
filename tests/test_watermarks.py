"""Watermarks: read by a task, moved only with its success, monotonic unless forced, never
rewound by a backfill; on every store, from inline and worker-process attempts, and by hand."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.effects import AttemptEffects, Effect, WatermarkAdvanced
from phloem.errors import WatermarkError
from phloem.records import TI, Transition
from phloem.states import RunState, RunType, TaskState
from phloem.store import Commit, Store, open_store
from phloem.variables import close_stores
from phloem.watermark_values import comparable, compare, decode, encode, parse

S = TaskState
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _close_task_stores() -> object:
    yield
    close_stores()


# -- the store: the commit-time rules, on every backend -----------------------------------------


def _run(store: Store, run_id: str, run_type: RunType = RunType.MANUAL) -> str:
    from dataclasses import replace

    from test_store import make_run

    day = f"2026-01-0{len(run_id) % 9 + 1}"
    rec = replace(make_run(run_id, logical_date=day), run_type=run_type)
    store.create_run(rec, [TI("t", state=S.RUNNING, try_number=1)])
    return run_id


def _end(store: Store, run_id: str, effects: list[Effect], state: TaskState = S.SUCCESS) -> None:
    t = Transition(TI("t", state=S.RUNNING, try_number=1), TI("t", state=state, try_number=1))
    store.commit_many([Commit(run_id, (t,), effects=(AttemptEffects("t", -1, 1, tuple(effects)),))])


def _adv(name: str, value: object, read_version: int = 0, force: bool = False) -> Effect:
    kind, text = encode(value, name=name)
    return WatermarkAdvanced(name, kind, text, read_version, force)


def test_an_advance_lands_only_with_its_attempts_success(store: Store) -> None:
    _end(store, _run(store, "r-fail"), [_adv("orders", 5)], S.FAILED)
    assert store.watermarks.get("orders") is None
    _end(store, _run(store, "r-ok"), [_adv("orders", 5), _adv("orders", 7)])
    w = store.watermarks.get("orders")
    assert w is not None and (w.value, w.kind, w.version, w.run_id) == (7, "int", 1, "r-ok")
    assert [c.outcome for c in store.watermarks.history("orders")] == ["advanced"]


def test_a_concurrent_further_advance_wins_and_a_stale_one_is_kept_out(store: Store) -> None:
    _end(store, _run(store, "r-a"), [_adv("orders", 10)])
    # r-b read nothing (version 0) and advanced to 8 while r-a committed 10
    _end(store, _run(store, "r-bb"), [_adv("orders", 8)])
    w = store.watermarks.get("orders")
    assert w is not None and w.value == 10 and w.version == 1
    kept = store.watermarks.history("orders")[-1]
    assert (kept.outcome, kept.value, kept.previous, kept.run_id) == ("kept", "8", "10", "r-bb")
    assert "behind the value committed since by r-a" in (kept.note or "")
    _end(store, _run(store, "r-ccc"), [_adv("orders", 12, read_version=1)])
    assert store.watermarks.get("orders").value == 12  # type: ignore[union-attr]


def test_a_forced_value_applies_only_over_the_value_the_task_saw(store: Store) -> None:
    _end(store, _run(store, "r-a"), [_adv("orders", 10)])
    _end(store, _run(store, "r-bb"), [_adv("orders", 3, read_version=1, force=True)])
    w = store.watermarks.get("orders")
    assert w is not None and (w.value, w.version) == (3, 2)
    # read at version 1, but it is at 2 now: a forced rewind must not undo what it never saw
    _end(store, _run(store, "r-ccc"), [_adv("orders", 1, read_version=1, force=True)])
    assert store.watermarks.get("orders").value == 3  # type: ignore[union-attr]
    assert [c.outcome for c in store.watermarks.history("orders")] == [
        "advanced",
        "forced",
        "dropped",
    ]


def test_a_backfill_never_moves_a_watermark_back(store: Store) -> None:
    _end(store, _run(store, "r-a"), [_adv("orders", T0)])
    back = T0 - timedelta(days=3)
    _end(store, _run(store, "r-bf", RunType.BACKFILL), [_adv("orders", back, 1, force=True)])
    assert store.watermarks.get("orders").value == T0  # type: ignore[union-attr]
    note = store.watermarks.history("orders")[-1].note or ""
    assert "a backfill never moves a watermark back" in note
    later = T0 + timedelta(hours=1)
    _end(store, _run(store, "r-bf2", RunType.BACKFILL), [_adv("orders", later, 1)])
    assert store.watermarks.get("orders").value == later  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        T0,
        datetime(2026, 1, 1, 12, 30, 15, 123456),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        date(2026, 2, 28),
        2**62,
        -3,
        0.125,
        float("inf"),
        "2026-01-01/part-0007",
        "",
    ],
)
def test_values_come_back_with_their_type(store: Store, value: object) -> None:
    _end(store, _run(store, "r-a"), [_adv("v", value)])
    got = store.watermarks.get("v")
    assert got is not None and got.value == value and type(got.value) is type(value)
    if isinstance(value, datetime):
        assert got.value.tzinfo == value.tzinfo  # type: ignore[union-attr]


def test_set_and_reset_by_hand(store: Store) -> None:
    w = store.watermarks.set("orders", "int", "5", now=1.0, note="cli:ana")
    assert (w.value, w.version, w.run_id) == (5, 1, None)
    with pytest.raises(WatermarkError, match="would move it back: add --force"):
        store.watermarks.set("orders", "int", "4", now=2.0, note="cli:ana")
    assert store.watermarks.get("orders").value == 5  # type: ignore[union-attr]
    with pytest.raises(WatermarkError, match="cannot be compared"):
        store.watermarks.set("orders", "str", "x", now=2.0, note="cli:ana")
    w = store.watermarks.set("orders", "int", "4", force=True, now=3.0, note="cli:ana")
    assert w.value == 4
    assert store.watermarks.reset("orders", now=4.0, note="cli:ana")
    assert store.watermarks.get("orders") is None
    assert not store.watermarks.reset("x", now=5.0, note="")
    assert [c.outcome for c in store.watermarks.history("orders")] == ["set", "set", "reset"]
    assert [w.name for w in store.watermarks.all()] == []


# -- inside tasks -----------------------------------------------------------------------------


@task(retries=1, retry_delay=0)
def load(seen_file: str, new_max: int, fail_first: bool = False) -> int:
    wm = phloem.watermark("orders", default=0, lookback=2)
    with open(seen_file, "a") as f:
        f.write(json.dumps([wm.value, wm.since, wm.committed]) + "\n")
    wm.advance(new_max)
    if fail_first and phloem.context().try_number == 1:
        raise RuntimeError("failed after advancing")
    return new_max


@pipeline
def incremental(seen_file: str = "", new_max: int = 10, fail_first: bool = False) -> None:
    load(seen_file, new_max, fail_first)


def _seen(path: Path) -> list[list[object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _shared(store_url: str) -> bool:
    return store_url != "memory"


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_task_reads_the_last_committed_value_and_a_failed_try_moves_nothing(
    store_url: str, tmp_path: Path, executor: str
) -> None:
    if not _shared(store_url):
        pytest.skip("tasks read watermarks from a store other processes can open")
    seen = tmp_path / "seen.jsonl"
    app = Phloem.open(store_url, tmp_path)
    try:
        params = {"seen_file": str(seen), "new_max": 10}
        r1 = phloem.run(incremental, params=params, executor=executor, app=app)
        assert r1.state is RunState.SUCCESS
        assert app.store.watermarks.get("orders").value == 10  # type: ignore[union-attr]
        params = {"seen_file": str(seen), "new_max": 20, "fail_first": True}
        r2 = phloem.run(incremental, params=params, executor=executor, app=app)
        assert r2.state is RunState.SUCCESS and r2.tasks[("load", -1)].try_number == 2
        # the first try advanced to 20 and failed: its retry saw 10 again
        assert _seen(seen) == [[0, -2, False], [10, 8, True], [10, 8, True]]
        assert app.store.watermarks.get("orders").value == 20  # type: ignore[union-attr]
        assert [c.outcome for c in app.store.watermarks.history("orders")] == [
            "advanced",
            "advanced",
        ]
    finally:
        app.close()


@task
def rewind(to: int, force: bool = False) -> bool:
    return phloem.watermark("orders").advance(to, force=force)


@pipeline
def rewinding(to: int = 0, force: bool = False) -> None:
    rewind(to, force)


def test_going_back_is_an_error_at_once_unless_forced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    app = Phloem.open(url, tmp_path)
    try:
        app.store.watermarks.set("orders", "int", "10", now=1.0, note="test")
        r = phloem.run(rewinding, params={"to": 5}, executor="inline", app=app)
        assert r.state is RunState.FAILED
        error = r.tasks[("rewind", -1)].error or ""
        assert "'orders' is at 10; advancing to 5 would move it back: pass force=True" in error
        r = phloem.run(
            rewinding, params={"to": 5, "force": True}, executor="inline", app=app,
            logical_date="2026-02-01",
        )
        assert r.state is RunState.SUCCESS and app.store.watermarks.get("orders").value == 5  # type: ignore[union-attr]
    finally:
        app.close()


def test_a_backfill_reads_the_watermark_and_never_rewinds_it(tmp_path: Path) -> None:
    from phloem.api import drive
    from phloem.driver import holder_id
    from phloem.runs import create_run
    from phloem.states import DriverRole

    url = f"sqlite:///{tmp_path / 'p.db'}"
    app = Phloem.open(url, tmp_path)
    try:
        app.store.watermarks.set("orders", "int", "10", now=1.0, note="test")

        def backfill(params: dict[str, object], day: str) -> phloem.RunResult:
            spec = rewinding.spec
            rec = create_run(app.store, spec, params, day, run_type=RunType.BACKFILL,
                             owner=holder_id(DriverRole.RUN))
            return drive(app, spec, rec, app.executor("inline"))

        r = backfill({"to": 5}, "2025-06-01")
        assert r.state is RunState.SUCCESS and r.output("rewind") is False
        r = backfill({"to": 5, "force": True}, "2025-06-02")
        assert r.state is RunState.FAILED
        error = r.tasks[("rewind", -1)].error or ""
        assert "a backfill run cannot force watermark 'orders'" in error
        r = backfill({"to": 12}, "2025-06-03")
        assert r.state is RunState.SUCCESS and r.output("rewind") is True
        assert app.store.watermarks.get("orders").value == 12  # type: ignore[union-attr]
    finally:
        app.close()


@task
def reads() -> object:
    return phloem.watermark("orders", default=1).value


@pipeline
def reading() -> None:
    reads()


def test_a_private_store_is_refused_with_what_to_do(tmp_path: Path) -> None:
    r = phloem.run(reading, executor="inline", store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    assert "watermarks need a shared store (a SQLite file or PostgreSQL)" in (
        r.tasks[("reads", -1)].error or ""
    )


def test_bad_input_is_refused_precisely() -> None:
    with pytest.raises(WatermarkError, match="only works while a task runs"):
        phloem.watermark("orders")
    with pytest.raises(WatermarkError, match="non-empty string"):
        phloem.watermark("")
    with pytest.raises(WatermarkError, match="not bool"):
        encode(True, name="x")
    with pytest.raises(WatermarkError, match="cannot hold NaN"):
        encode(float("nan"), name="x")
    with pytest.raises(WatermarkError, match="not list"):
        encode([1], name="x")
    with pytest.raises(WatermarkError, match=r"a naive datetime .* cannot be compared"):
        compare(datetime(2026, 1, 1), T0, name="x")
    with pytest.raises(WatermarkError, match="'x' is not a int"):
        parse("x", "int", name="n")
    with pytest.raises(WatermarkError, match="unknown watermark type 'time'"):
        parse("1", "time", name="n")


def test_command_line_values_are_read_as_the_narrowest_type() -> None:
    assert parse("7", None, name="n") == ("int", "7")
    assert parse("7.5", None, name="n") == ("float", "7.5")
    assert parse("2026-01-01", None, name="n") == ("date", "2026-01-01")
    assert parse("2026-01-01T00:00:00+00:00", None, name="n") == (
        "datetime",
        "2026-01-01T00:00:00+00:00",
    )
    assert parse("orders-7", None, name="n") == ("str", "orders-7")
    assert parse("7", "str", name="n") == ("str", "7")


# -- properties of the values ----------------------------------------------------------------

values = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(timezone.utc)),
)


@given(values)
def test_every_value_round_trips_with_its_type(value: object) -> None:
    kind, text = encode(value, name="p")
    back = decode(kind, text)
    assert back == value and type(back) is type(value)


@given(values, values)
def test_comparison_is_an_order_where_it_is_defined(a: object, b: object) -> None:
    if not comparable(a, b):  # type: ignore[arg-type]
        with pytest.raises(WatermarkError):
            compare(a, b, name="p")  # type: ignore[arg-type]
        return
    assert compare(a, b, name="p") == -compare(b, a, name="p")  # type: ignore[arg-type]


# -- the command line ---------------------------------------------------------------------------


def test_watermarks_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phloem.cli.main import app as cli_app

    monkeypatch.setenv("PHLOEM_HOME", str(tmp_path))
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli_app, ["watermarks", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert "no watermarks" in cli("list")
    assert "watermark orders = 2026-01-01 (date)" in cli("set", "orders", "2026-01-01")
    assert "would move it back: add --force" in cli("set", "orders", "2025-12-31", code=2)
    cli("set", "orders", "2025-12-31", "--force")
    listed = json.loads(cli("list", "--json"))
    assert [(w["name"], w["value"], w["kind"]) for w in listed] == [
        ("orders", "2025-12-31", "date")
    ]
    shown = cli("show", "orders")
    assert "orders = 2025-12-31" in shown and "2026-01-01" in shown
    assert "'n' is not a int" not in cli("set", "n", "12", "--type", "int")
    assert "is not a int" in cli("set", "m", "x", "--type", "int", code=2)
    assert "watermark orders reset" in cli("reset", "orders")
    assert "no watermark named 'orders'" in cli("reset", "orders", code=2)


# -- concurrent commits -------------------------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_advances_leave_the_furthest_value(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Runs that all read no value commit their advances at the same moment, each from a
    store of its own: no commit fails, the watermark ends at the furthest value, and every
    advance is in the history, applied or kept out."""
    from test_store import _concurrently

    url = f"sqlite:///{tmp_path / 'p.db'}" if db == "sqlite" else request.getfixturevalue("pg_url")
    setup = open_store(url)
    values = [3, 9, 1, 7, 5, 8]
    runs = [_run(setup, f"r{'x' * i}") for i in range(len(values))]
    stores = [open_store(url) for _ in values]
    try:
        results = _concurrently(
            [
                (lambda st=st, run=run, v=v: _end(st, run, [_adv("orders", v)]))
                for st, run, v in zip(stores, runs, values, strict=True)
            ]
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        w = setup.watermarks.get("orders")
        assert w is not None and w.value == max(values)
        history = setup.watermarks.history("orders")
        assert len(history) == len(values)
        assert {h.outcome for h in history} <= {"advanced", "kept"}
        moves = [int(h.value or 0) for h in history if h.outcome == "advanced"]
        assert moves == sorted(moves) and moves[-1] == max(values)  # only ever forward
        assert w.version == len(moves)
    finally:
        for st in stores:
            st.close()
        setup.close()
