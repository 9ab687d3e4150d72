"""Notice runs that another process ended while this driver drives them.

``phloem cancel``, the API and the UI's button end a run in the store at once: its unfinished
tasks fail and the run fails. The attempts of it that still run would otherwise stop only at
their next heartbeat (``ttl / 6``: 5 s by default, minutes with a long lease), and a driver
waiting for a timer (a retry's delay) would learn of it only when the timer came. A driver
asks the store every ``EVERY`` seconds which of its runs have ended, one query for all of
them, stops their attempts itself and lets the runs go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from phloem.errors import first_line
from phloem.store.port import PipelineCatalog

log = logging.getLogger("phloem.driver")

#: how often a driver asks whether the runs it drives were ended elsewhere
EVERY = 1.0


class EndWatch:
    """Asks the store, at most once per ``every`` seconds, which runs have ended."""

    def __init__(
        self,
        catalog: PipelineCatalog,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.every = every
        self.clock = clock
        self._next = clock() + every
        self._failing = False

    def due_in(self) -> float:
        """Seconds until the next look; a waiting driver wakes by then."""
        return max(0.0, self._next - self.clock())

    def ended(self, run_ids: Iterable[str]) -> set[str]:
        """Those of ``run_ids`` that have ended, if a look is due (else nothing). A store that
        cannot be read now is asked again at the next look: a run's own commits and its
        attempts' heartbeats still find out, only later."""
        now = self.clock()
        if now < self._next:
            return set()
        self._next = now + self.every
        ids = list(run_ids)
        if not ids:
            return set()
        try:
            ended = self.catalog.ended_runs(ids)
        except Exception as exc:
            if not self._failing:  # once per outage
                log.warning("could not look for cancelled runs (%s); retrying", first_line(exc))
            self._failing = True
            return set()
        self._failing = False
        return ended


__all__ = ["EVERY", "EndWatch"]
