"""The store's run writes go through one connection it keeps checked out (``HeldWriter``):
one checkout for many transactions, another thread's write beside it on a pooled connection,
a connection the server dropped replaced, and the connection given back on close."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from phloem.errors import RunConflict
from phloem.store import SqlStore
from test_store import make_run, new_run


def _checkouts(store: SqlStore) -> list[object]:
    seen: list[object] = []
    event.listen(store.engine, "checkout", lambda dbapi_conn, *_: seen.append(dbapi_conn))
    return seen


def test_many_writes_take_one_connection_and_close_gives_it_back(sql_url: str) -> None:
    store = SqlStore(sql_url)
    seen = _checkouts(store)
    for i in range(5):
        new_run(store, f"run-{i}", logical_date=f"2026-01-0{i + 1}")
    with pytest.raises(RunConflict):  # a write that fails rolls back; the next one writes on
        store.create_run(make_run("run-again", logical_date="2026-01-01"), [])
    new_run(store, "run-5", logical_date="2026-02-02")
    writes = [c for c in seen if c is seen[0]]
    assert len(writes) == 1, "every write transaction checked a connection out"
    assert {r.run_id for r in store.list_runs()} == {f"run-{i}" for i in range(6)}
    assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    store.close()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_a_second_thread_writes_beside_the_held_connection(pg_url: str) -> None:
    store = SqlStore(pg_url)
    done = threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            new_run(store, "beside", logical_date="2026-02-02")
            done.set()
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    try:
        with store._tx() as conn:  # the held connection, busy in this thread's transaction
            conn.execute(sa.text("SELECT 1"))
            writer = threading.Thread(target=other)
            writer.start()
            # waiting for the held connection would wait for this block: it never ends
            assert done.wait(timeout=60), errors or "the second writer waited for the first"
        writer.join(timeout=60)
        assert not errors
        assert [r.run_id for r in store.list_runs()] == ["beside"]
    finally:
        store.close()


@pytest.mark.postgres
def test_a_held_connection_the_server_dropped_is_replaced(pg_url: str) -> None:
    store = SqlStore(pg_url)
    admin = sa.create_engine(pg_url)
    try:
        new_run(store, "before")
        with store._tx() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with admin.begin() as a:
            assert a.execute(sa.text(f"SELECT pg_terminate_backend({int(pid)})")).scalar_one()
        new_run(store, "after", logical_date="2026-02-02")
        with store._tx() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid
        assert {r.run_id for r in store.list_runs()} == {"before", "after"}
        created = [e for e in store.events("after") if e.task_id is None]
        assert len(created) == 1  # written once, though its first try met the dead connection
    finally:
        store.close()
        admin.dispose()
