"""Database engines: SQLite set up for one writer and many readers, PostgreSQL pooled; and what
the store's parts (runs, catalog, variables) share of one: its engine and write transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from phloem.errors import StoreError
from phloem.store.opening import bad_url
from phloem.store.prepared import Prepared

#: SQLite's ``synchronous`` setting unless the URL asks for another (``?synchronous=full``).
#: In WAL mode NORMAL keeps every commit through a crash of any process (the write reached the
#: operating system before COMMIT returned), but not through a power loss or an operating-system
#: crash, which may take the last commits with them; FULL syncs the WAL on every commit and
#: keeps them through that too, at the cost of one fsync per commit.
DEFAULT_SYNCHRONOUS = "normal"
SYNCHRONOUS = ("normal", "full", "extra")

#: seconds a new PostgreSQL connection may take, unless the URL says (``?connect_timeout=N``).
#: Without one, a connection to a host that takes the TCP connection and never answers (a
#: server stopped with SIGSTOP, a proxy whose backend is gone) waits for ever, and so does the
#: process: the store's retries and the heartbeats' give-up time never get their turn.
CONNECT_TIMEOUT = 10

#: libpq's TCP settings for PostgreSQL connections, each unless the URL sets it. Without them
#: a connection whose server vanished (a host powered off, a network cut, a managed database
#: failing over to another address) waits for an answer that never comes until the operating
#: system gives up: two hours and more for a connection waiting on a query. With them libpq
#: ends such a connection after about a minute (30 s quiet, then 3 probes 10 s apart, or 60 s
#: of data sent and never acknowledged), and the store's retries go on with a new one. A
#: server that is merely busy answers the probes from its kernel, so a long query is not cut.
TCP_SETTINGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # milliseconds
}


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


#: the execution option (and connection-record flag) that makes a transaction a writer's
WRITE = "phloem_write"


def sqlite_setup(engine: Engine, synchronous: str = DEFAULT_SYNCHRONOUS) -> None:
    """WAL, ``synchronous``, and transactions that phloem begins itself: writers with BEGIN
    IMMEDIATE (the write lock up front: no deadlock on upgrading from read to write), readers
    with a deferred BEGIN (they never wait for, or block, a writer).

    The BEGIN is the dialect's ``do_begin``, not a ``begin`` connection event as in
    SQLAlchemy's own recipe: any connection event makes every statement of the engine go
    through event dispatch (some 10-20 us each, six statements per loop turn). Pool events
    (connect, checkin) cost nothing per statement."""
    pragma = f"PRAGMA synchronous = {synchronous.upper()}"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute(pragma)
        cur.close()

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info.pop(WRITE, None)  # a writer's flag never outlives its checkout

    dialect = engine.dialect
    set_options = dialect.set_connection_execution_options

    def set_connection_execution_options(conn: Connection, opts: Any) -> None:
        if WRITE in opts:
            conn.connection.info[WRITE] = bool(opts[WRITE])
        set_options(conn, opts)

    def do_begin(pooled: Any) -> None:
        write = pooled.info.get(WRITE)
        pooled.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    dialect.set_connection_execution_options = set_connection_execution_options  # type: ignore[method-assign,assignment]
    dialect.do_begin = do_begin  # type: ignore[method-assign,assignment]


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
        given = make_url(url).query
        defaults = {"connect_timeout": CONNECT_TIMEOUT, **TCP_SETTINGS}
        args = {k: v for k, v in defaults.items() if k not in given}
        return create_engine(url, pool_size=5, max_overflow=5, connect_args=args)
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
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        yield conn


class HeldWriter:
    """Write transactions on one connection kept checked out of the pool: a checkout and its
    return (pool bookkeeping, the checkin's reset, a ``Connection`` built each time) cost some
    60 µs per transaction on a slow core, as much as SQLite's own BEGIN, five writes and
    COMMIT, and the run loop commits once a turn. A thread that finds the connection busy
    (another thread is writing through it) takes one from the pool, as every write did before,
    so writers wait for each other exactly as they did. A connection the database dropped is
    replaced on its next use, as a pooled one is (SQLAlchemy reconnects an invalidated
    ``Connection``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite), committed when the block ends."""
        if not self._lock.acquire(blocking=False):
            with write_transaction(self._engine) as conn:
                yield conn
            return
        try:
            held = self._conn
            if held is None or held.closed:
                held = self._engine.connect().execution_options(**{WRITE: True})
                self._conn = held
            with held.begin():
                yield held
        finally:
            self._lock.release()

    def close(self) -> None:
        """Give the connection back to the pool (``Engine.dispose`` closes only those there)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class RoundTrip:
    """An open ``one_round_trip``."""

    def __init__(self, driver_connection: Any) -> None:
        self._raw = driver_connection

    def commit(self) -> None:
        """End the transaction with the batch: on PostgreSQL its COMMIT travels with the
        writes and is confirmed when the block ends (SQLAlchemy's commit, after it, finds the
        transaction ended and sends nothing); elsewhere nothing, the transaction commits as
        usual when its block ends. Call it last in the block, and end the transaction's block
        right after it."""
        if self._raw is not None:
            self._raw.execute("COMMIT")


@contextmanager
def one_round_trip(conn: Connection) -> Iterator[RoundTrip]:
    """Writes whose results nobody reads (no row count, no rows) sent together: on PostgreSQL
    (psycopg) as one pipeline, one round trip to the server instead of one per statement;
    elsewhere one by one, as without it. Why only those: inside a pipeline results arrive at
    its end, so an UPDATE's row count reads -1 (never put a compare-and-set or the fencing
    check in one). The statements still run in order, in the caller's transaction; an error
    of any of them is raised at the end of the block, as SQLAlchemy raises it elsewhere."""
    dialect = conn.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        yield RoundTrip(None)
        return
    raw = conn.connection.driver_connection
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with raw.pipeline():  # type: ignore[union-attr]
            yield RoundTrip(raw)
    except dbapi_error as exc:  # raised by the sync ending the pipeline, not wrapped yet
        gone = dialect.is_disconnect(exc, raw, None)
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            "(the statements of one pipeline)",
            None,
            exc,
            dbapi_error,
            connection_invalidated=gone,
            dialect=dialect,
        ) from exc


#: writes kept for the end of a transaction, whose results nobody reads: (statement, rows)
Writes = list[tuple[Any, Any]]


def send_writes(
    conn: Connection, writes: Writes, *, commit: bool = False, prepared: Prepared | None = None
) -> None:
    """Run ``writes`` in order, in one round trip on PostgreSQL; with ``commit``, the
    transaction's COMMIT goes in the same round trip (the caller ends its transaction block
    right after). With ``prepared``, on the driver's cursor (``prepared.Prepared``); a large
    INSERT it sends by COPY goes between two round trips, as COPY cannot be pipelined."""
    if not writes:
        return  # a COMMIT alone is one round trip anyway: the transaction's own
    pending: Writes = []

    def send(last: bool) -> None:
        with one_round_trip(conn) as trip:
            for statement, rows in pending:
                if prepared is not None:
                    prepared.run(conn, statement, rows)
                else:
                    conn.execute(statement, rows)
            if last and commit:
                trip.commit()
        pending.clear()

    for statement, rows in writes:
        if prepared is not None and prepared.copies(statement, rows):
            if pending:
                send(last=False)
            prepared.run(conn, statement, rows)
        else:
            pending.append((statement, rows))
    if pending:
        send(last=True)
