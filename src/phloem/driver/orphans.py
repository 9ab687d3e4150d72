"""Attempts inherited from a driver that lost its run, which may still be running where that
driver sent them: their retries are held back until the old attempts' leases expired.

A worker stops its attempt by itself once its heartbeat finds the run taken over, or once it
could not write a heartbeat for half the lease time (see ``executors.fencing``); so an attempt
whose last heartbeat is a whole lease time old is gone, and one that never sent a heartbeat
is gone a lease time after the takeover. Until then a retry of the same task instance waits
here, never in a worker, so no task instance ever runs in two places at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from phloem.driver.leases import is_dead_local
from phloem.records import TI, Key
from phloem.runner import Attempt
from phloem.store.port import AttemptLeasing


class Orphans:
    def __init__(self) -> None:
        #: per task instance, until when (driver clock) an earlier attempt may still run
        self._until: dict[Key, float] = {}
        self._held: dict[Key, Attempt] = {}

    def watch(
        self, leases: AttemptLeasing, run_id: str, stale: Iterable[TI], ttl: float, now: float
    ) -> None:
        """Note the attempts of ``stale`` instances (read before they are rescheduled)."""
        tis = list(stale)
        if not tis:
            return
        keys = [(t.task_id, t.map_index, t.try_number) for t in tis]
        db_now, beats = leases.heartbeats(run_id, keys)
        for ti in tis:
            lease = beats.get((ti.task_id, ti.map_index, ti.try_number))
            if lease is not None and lease.holder and is_dead_local(lease.holder):
                continue  # its driver died on this machine, and its workers with it
            beat = lease.heartbeat_at if lease is not None else None
            wait = ttl if beat is None else beat + ttl - db_now
            if wait > 0:
                self._until[ti.key] = max(self._until.get(ti.key, 0.0), now + wait)

    def gate(self, attempts: list[Attempt], now: float) -> list[Attempt]:
        """The attempts that may go out now; the others wait for their predecessor's lease."""
        if not self._until:
            return attempts
        out = []
        for a in attempts:
            until = self._until.get(a.key)
            if until is not None and until > now:
                self._held[a.key] = a
            else:
                self._until.pop(a.key, None)
                out.append(a)
        return out

    def release(self, now: float, current: Callable[[Attempt], bool]) -> list[Attempt]:
        """Held attempts whose wait is over and that are still to run (``current``)."""
        if not self._held:
            self._until = {k: t for k, t in self._until.items() if t > now}
            return []
        out = []
        for key, a in list(self._held.items()):
            if self._until.get(key, 0.0) <= now:
                del self._held[key]
                self._until.pop(key, None)
                if current(a):
                    out.append(a)
        return out

    @property
    def wake_at(self) -> float | None:
        """When the next held attempt may go out."""
        times = [self._until[k] for k in self._held if k in self._until]
        return min(times) if times else None

    def __len__(self) -> int:
        return len(self._held)


__all__ = ["Orphans"]
