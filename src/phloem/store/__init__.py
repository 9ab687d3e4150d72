"""Durable truth: runs, task instances, attempts, events, artifacts' records, pools."""

from phloem.store.sql import Applied, ArtifactRecord, ArtifactUse, AttemptRow, EventRow, SqlStore

__all__ = ["Applied", "ArtifactRecord", "ArtifactUse", "AttemptRow", "EventRow", "SqlStore"]
