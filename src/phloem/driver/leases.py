"""Keep the leases of the runs a process drives, so nobody else drives them at the same time."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable

from phloem.config import DEFAULT_LEASE_TTL
from phloem.errors import PhloemError, first_line
from phloem.states import DriverRole
from phloem.store.port import PipelineCatalog

log = logging.getLogger("phloem.driver")

#: how long a run stays ours without a renewal; a driver that dies frees its runs after this
DEFAULT_TTL = DEFAULT_LEASE_TTL


def holder_id(role: DriverRole) -> str:
    """A name for one driver that people can read: role, host, process id, and a suffix so
    two drivers in one process are told apart."""
    return f"{role.value}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def is_dead_local(holder: str) -> bool:
    """True when ``holder`` names a process on this machine that no longer exists, so its
    leases can be taken at once instead of after they expire."""
    parts = holder.split(":")
    if len(parts) < 3:
        return False
    host, pid = parts[1], parts[2]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseKeeper:
    """Renews the leases of the runs its loop drives, from a thread of its own, so a loop that
    is busy for a while (reading pipeline files, a slow task inline) does not lose them.

    Every commit also extends its run's lease and is refused if the run has another owner
    (fencing, see ``Commit.owner``); the keeper covers the time between commits.
    """

    def __init__(
        self,
        catalog: PipelineCatalog,
        owner: str,
        ttl: float = DEFAULT_TTL,
        also: Callable[[float], None] | None = None,
    ) -> None:
        if not ttl > 0:
            raise PhloemError(f"a lease time must be a positive number of seconds, got {ttl!r}")
        self.catalog = catalog
        self.owner = owner
        self.ttl = ttl
        self.also = also  # another lease to renew on the same rhythm (the SQLite scheduler's)
        self._runs: set[str] = set()
        self._lost: set[str] = set()
        #: per run, when (monotonic) the last renewal that reached the store began
        self._confirmed: dict[str, float] = {}
        self._failed = False
        self._failing = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, name="phloem-leases", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def track(self, run_ids: Iterable[str]) -> None:
        """Keep the leases of these runs (a run new here was just claimed or committed: its
        lease is fresh)."""
        now = time.monotonic()
        with self._lock:
            self._runs = set(run_ids)
            self._confirmed = {r: self._confirmed.get(r, now) for r in self._runs}

    def confirm(self, run_ids: Iterable[str], began: float) -> None:
        """These runs' leases were extended by a commit that began at ``began`` (monotonic):
        a long commit (a 100,000-wide expansion) holds the database the renewal thread waits
        for, and must not make its own runs look lost."""
        with self._lock:
            for run_id in run_ids:
                if run_id in self._confirmed:
                    self._confirmed[run_id] = max(self._confirmed[run_id], began)

    def take_lost(self) -> set[str]:
        """Runs another driver took, and runs whose lease could not be renewed for half its
        time: the lease may have run out, so another driver may run their tasks now. Judged
        by the clock, not by the renewal thread, which may hang on an unreachable database."""
        now = time.monotonic()
        with self._lock:
            lost, self._lost = self._lost, set()
            if self._thread is not None:
                stale = {r for r, t in self._confirmed.items() if now - t > self.ttl / 2}
                for run_id in stale:
                    log.warning(
                        "could not renew the lease of run %s for %.1fs; treating it as lost",
                        run_id,
                        now - self._confirmed[run_id],
                    )
                lost |= stale
            for run_id in lost:
                self._runs.discard(run_id)
                self._confirmed.pop(run_id, None)
        return lost

    def _loop(self) -> None:
        delay = self.ttl / 3
        while not self._stop.wait(delay):
            with self._lock:
                ids = set(self._runs)
            if self.also is not None:
                try:
                    self.also(time.time())
                except Exception as exc:
                    log.warning("could not renew a lease (%s); retrying", exc)
            self._failed = False
            lost = self.renew(ids, time.time())
            if lost:
                with self._lock:
                    self._lost |= lost
            # after a failure, try again soon: the lease keeps running out meanwhile
            delay = min(self.ttl / 10, 1.0) if self._failed else self.ttl / 3

    def renew(self, run_ids: Iterable[str], now: float) -> set[str]:
        """Renew and return the runs we no longer own. One failed renewal is not a loss yet
        (the lease has time left and the next round tries again); ``take_lost`` counts runs
        whose leases could not be renewed for too long."""
        ids = set(run_ids)
        began = time.monotonic()
        try:
            kept = self.catalog.renew_runs(self.owner, ids, self.ttl, now)
        except Exception as exc:
            if not self._failing:  # once per outage, not once a second
                log.warning("could not renew run leases (%s); retrying", first_line(exc))
            self._failed = self._failing = True
            return set()
        self._failing = False
        with self._lock:
            for run_id in kept:
                if run_id in self._confirmed:
                    self._confirmed[run_id] = max(self._confirmed[run_id], began)
        return ids - kept

    def release(self, run_ids: Iterable[str]) -> bool:
        """Give the leases of these runs back; False if the store could not be told (they
        then expire by themselves)."""
        try:
            self.catalog.release_runs(self.owner, run_ids)
        except Exception as exc:
            log.warning("could not release run leases (%s); they expire by themselves", exc)
            return False
        return True
