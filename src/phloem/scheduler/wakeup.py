"""Wake a sleeping scheduler at once when a run is queued on this machine.

The scheduler listens on a Unix datagram socket in its home folder and, on PostgreSQL, on a
LISTEN channel; ``phloem trigger`` and ``phloem backfill`` send a byte and a NOTIFY after they
commit, so a triggered run starts within milliseconds instead of at the next tick
(``SchedulerConfig.tick`` remains the fallback).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from pathlib import Path
from typing import Any

PREFIX = "wake-"


class WakeListener:
    def __init__(self, home: Path, owner: str) -> None:
        # one socket per scheduler: several may share a home (on PostgreSQL)
        digest = hashlib.sha1(owner.encode()).hexdigest()[:12]
        self.path = home / f"{PREFIX}{digest}.sock"
        home.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def usable(self) -> bool:
        return True

    def drain(self) -> bool:
        """Empty the socket; True if anything had arrived."""
        got = False
        while True:
            try:
                self.sock.recv(64)
                got = True
            except (BlockingIOError, OSError):
                return got

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def notify(home: Path) -> None:
    """Tell the schedulers on this machine (if any) that there is new work; never fails."""
    try:
        paths = list(home.glob(f"{PREFIX}*.sock"))
    except OSError:
        return
    for path in paths:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(b"!", str(path))


CHANNEL = "phloem_work"


class PgListener:
    """LISTEN on PostgreSQL, so schedulers on other machines wake for a queued run too.

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


def notify_all(home: Path | None, engine: Any) -> None:
    """Wake schedulers: on this machine through their sockets, elsewhere through NOTIFY."""
    if home is not None:
        notify(home)
    if engine.dialect.name == "postgresql":
        with contextlib.suppress(Exception), engine.connect() as conn:
            conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
            conn.commit()
