"""Durable truth: runs, task instances, attempts, events, artifacts' records, pools.

Callers use the port (``Store``, ``PipelineCatalog``, ``StoreCapabilities`` in port.py) and
open a store with ``open_store(url)``; ``SqlStore`` and ``MemoryStore`` implement it.
"""

from typing import TYPE_CHECKING, Any

from phloem.store.cache_records import CacheCheck, CacheEntry
from phloem.store.memory import MemoryStore, open_store
from phloem.store.port import PipelineCatalog, Store, StoreCapabilities
from phloem.store.sql import (
    Applied,
    ArtifactRecord,
    ArtifactUse,
    Commit,
    SqlStore,
)

if TYPE_CHECKING:
    from phloem.store.read_types import AttemptRow, EventRow


def __getattr__(name: str) -> Any:
    """``AttemptRow`` and ``EventRow``, made when first asked for (see ``read_types``)."""
    if name in ("AttemptRow", "EventRow"):
        from phloem.store import read_types

        return getattr(read_types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Applied",
    "Commit",
    "ArtifactRecord",
    "ArtifactUse",
    "AttemptRow",
    "CacheCheck",
    "CacheEntry",
    "EventRow",
    "MemoryStore",
    "PipelineCatalog",
    "SqlStore",
    "Store",
    "StoreCapabilities",
    "open_store",
]
