"""The artifact store of the attempt running in this context, for what a task stores besides
its output (a validation or drift report). The runner sets it around each attempt."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from phloem.artifacts.store import ArtifactStore

_active: ContextVar[ArtifactStore | None] = ContextVar("phloem_attempt_artifacts", default=None)


def active_store() -> ArtifactStore | None:
    """The running attempt's artifact store, or None outside an attempt."""
    return _active.get()


@contextmanager
def storing_in(store: ArtifactStore) -> Iterator[None]:
    token = _active.set(store)
    try:
        yield
    finally:
        _active.reset(token)


__all__ = ["active_store", "storing_in"]
