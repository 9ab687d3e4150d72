"""Is a cache entry still usable? Its age against ``expire``, the artifacts its output names
(present and matching their digest), and the files it returned (still holding the content
recorded). A ``None`` answer is usable; text says why not, and the entry is replaced by the
recomputed output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from phloem.artifacts import ArtifactRef, ArtifactStore
from phloem.artifacts.ref import MARKER
from phloem.dsl.cache import Cache
from phloem.errors import PhloemError
from phloem.files import FILE_MARKER, FileMissing, file_digest, is_file_marker
from phloem.store.cache_records import CacheEntry


class Verifier:
    """Checks entries against the artifact store and the file system; an artifact found good
    is not read again by the same verifier (one run)."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        self._good: set[str] = set()

    def problem(self, entry: CacheEntry, cache: Cache, now: float) -> str | None:
        if cache.expire is not None and now - entry.created_at > cache.expire:
            return (
                f"the entry of run {entry.run_id} expired: made {_ago(now - entry.created_at)} "
                f"ago, the task's cache expires after {_ago(cache.expire)}"
            )
        if entry.output is None:
            return None
        try:
            stored = json.loads(entry.output)
        except ValueError:
            return "the entry's output is not readable JSON"
        for node in _dicts(stored):
            if MARKER in node:
                why = self._artifact(node)
            elif is_file_marker(node):
                why = _file(node)
            else:
                continue
            if why is not None:
                return why
        return None

    def _artifact(self, node: dict[str, Any]) -> str | None:
        try:
            ref = ArtifactRef.from_json(node)
        except PhloemError as exc:
            return f"the entry names an unreadable artifact reference: {exc}"
        if ref.digest in self._good:
            return None
        if not self.artifacts.exists(ref):
            return f"its output artifact {ref.digest[:12]} ({ref.type_name}) is missing"
        try:
            self.artifacts.verify(ref)  # checks the digest; a bad copy is moved aside
        except PhloemError:
            return f"its output artifact {ref.digest[:12]} ({ref.type_name}) is corrupt"
        self._good.add(ref.digest)
        return None


def _file(node: dict[str, Any]) -> str | None:
    path = str(node[FILE_MARKER])
    try:
        now = file_digest(path)
    except FileMissing:
        return f"its output file {path} no longer exists"
    if now != node["sha256"]:
        return f"its output file {path} changed since it was cached"
    return None


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            yield v
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)


def artifact_digests(stored: str | None) -> list[str]:
    """The digests of the artifacts a stored output names (for lineage)."""
    if not stored:
        return []
    try:
        value = json.loads(stored)
    except ValueError:
        return []
    out = [d["digest"] for d in _dicts(value) if MARKER in d and isinstance(d.get("digest"), str)]
    return list(dict.fromkeys(out))


def _ago(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.3g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds:.3g} s"


__all__ = ["Verifier", "artifact_digests"]
