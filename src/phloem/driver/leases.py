"""Keep the leases of the runs a process drives, so nobody else drives them at the same time."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable

from phloem.store.catalog import Catalog

log = logging.getLogger("phloem.driver")

#: how long a run stays ours without a renewal; a driver that dies frees its runs after this
DEFAULT_TTL = 30.0


def holder_id(kind: str) -> str:
    """A name for this process that people can read in `phloem runs show`."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


def is_dead_local(holder: str) -> bool:
    """True when ``holder`` names a process on this machine that no longer exists, so its
    leases can be taken at once instead of after they expire."""
    _, _, rest = holder.partition(":")
    host, _, pid = rest.rpartition(":")
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
    def __init__(self, catalog: Catalog, owner: str, ttl: float = DEFAULT_TTL) -> None:
        self.catalog = catalog
        self.owner = owner
        self.ttl = ttl
        self.next_renewal = time.time() + ttl / 3

    def renew(self, run_ids: Iterable[str], now: float) -> set[str]:
        """Renew and return the runs we no longer own. A database blip is not a loss: we
        keep driving and try again soon (the lease still has two thirds of its time)."""
        ids = set(run_ids)
        try:
            kept = self.catalog.renew_runs(self.owner, ids, self.ttl, now)
        except Exception as exc:  # the store may be restarting: retry shortly
            log.warning("could not renew run leases (%s); retrying", exc)
            self.next_renewal = now + min(1.0, self.ttl / 10)
            return set()
        self.next_renewal = now + self.ttl / 3
        return ids - kept

    def release(self, run_ids: Iterable[str]) -> None:
        try:
            self.catalog.release_runs(self.owner, run_ids)
        except Exception as exc:
            log.warning("could not release run leases (%s); they expire by themselves", exc)
