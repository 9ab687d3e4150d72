"""Wait out a database that blinked (a restart, a failover, a locked SQLite file) instead of
failing: every store call is retried with bounded, jittered backoff while the error is
transient. Each store call is one transaction and every write is a compare-and-set, so a
retry after an unknown outcome cannot apply anything twice.

How long to wait is the store's ``outage_timeout`` (``Settings.db_outage_timeout``, read once
from ``PHLOEM_DB_OUTAGE_TIMEOUT`` when the application starts), never the environment per call.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from phloem.config import DEFAULT_OUTAGE_TIMEOUT
from phloem.errors import first_line

log = logging.getLogger("phloem.store")

T = TypeVar("T")


#: SQLite errors worth waiting out; others ("no such table", "disk is full", "readonly
#: database") will not go away by themselves and are raised at once
_SQLITE_TRANSIENT = (
    "database is locked",
    "database is busy",
    "disk i/o error",
    "unable to open database",
)


_CONNECTION_TROUBLE = (
    "connection",
    "server closed",
    "terminating",
    "shutting down",
    "starting up",
    "timeout",
    "timed out",
    "could not connect",
)


#: refusals that a retry will not change
_PERMANENT = ("does not exist", "authentication failed", "permission denied", "no pg_hba.conf")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    orig = getattr(exc, "orig", None)
    if type(orig).__module__.startswith("sqlite3"):
        text = str(orig).lower()
        return any(t in text for t in _SQLITE_TRANSIENT)
    # PostgreSQL: connection failures, shutdowns, serialization failures and deadlocks
    # (SQLSTATE classes 08, 57P, 40) are worth a retry; a bad statement is not
    code = getattr(orig, "sqlstate", None)
    if code is None:  # failed before the server answered: only connection trouble waits
        text = str(orig).lower()
        return any(t in text for t in _CONNECTION_TROUBLE) and not any(
            t in text for t in _PERMANENT
        )
    if code == "53100":  # disk full: waiting does not help
        return False
    return bool(code.startswith(("08", "57P", "40", "53")))


#: what a database says while it goes down or comes back up: it is there and will answer again
_RESTARTING = (
    "shutting down",
    "starting up",
    "in recovery mode",
    "not yet accepting connections",
    "terminating connection",
    "server closed the connection",
    "database is locked",
    "database is busy",
)


def is_restarting(exc: BaseException) -> bool:
    """``exc`` comes from a database that is there but restarting, failing over or busy,
    as opposed to one nobody answers for (a wrong host or port, a server never started)."""
    if not is_transient(exc):
        return False
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlstate", None)
    if code is not None and code.startswith(("57P", "40")):
        return True
    text = str(orig).lower()
    return any(t in text for t in _RESTARTING)


def call_retrying(
    fn: Callable[..., T],
    outage: float,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    waited: Callable[[], None] | None = None,
    worth_waiting: Callable[[BaseException], bool] = is_transient,
) -> T:
    """``fn(*args, **kwargs)``, retried while ``worth_waiting(error)``, for at most ``outage``
    seconds; ``waited`` is told of each error waited out."""
    deadline = time.monotonic() + outage
    delay = 0.05
    warned = False
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not worth_waiting(exc) or time.monotonic() + delay > deadline:
                raise
            if not warned:
                log.warning("the database is unavailable (%s); retrying", first_line(exc))
                warned = True
            if waited is not None:
                waited()
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def retrying(
    fn: Callable[..., T], outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT
) -> Callable[..., T]:
    """``fn`` retried while its error is transient, for at most ``outage_timeout`` seconds."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return call_retrying(fn, outage_timeout, args, kwargs)

    return wrapper


def opening_retrying(fn: Callable[[], T], outage: float) -> T:
    """``fn()``, the first use of a database, waiting out a restart or a failover under way
    (a process that starts while PostgreSQL shuts down must not exit) but not a database
    that never answered: a wrong URL fails at once. Once the database was seen restarting,
    its refusals while it is down are waited out too, for at most ``outage`` seconds."""
    seen_restarting = False

    def worth_waiting(exc: BaseException) -> bool:
        nonlocal seen_restarting
        seen_restarting = seen_restarting or is_restarting(exc)
        return seen_restarting and is_transient(exc)

    return call_retrying(fn, outage, (), {}, worth_waiting=worth_waiting)


def _count_wait(obj: Any) -> None:
    """Count an error waited out on the store ``obj`` is (or is part of), for monitoring:
    ``waited_out`` on the store, per process."""
    store = obj if hasattr(obj, "waited_out") else getattr(obj, "store", None)
    if store is not None and hasattr(store, "waited_out"):
        store.waited_out += 1


def _method_retrying(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        return call_retrying(
            fn, self.outage_timeout, (self, *args), kwargs, lambda: _count_wait(self)
        )

    return wrapper


def single_try(fn: Callable[..., T]) -> Callable[..., T]:
    """Leave this method out of ``resilient``: its caller keeps time itself (a lease renewal
    that hangs in retries would outlive the lease it renews)."""
    fn.__phloem_single_try__ = True  # type: ignore[attr-defined]
    return fn


def resilient(cls: type[T]) -> type[T]:
    """Wrap every public method of ``cls`` so it waits out transient errors for at most
    ``self.outage_timeout`` seconds (except ``single_try`` ones)."""
    for name, value in list(vars(cls).items()):
        if (
            name.startswith("_")
            or not callable(value)
            or isinstance(value, (staticmethod, classmethod))
            or getattr(value, "__phloem_single_try__", False)
        ):
            continue
        setattr(cls, name, _method_retrying(value))
    return cls
