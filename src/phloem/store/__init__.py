"""Durable truth: runs, task instances, attempts, events, artifacts' records, pools.

Callers use the port (``Store``, ``PipelineCatalog``, ``StoreCapabilities`` in port.py) and
open a store with ``open_store(url)``; ``SqlStore`` and ``MemoryStore`` implement it.
"""

from phloem.store.cache_records import CacheCheck, CacheEntry
from phloem.store.memory import MemoryStore, open_store
from phloem.store.port import PipelineCatalog, Store, StoreCapabilities
from phloem.store.sql import (
    Applied,
    ArtifactRecord,
    ArtifactUse,
    AttemptRow,
    Commit,
    EventRow,
    SqlStore,
)

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
