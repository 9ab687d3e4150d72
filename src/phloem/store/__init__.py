"""Durable truth: runs, task instances, attempts, events, artifacts' records, pools."""

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
    "EventRow",
    "SqlStore",
]
