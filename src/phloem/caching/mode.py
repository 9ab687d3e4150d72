"""How a run uses the cache, and whether it does at all: all a run with no cached task needs
of ``phloem.caching`` (the keys, code fingerprints and lookups load only for one that caches)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phloem.dsl.spec import PipelineSpec


class CacheMode(str, Enum):
    """How a run uses the cache: ``use`` it, leave it ``off`` (neither read nor written), or
    ``refresh`` it (recompute every cached task and replace its entries)."""

    USE = "use"
    OFF = "off"
    REFRESH = "refresh"

    def __str__(self) -> str:
        return self.value


def uses_cache(spec: PipelineSpec, mode: CacheMode) -> bool:
    """Whether a run of ``spec`` in ``mode`` uses the cache: some task caches, and not ``off``."""
    if mode is CacheMode.OFF:
        return False
    return any(t.options.cache is not None for t in spec.tasks.values())


__all__ = ["CacheMode", "uses_cache"]
