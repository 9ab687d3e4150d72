"""The plans the databases choose for the compare-and-sets of every commit: each finds its row
by primary key, whatever the statistics say. On a small table without statistics PostgreSQL
rated the index on ``state`` as good as the primary key and took it: each compare-and-set
filtered all the instances in that state, up to about 1,000 each in a 1,000-wide fan-out."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event

from phloem.records import TI
from phloem.states import RunState, TaskState
from phloem.store import SqlStore, open_store
from phloem.store.rows import ti_values
from test_store import make_run

WIDTH = 500


@pytest.fixture
def wide(sql_url: str) -> Iterator[SqlStore]:
    """A store holding one run whose mapped task has WIDTH queued instances (never analyzed)."""
    store = open_store(sql_url)
    assert isinstance(store, SqlStore)
    store.create_run(
        make_run("r", state=RunState.RUNNING),
        [
            TI(task_id="each", map_index=i, state=TaskState.QUEUED, try_number=1)
            for i in range(WIDTH)
        ],
    )
    yield store
    store.close()


def _plans(store: SqlStore, statement: Any, params: dict[str, Any]) -> list[str]:
    compiled: Any = statement.compile(dialect=store.engine.dialect, column_keys=list(params))
    order = compiled.positiontup
    return _explain(store, str(compiled), params if order is None else [params[n] for n in order])


def _explain(store: SqlStore, sql: str, params: Any) -> list[str]:
    """The plan of ``sql`` for ``params``: on PostgreSQL both the plan made for these values
    and the generic one a prepared statement switches to after a few runs."""
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.dialect == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            return [" ".join(str(c) for c in row) for row in cur.fetchall()]
        names: list[str] = []

        def numbered(m: re.Match[str]) -> str:
            names.append(m.group(1))
            return f"${len(names)}"

        generic = re.sub(r"%\((\w+)\)s", numbered, sql)
        cur.execute("EXPLAIN " + sql, params)
        lines = [row[0] for row in cur.fetchall()]
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute("PREPARE cas AS " + generic)
        args = ", ".join(_literal(params[n]) for n in names)
        cur.execute(f"EXPLAIN EXECUTE cas({args})")
        lines += [row[0] for row in cur.fetchall()]
        cur.execute("DEALLOCATE cas")  # a prepared statement outlives the transaction
        return lines
    finally:
        raw.rollback()
        raw.close()


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _by_primary_key(plan: list[str], table: str) -> bool:
    text = "\n".join(plan)
    keys = ("_pkey", "sqlite_autoindex_" + table, "USING INTEGER PRIMARY KEY")
    return any(k in text for k in keys) and "ix_" not in text


def test_the_instance_compare_and_set_finds_its_row_by_primary_key(wide: SqlStore) -> None:
    params = {"b_run": "r", "b_task": "each", "b_map": 7, "b_state": "queued", "b_try": 1}
    params.update(ti_values(TI(task_id="each", map_index=7, state=TaskState.RUNNING, try_number=1)))
    plan = _plans(wide, wide._w.cas, params)
    assert _by_primary_key(plan, "task_instances"), plan
    # still a compare-and-set: a stale old state changes nothing, the right one its row
    with wide._tx() as conn:
        assert wide._w.prepared.run(conn, wide._w.cas, {**params, "b_state": "running"}) == 0
        assert wide._w.prepared.run(conn, wide._w.cas, params) == 1
    changed = [ti for ti in wide.load_instances("r") if ti.state is TaskState.RUNNING]
    assert [ti.key for ti in changed] == [("each", 7)]


def _sent(store: SqlStore, prefix: str, action: Callable[[], Any]) -> tuple[str, Any]:
    """The last statement starting with ``prefix`` that ``action`` sent, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.startswith(prefix):
            seen.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    return seen[-1]


def test_the_run_compare_and_set_finds_its_row_by_primary_key(wide: SqlStore) -> None:
    assert not wide.set_run_state("r", RunState.QUEUED, RunState.SUCCESS, now=2.0)
    sql, params = _sent(
        wide,
        "UPDATE runs",
        lambda: wide.set_run_state("r", RunState.RUNNING, RunState.SUCCESS, 2.0),
    )
    assert wide.get_run("r").state is RunState.SUCCESS
    assert _by_primary_key(_explain(wide, sql, params), "runs")


def test_a_delivery_outcome_finds_its_row_by_primary_key(wide: SqlStore) -> None:
    from phloem.store.deliveries import NewDelivery

    book = wide.alerts
    book.record(
        [
            NewDelivery("rule", "p", f"run{i}", "failed", 0, "log", "", "rule", "t", "b", {})
            for i in range(WIDTH)
        ],
        now=1.0,
    )
    (claimed,) = book.claim("me", now=2.0, ttl=60.0, limit=1)
    sql, params = _sent(
        wide, "UPDATE alert_deliveries", lambda: book.finish(claimed.id, "me", 3.0, sent=True)
    )
    assert not book.finish(claimed.id, "me", 3.0, sent=True)  # no longer claimed, nor pending
    assert _by_primary_key(_explain(wide, sql, params), "alert_deliveries")
