"""What the store keeps for task caching: entries (one per key) and checks (what the cache
said about one task instance)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A reusable output: the instance that produced it and the parts its key was made of.
    ``replace``: the entry of this key found at lookup was unusable (expired, its artifact
    gone or corrupt, its output file changed), so this one takes its place."""

    key: str
    pipeline: str
    task_id: str
    run_id: str
    map_index: int
    output: str | None
    map_length: int | None
    follow: tuple[str, ...] | None
    parts: str  # JSON
    created_at: float = 0.0
    replace: bool = False


@dataclass(frozen=True, slots=True)
class CacheCheck:
    """What the cache said about one task instance: ``outcome`` is ``hit``, ``miss``,
    ``refresh`` (the run asked to recompute) or ``uncacheable`` (no key could be made;
    ``reason`` says why)."""

    run_id: str
    task_id: str
    map_index: int
    pipeline: str
    key: str | None
    outcome: str
    reason: str | None
    parts: str | None  # JSON
    source_run: str | None
    at: float


__all__ = ["CacheCheck", "CacheEntry"]
