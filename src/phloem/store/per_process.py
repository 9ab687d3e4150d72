"""The store a running task reaches (variables, connections, watermarks, the registry,
breakers, other runs' outputs): opened once per process and URL, never per call.

Inside an attempt it is the run's own store (``TaskContext.store_url``); outside one, the
configured store. A forked worker opens its own connections rather than sharing its parent's.
"""

from __future__ import annotations

import os
import threading

from phloem.errors import PhloemError
from phloem.store.port import Store

_lock = threading.Lock()
_stores: dict[tuple[int, str], Store] = {}


def task_store(what: str, url: str | None = None) -> Store:
    """The store at ``url`` (default: the running task's run's, else the configured one);
    ``what`` names the feature in the error raised when the run's store is private."""
    url = url or _default_url(what)
    key = (os.getpid(), url)
    with _lock:
        found = _stores.get(key)
        if found is None:
            from phloem.store import open_store

            found = _stores[key] = open_store(url)
        return found


def close_task_stores() -> None:
    """Close the stores this process opened (inherited ones are the parent's)."""
    with _lock:
        mine = [k for k in _stores if k[0] == os.getpid()]
        found = [_stores.pop(k) for k in mine]
    for store in found:
        store.close()


def _default_url(what: str) -> str:
    from phloem.context import _current

    ctx = _current.get()
    if ctx is not None:
        if not ctx.store_url:  # the run's store is private to the process that drives it
            raise PhloemError(
                f"{what} need a shared store (a SQLite file or PostgreSQL); this run's "
                "in-memory store is private to the process that made it: run with a store URL, "
                "or pass values as run parameters"
            )
        return ctx.store_url
    from phloem.config import Settings

    settings = Settings.from_env()
    if settings.db_url.startswith("sqlite"):
        settings.ensure_dirs()
    return settings.db_url


__all__ = ["close_task_stores", "task_store"]
