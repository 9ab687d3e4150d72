"""Database engines: SQLite set up for one writer and many readers, PostgreSQL pooled; and what
the store's parts (runs, catalog, variables) share of one: its engine and write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from phloem.errors import StoreError
from phloem.store.opening import bad_url


def sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # writers take the write lock up front (no deadlock on upgrade from read to write);
        # readers use a deferred transaction so they never wait for, or block, a writer
        if conn.get_execution_options().get("phloem_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


#: the URLs that name a private in-memory store (``MemoryStore``), not a database to open
MEMORY_URLS = ("memory", "sqlite://", "sqlite:///:memory:")


def make_engine(url: str) -> Engine:
    """An engine for a SQLite file or PostgreSQL (the in-memory store makes its own)."""
    if url in MEMORY_URLS:
        raise StoreError(
            f"{url!r} names a private in-memory store: open it with "
            "phloem.store.open_store('memory') (or MemoryStore()), not as a SQL URL"
        )
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            sqlite_setup(engine)
            return engine
        # no pre-ping round trip per transaction: a connection dropped by a restart fails its
        # call, and the resilience layer retries it on a fresh one
        return create_engine(url, pool_size=5, max_overflow=5)
    except (ArgumentError, NoSuchModuleError, ValueError, TypeError) as exc:
        raise bad_url(url, exc) from None


class Database(Protocol):
    """One database as the store's parts share it (``SqlStore`` is one)."""

    engine: Engine
    outage_timeout: float

    def close(self) -> None: ...


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction: on SQLite it takes the write lock up front (BEGIN IMMEDIATE), so it
    never fails upgrading from a read while another process writes."""
    with engine.connect().execution_options(phloem_write=True) as conn, conn.begin():
        yield conn
