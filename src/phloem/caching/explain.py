"""Why a task instance was (or was not) served from the cache: the parts its key was made of
and, on a miss, what differs from the closest earlier entry of the same task ("code of
helpers.clean changed; input df changed; scikit-learn 1.5.0 -> 1.5.2")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phloem.caching.keys import KeyParts
from phloem.store.cache_records import CacheCheck, CacheEntry
from phloem.store.port import Store

#: how many earlier entries of the task are compared to find the closest
_CANDIDATES = 200


@dataclass(frozen=True, slots=True)
class Explanation:
    check: CacheCheck
    parts: KeyParts | None
    #: the earlier entry closest to this key (a miss), and what differs from it
    closest: CacheEntry | None = None
    differences: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        c = self.check
        return {
            "run_id": c.run_id,
            "task_id": c.task_id,
            "map_index": c.map_index,
            "outcome": c.outcome,
            "reason": c.reason,
            "key": c.key,
            "source_run": c.source_run,
            "parts": self.parts.to_json() if self.parts is not None else None,
            "closest": None
            if self.closest is None
            else {"run_id": self.closest.run_id, "key": self.closest.key},
            "differences": list(self.differences),
        }


def explain(store: Store, check: CacheCheck) -> Explanation:
    """The explanation of ``check``; a miss is compared with the task's earlier entries."""
    parts = KeyParts.from_json(json.loads(check.parts)) if check.parts else None
    if check.outcome == "hit" or parts is None:
        return Explanation(check, parts)
    earlier = [
        e
        for e in store.cache.entries(
            check.pipeline, check.task_id, before=check.at, limit=_CANDIDATES
        )
        if e.key != check.key
    ]
    best: tuple[int, CacheEntry, list[str]] | None = None
    for e in earlier:
        diffs = differences(KeyParts.from_json(json.loads(e.parts)), parts)
        if best is None or len(diffs) < best[0]:
            best = (len(diffs), e, diffs)
    if best is None:
        return Explanation(check, parts)
    return Explanation(check, parts, best[1], tuple(best[2]))


def differences(old: KeyParts, new: KeyParts) -> list[str]:
    """What changed from ``old`` to ``new``, one phrase per part."""
    out: list[str] = []
    out += _changed(old.code, new.code, "code of {}")
    for dist in sorted(set(old.packages) | set(new.packages)):
        a, b = old.packages.get(dist), new.packages.get(dist)
        if a != b:
            out.append(f"{dist} {a or 'not used'} -> {b or 'not used'}")
    out += _changed(old.inputs, new.inputs, "input {}")
    if old.version != new.version:
        out.append(f"version {old.version!r} -> {new.version!r}")
    if old.custom != new.custom:
        out.append(f"the key function's value {old.custom!r} -> {new.custom!r}")
    return out


def _changed(old: Mapping[str, str], new: Mapping[str, str], what: str) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append(f"{what.format(name)} added")
        elif name not in new:
            out.append(f"{what.format(name)} removed")
        elif old[name] != new[name]:
            out.append(f"{what.format(name)} changed")
    return out


__all__ = ["Explanation", "differences", "explain"]
