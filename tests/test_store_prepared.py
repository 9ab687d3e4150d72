"""The commit's statements run on the driver's cursor (``store.prepared``): the same rows as
through SQLAlchemy, row counts summed over an executemany, SQLAlchemy's conversions and
defaults kept, and the driver's errors wrapped as SQLAlchemy wraps them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy.exc import DBAPIError, IntegrityError

from phloem.store import SqlStore
from phloem.store.engine import send_writes, write_transaction
from phloem.store.prepared import COPY_MIN_ROWS, Prepared

meta = sa.MetaData()
things = sa.Table(
    "prepared_things",
    meta,
    sa.Column("name", sa.String(20), primary_key=True),
    sa.Column("size", sa.Float),
    sa.Column("count", sa.Integer),
    sa.Column("label", sa.String(20), default=lambda: "from-python"),
)
INSERT = things.insert().inline()
GROW = (
    things.update()
    .where(things.c.name == bindparam("b_name"), things.c.count == bindparam("b_count"))
    .values(count=bindparam("v_count"), size=bindparam("v_size"))
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = (
        f"sqlite:///{tmp_path / 'p.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = SqlStore(url)
    meta.create_all(store.engine)
    yield store.engine
    store.close()


@contextmanager
def _traced(conn: sa.Connection, to: Path) -> Iterator[None]:
    """libpq's trace of the messages ``conn`` exchanges with the server, written to ``to``."""
    pgconn = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]
    with to.open("w") as out:
        pgconn.trace(out.fileno())
        try:
            yield
        finally:
            pgconn.untrace()


def _rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(things).order_by(things.c.name))]


def test_writes_what_sqlalchemy_writes_and_counts_the_rows_matched(engine: sa.Engine) -> None:
    prepared = Prepared(engine.dialect)
    rows = [
        {"name": "a", "size": 1, "count": 1, "label": "x"},  # an int for a float column
        {"name": "b", "size": None, "count": 1, "label": "y"},
        {"name": "c", "size": 2.5, "count": 7, "label": "z"},
    ]
    with write_transaction(engine) as conn:
        assert prepared.run(conn, INSERT, rows) == 3
    grow = [
        {"b_name": "a", "b_count": 1, "v_count": 2, "v_size": 1.5},
        {"b_name": "b", "b_count": 1, "v_count": 2, "v_size": 3},
        {"b_name": "c", "b_count": 1, "v_count": 2, "v_size": 0.0},  # count is 7: no match
    ]
    with write_transaction(engine) as conn:
        assert prepared.run(conn, GROW, grow) == 2  # summed over the executemany
        assert prepared.run(conn, GROW, grow[2]) == 0  # one row, as a mapping
    assert _rows(engine) == [("a", 1.5, 2, "x"), ("b", 3.0, 2, "y"), ("c", 2.5, 7, "z")]
    assert isinstance(_rows(engine)[1][1], float)


def test_a_statement_that_needs_sqlalchemy_goes_through_it(engine: sa.Engine) -> None:
    """A column default computed in Python is SQLAlchemy's to fill in: without ``label`` the
    insert goes through the connection, and the default lands."""
    prepared = Prepared(engine.dialect)
    with write_transaction(engine) as conn:
        prepared.run(conn, INSERT, [{"name": "d", "size": 1.0, "count": 1}])
    assert _rows(engine) == [("d", 1.0, 1, "from-python")]


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(engine: sa.Engine) -> None:
    prepared = Prepared(engine.dialect)
    row = {"name": "e", "size": 1.0, "count": 1, "label": "x"}
    with write_transaction(engine) as conn:
        prepared.run(conn, INSERT, row)
    with pytest.raises(IntegrityError) as caught, write_transaction(engine) as conn:
        prepared.run(conn, INSERT, row)
    assert "prepared_things" in str(caught.value)  # names the statement
    assert _rows(engine) == [("e", 1.0, 1, "x")]


@pytest.mark.postgres
def test_a_dropped_connection_is_invalidated_for_the_retry(pg_url: str) -> None:
    """A server that ended the session: the error says the connection is gone (what the
    store's resilience retries on a fresh one), and the pool drops that connection."""
    store = SqlStore(pg_url)
    try:
        meta.create_all(store.engine)
        prepared = Prepared(store.engine.dialect)
        with store.engine.connect() as killer:
            killer.execute(sa.text("SELECT 1"))
            with pytest.raises(DBAPIError) as caught, write_transaction(store.engine) as conn:
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                killer.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                killer.commit()
                prepared.run(conn, INSERT, {"name": "f", "size": 1.0, "count": 1, "label": "x"})
        assert caught.value.connection_invalidated
        assert _rows(store.engine) == []
    finally:
        store.close()


def test_a_plan_is_never_taken_for_another_statement(engine: sa.Engine) -> None:
    """Plans are found by the statement's id; a plan left by a statement that is gone (whose
    id a new one may reuse) is not used for the new one."""
    prepared = Prepared(engine.dialect)
    row = {"name": "g", "size": 1.0, "count": 1, "label": "x"}
    with write_transaction(engine) as conn:
        prepared.run(conn, INSERT, row)
    [(key, plan)] = prepared._plans.items()
    other = things.delete().where(things.c.name == bindparam("name"))
    prepared._plans[(id(other), key[1])] = plan  # as if ``other`` had INSERT's old id
    with write_transaction(engine) as conn:
        assert prepared.run(conn, other, row) == 1  # deleted, not inserted again
    assert _rows(engine) == []


@pytest.mark.postgres
def test_a_large_insert_goes_by_copy_and_writes_what_sqlalchemy_writes(
    pg_url: str, tmp_path: Path
) -> None:
    """From COPY_MIN_ROWS rows on, a plain INSERT is one COPY stream on PostgreSQL: the same
    rows land (None, floats, ints given for a float column, text with a tab, a newline and
    COPY's own null marker), the count is the rows sent, and it is COPY that sent them
    (libpq's own trace of the messages)."""
    store = SqlStore(pg_url)
    try:
        meta.create_all(store.engine)
        prepared = Prepared(store.engine.dialect)
        n = COPY_MIN_ROWS + 1
        rows = [
            {
                "name": f"r{i:03d}",
                "size": None if i % 3 == 0 else (i if i % 2 else i / 4),
                "count": i,
                "label": "it's\t\n\\N",
            }
            for i in range(n)
        ]
        assert prepared.copies(INSERT, rows) and not prepared.copies(INSERT, rows[:-2])
        assert not prepared.copies(
            GROW, [{"b_name": "x", "b_count": 1, "v_count": 1, "v_size": 1}] * n
        )
        # a value computed by SQL is not the row's value: that INSERT is not copied
        upper = things.insert().inline().values(label=sa.func.upper(bindparam("label")))
        assert not prepared.copies(upper, rows)
        trace = tmp_path / "libpq.trace"
        with write_transaction(store.engine) as conn, _traced(conn, trace):
            assert prepared.run(conn, INSERT, rows) == n
        sent = trace.read_text()
        assert "CopyInResponse" in sent and "Parse" not in sent  # one COPY, no INSERT
        expected = [
            (r["name"], None if r["size"] is None else float(r["size"]), r["count"], r["label"])
            for r in rows
        ]
        assert _rows(store.engine) == expected
    finally:
        store.close()


@pytest.mark.postgres
def test_a_copy_that_breaks_a_constraint_is_raised_as_sqlalchemy_raises_it(pg_url: str) -> None:
    store = SqlStore(pg_url)
    try:
        meta.create_all(store.engine)
        prepared = Prepared(store.engine.dialect)
        rows = [
            {"name": f"d{i}", "size": 1.0, "count": i, "label": "x"} for i in range(COPY_MIN_ROWS)
        ]
        rows.append(dict(rows[0]))  # the same key twice
        with pytest.raises(IntegrityError) as caught, write_transaction(store.engine) as conn:
            prepared.run(conn, INSERT, rows)
        assert "prepared_things" in str(caught.value)
        assert _rows(store.engine) == []  # the transaction rolled back: nothing half-written
    finally:
        store.close()


@pytest.mark.postgres
def test_a_copy_among_pipelined_writes_keeps_their_order(pg_url: str) -> None:
    """``send_writes`` sends a COPY between two pipelines: an update of rows the COPY
    inserted, after it in the list, finds them; the COMMIT still goes with the last one."""
    store = SqlStore(pg_url)
    try:
        meta.create_all(store.engine)
        prepared = Prepared(store.engine.dialect)
        first = {"name": "a0", "size": 0.0, "count": 0, "label": "x"}
        rows = [
            {"name": f"b{i:03d}", "size": 0.0, "count": 1, "label": "x"}
            for i in range(COPY_MIN_ROWS)
        ]
        grow = [{"b_name": r["name"], "b_count": 1, "v_count": 2, "v_size": 1.0} for r in rows]
        with write_transaction(store.engine) as conn:
            send_writes(
                conn,
                [(INSERT, [first]), (INSERT, rows), (GROW, grow)],
                commit=True,
                prepared=prepared,
            )
        got = _rows(store.engine)
        assert got[0] == ("a0", 0.0, 0, "x")
        assert got[1:] == [(r["name"], 1.0, 2, "x") for r in rows]
    finally:
        store.close()
