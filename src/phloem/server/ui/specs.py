"""A pipeline's graph (tasks, edges, groups, typed params) for the pages that draw it.

The catalog holds what schedulers found in each file but not the graph, so the graph comes
from the pipeline's code, imported once per process (``phloem.loading`` caches the module)
and kept here by (source, code hash). A file that no longer imports gives None: the pages then
fall back to what the store holds (task ids, no edges) instead of failing.
"""

from __future__ import annotations

import threading

from phloem.dsl.spec import PipelineSpec
from phloem.errors import PhloemError


class Specs:
    """The graphs seen so far, by (source, code hash); one per server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str | None], PipelineSpec | None] = {}

    def get(self, source: str | None, code_hash: str | None = None) -> PipelineSpec | None:
        """The graph of ``FILE:PIPELINE``, or None when it cannot be read."""
        if not source:
            return None
        key = (source, code_hash)
        with self._lock:
            if key in self._known:
                return self._known[key]
        spec = _load(source)
        with self._lock:
            self._known[key] = spec
        return spec


def _load(source: str) -> PipelineSpec | None:
    from phloem.loading import load_pipeline

    try:
        return load_pipeline(source).spec
    except (PhloemError, OSError, SyntaxError):
        return None


def source_of(file: str, name: str) -> str:
    return f"{file}:{name}"


def group_of(spec: PipelineSpec | None, task_id: str) -> str | None:
    """The task's group: from the graph, else from its dotted id (``features.clean``)."""
    if spec is not None and task_id in spec.tasks:
        return spec.tasks[task_id].group
    head, dot, _ = task_id.rpartition(".")
    return head if dot else None


__all__ = ["Specs", "group_of", "source_of"]
