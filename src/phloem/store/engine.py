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

#: SQLite's ``synchronous`` setting unless the URL asks for another (``?synchronous=full``).
#: In WAL mode NORMAL keeps every commit through a crash of any process (the write reached the
#: operating system before COMMIT returned), but not through a power loss or an operating-system
#: crash, which may take the last commits with them; FULL syncs the WAL on every commit and
#: keeps them through that too, at the cost of one fsync per commit.
DEFAULT_SYNCHRONOUS = "normal"
SYNCHRONOUS = ("normal", "full", "extra")


def sqlite_synchronous(url: str) -> tuple[str, str]:
    """The URL without phloem's ``synchronous`` query parameter (the SQLite driver knows none
    such), and the setting it asks for."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, DEFAULT_SYNCHRONOUS
    kept, level = [], DEFAULT_SYNCHRONOUS
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key != "synchronous":
            kept.append(pair)
            continue
        level = value.lower()
        if level not in SYNCHRONOUS:
            raise StoreError(
                f"the database URL asks for synchronous={value!r}; use one of "
                f"{', '.join(SYNCHRONOUS)} (normal: durable through a crash of any process; "
                "full: also through a power loss)"
            )
    return (f"{base}?{'&'.join(kept)}" if kept else base), level


def sqlite_setup(engine: Engine, synchronous: str = DEFAULT_SYNCHRONOUS) -> None:
    pragma = f"PRAGMA synchronous = {synchronous.upper()}"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute(pragma)
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
            plain, synchronous = sqlite_synchronous(url)
            engine = create_engine(plain, connect_args={"check_same_thread": False, "timeout": 30})
            sqlite_setup(engine, synchronous)
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
