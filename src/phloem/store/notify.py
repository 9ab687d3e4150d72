"""Cross-machine wake-ups on PostgreSQL: ``announce_work`` sends a NOTIFY after runs are queued,
and a scheduler LISTENs, so a run triggered on another machine starts at once instead of at
the scheduler's next tick. Stores that cannot notify return no listener."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from sqlalchemy import Engine

CHANNEL = "phloem_work"


def announce(engine: Engine) -> None:
    """NOTIFY the schedulers listening on this database; never fails (a wake-up is a hint)."""
    with contextlib.suppress(Exception), engine.connect() as conn:
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
        conn.commit()


class PgListener:
    """LISTEN on PostgreSQL.

    The connection may drop (a database restart): the listener then reconnects now and then
    and, until it has, is left out of the wait (the tick still finds new runs)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn: Any = None
        self._next_try = 0.0
        self._connect()

    def _connect(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def usable(self) -> bool:
        if self.conn is not None and not self.conn.broken and not self.conn.closed:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + 5.0
        try:
            self.close()
            self._connect()
            return True
        except Exception:
            self.conn = None
            return False

    def fileno(self) -> int:
        return int(self.conn.pgconn.socket)

    def drain(self) -> bool:
        if self.conn is None or self.conn.broken:
            return False
        got = False
        try:
            for _ in self.conn.notifies(timeout=0):
                got = True
        except Exception:  # a dropped connection only costs the fast wake-up
            return got
        return got

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
