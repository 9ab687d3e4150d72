"""A store private to one process, for tests, notebooks and one-off runs that need no history.

It is the SQL store over SQLite in memory (one connection, shared by the threads of this
process), so it passes the same conformance suite as SQLite and PostgreSQL; what sets it
apart is said by its capabilities, never by its URL: no other process can open it (tasks in
worker processes cannot read variables from it, and a run needs no lease), it cannot notify,
and one scheduler holds it.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import StaticPool

from phloem.config import DEFAULT_OUTAGE_TIMEOUT
from phloem.store.engine import MEMORY_URLS, sqlite_setup
from phloem.store.port import StoreCapabilities
from phloem.store.sql import SqlStore

PRIVATE = StoreCapabilities(shared=False, notify=False, multi_writer=False)


class MemoryStore(SqlStore):
    single_connection = True

    def __init__(self, *, outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT) -> None:
        super().__init__("memory", outage_timeout=outage_timeout)
        self.capabilities = PRIVATE

    def _make_engine(self, url: str) -> Engine:
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        sqlite_setup(engine)
        return engine

    @property
    def shared_url(self) -> str | None:
        return None

    @property
    def display_url(self) -> str:
        return "memory (private to this process)"


def open_store(
    url: str, *, migrate: bool = True, outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT
) -> SqlStore:
    """The store at ``url``: ``"memory"`` for a private in-memory one, else a SQLAlchemy URL
    (``sqlite:///path/phloem.db``, ``postgresql+psycopg://...``)."""
    if url in MEMORY_URLS:
        return MemoryStore(outage_timeout=outage_timeout)
    return SqlStore(url, migrate=migrate, outage_timeout=outage_timeout)


__all__ = ["MEMORY_URLS", "MemoryStore", "open_store"]
