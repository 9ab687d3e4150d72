"""Worker-side fencing: an attempt runs only while its driver still owns its run.

A driver can freeze (SIGSTOP, a long GC pause, a VM migration) or lose the database while its
attempts keep running in workers; another driver then takes the run over and retries them.
So the side that runs an attempt keeps it honest by itself, without the driver:

- while the attempt runs, a thread of the worker process writes its heartbeat every
  ``ttl / 6`` seconds, a compare-and-set on (attempt, try number, still active, run still
  owned by the attempt's driver), over one store connection per worker process;
- a heartbeat refused (the run was taken over, the try moved on) stops the attempt at once;
- an attempt whose heartbeat could not be written for ``ttl / 2`` seconds is stopped too (its
  driver's lease may have run out), by a second thread that never waits on the database;
- an attempt starts without asking the store only if its driver confirmed the run recently
  (the commit that queued it, or a heartbeat of the same run from this process: within
  ``ttl / 4``); otherwise it first writes a heartbeat, and does not start if that is refused.

A successor retries an inherited attempt only once its last heartbeat is a whole ``ttl`` old
(``driver.orphans``), so the old attempt is gone by then. Tasks shorter than ``ttl / 6`` never
open a connection or write a heartbeat: the hot path costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from phloem.errors import first_line
from phloem.runner import Attempt
from phloem.store.port import AttemptLeasing
from phloem.store.types import Beat

#: heartbeats per lease time
BEATS_PER_TTL = 6
#: the fraction of the lease time after which an attempt with no heartbeat written stops
GIVE_UP = 0.5

Stop = Callable[[Attempt, str], None]
#: how often an idle heartbeat thread looks for an attempt (an attempt whose first heartbeat
#: is due sooner wakes it; the hot path of tiny tasks then costs no thread switch)
_IDLE = 1.0


def fenced(a: Attempt) -> bool:
    """Whether ``a`` must heartbeat: its driver holds a lease on a store other processes
    share (an in-memory store lives in one process: nothing else can run the attempt)."""
    return bool(a.heartbeat_ttl and a.owner and a.store_url)


class Fence:
    """The attempt one worker process runs, kept fenced. ``stop`` is called (from a thread of
    the fence) when the attempt must end now; it must stop it, e.g. by killing the process
    group, and never returns in practice."""

    def __init__(self, stop: Stop) -> None:
        self._stop_cb = stop
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._leases: dict[str, AttemptLeasing] = {}
        self._opening = threading.Lock()
        #: per (run, owner), when (monotonic) the store last confirmed that owner holds it
        self._runs: dict[tuple[str, str | None], float] = {}
        self._current: Attempt | None = None
        self._since = 0.0  # monotonic time of the current attempt's last confirmation
        self._error = ""
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    # -- the running attempt ---------------------------------------------------------------------

    def begin(self, a: Attempt) -> str | None:
        """Fence ``a`` before it starts; returns why it must not start, or None."""
        if not fenced(a):
            return None
        assert a.heartbeat_ttl is not None
        ttl = a.heartbeat_ttl
        now = time.monotonic()
        since = self._runs.get((a.run_id, a.owner), float("-inf"))
        if a.lease_from is not None:
            since = max(since, now - max(0.0, time.time() - a.lease_from))
        if now - since > ttl * GIVE_UP / 2:
            # little of the confirmation left: confirm first, so that the attempt starts with
            # time for its heartbeats
            confirmed, why = self._confirm(a, ttl)
            if why is not None:
                return why
            since = confirmed
        with self._lock:
            self._current, self._since, self._stopping = a, since, False
        self._start_threads()
        if since + ttl / BEATS_PER_TTL - now < _IDLE:
            self._wake.set()  # its first heartbeat is due before the writer looks again
        return None

    def end(self, a: Attempt) -> None:
        """``a`` ended: nothing to fence any more."""
        with self._lock:
            if self._current is a:
                self._current = None

    def running(self, a: Attempt) -> bool:
        with self._lock:
            return self._current is a

    # -- the store -------------------------------------------------------------------------------

    def _store(self, a: Attempt) -> AttemptLeasing:
        """The store's attempt leases, over one connection per worker process and store."""
        assert a.store_url is not None
        with self._opening:
            leases = self._leases.get(a.store_url)
            if leases is None:
                from phloem.store import open_store

                leases = open_store(a.store_url, migrate=False).attempt_leases
                self._leases[a.store_url] = leases
        return leases

    def _beat(self, a: Attempt) -> tuple[float, bool | None]:
        """One heartbeat of ``a``: (when it began, written?); None when it failed."""
        began = time.monotonic()
        beat = Beat(a.run_id, a.task_id, a.map_index, a.try_number, a.owner)
        try:
            written = bool(self._store(a).beat([beat]))
        except Exception as exc:
            self._error = first_line(exc)
            return began, None
        with self._lock:
            key = (a.run_id, a.owner)
            if written:
                self._runs[key] = max(self._runs.get(key, float("-inf")), began)
            else:  # the run may have been taken over: the next attempt of it asks first
                self._runs.pop(key, None)
        return began, written

    def _confirm(self, a: Attempt, ttl: float) -> tuple[float, str | None]:
        """Ask the store, before ``a`` starts, whether it is still current (retrying for up
        to ``ttl`` seconds while the store cannot be reached)."""
        deadline = time.monotonic() + ttl
        while True:
            began, written = self._beat(a)
            if written:
                return began, None
            if written is False:
                return began, _not_current(a, "was not started")
            if time.monotonic() > deadline:
                return began, (
                    f"attempt {a.try_number} of task '{a.task_id}' was not started: the store "
                    f"could not confirm that its driver still owns the run ({self._error})"
                )
            time.sleep(min(ttl / BEATS_PER_TTL, 0.5))

    # -- the threads -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the fence's threads (a worker process that ends need not call it)."""
        self._closed.set()
        self._wake.set()
        for t in self._threads:
            t.join(5)

    def _start_threads(self) -> None:
        if self._threads:
            return
        for target, name in ((self._writer, "heartbeat"), (self._watchdog, "watchdog")):
            t = threading.Thread(target=target, name=f"phloem-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _writer(self) -> None:
        """Write the running attempt's heartbeat every ``ttl / 6`` seconds."""
        while not self._closed.is_set():
            with self._lock:
                a, since, stopping = self._current, self._since, self._stopping
            if a is None or a.heartbeat_ttl is None or stopping:
                self._wake.wait(_IDLE)
                self._wake.clear()
                continue
            every = a.heartbeat_ttl / BEATS_PER_TTL
            due = since + every - time.monotonic()
            if due > 0:
                self._wake.wait(due)
                self._wake.clear()
                continue
            began, written = self._beat(a)
            if written is None:
                self._closed.wait(min(every / 2, 0.5))  # the store is away: try again soon
                continue
            with self._lock:
                if self._current is not a:
                    continue
                if written:
                    self._since = max(self._since, began)
                    continue
            self._halt(a, _not_current(a, "was stopped by its worker"))

    def _watchdog(self) -> None:
        """Stop the running attempt once no heartbeat was written for ``ttl / 2`` seconds;
        never waits on the store, so a hung connection cannot keep an attempt alive."""
        while not self._closed.is_set():
            with self._lock:
                a, since, stopping = self._current, self._since, self._stopping
            if a is None or a.heartbeat_ttl is None or stopping:
                self._closed.wait(0.25)
                continue
            limit = a.heartbeat_ttl * GIVE_UP
            late = time.monotonic() - since
            if late > limit:
                why = self._error or "no answer from the store"
                self._halt(
                    a,
                    f"attempt {a.try_number} of task '{a.task_id}' was stopped by its worker: "
                    f"its heartbeat could not be written for {late:.1f}s ({why}), so another "
                    "driver may run it",
                )
                continue
            self._closed.wait(min(limit - late, a.heartbeat_ttl / BEATS_PER_TTL / 2, 0.5) + 0.001)

    def _halt(self, a: Attempt, reason: str) -> None:
        with self._lock:
            if self._current is not a or self._stopping:
                return
            self._stopping = True
        self._stop_cb(a, reason)


def _not_current(a: Attempt, what: str) -> str:
    return (
        f"attempt {a.try_number} of task '{a.task_id}' {what}: it is no longer current (its "
        "run was taken over by another driver, or the task moved on)"
    )


__all__ = ["BEATS_PER_TTL", "GIVE_UP", "Fence", "Stop", "fenced"]
