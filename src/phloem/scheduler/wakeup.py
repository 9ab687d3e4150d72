"""Wake a sleeping scheduler at once when a run is queued on this machine.

The scheduler listens on a Unix datagram socket in its home folder and, when the store can
notify (PostgreSQL), on the store's work listener; ``phloem trigger`` and ``phloem backfill``
send a byte and announce the work to the store after they commit, so a triggered run starts
within milliseconds instead of at the next tick (``SchedulerConfig.tick`` remains the
fallback).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phloem.store.port import Store

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


def notify_all(home: Path | None, store: Store) -> None:
    """Wake schedulers: on this machine through their sockets, elsewhere through the store
    (NOTIFY on PostgreSQL)."""
    if home is not None:
        notify(home)
    store.announce_work()
