"""A pipeline's graph (tasks, edges, groups, typed params) for the pages that draw it.

The graph comes from the server's own cache (``phloem.server.specs``: imported once per code
hash, off the request path). A page never fails for want of it: a file that does not import
now, or is still importing, gives None and the page falls back to what the store holds (task
ids, no edges).
"""

from __future__ import annotations

from phloem.dsl.spec import PipelineSpec
from phloem.errors import PhloemError
from phloem.records import RunRecord
from phloem.server.problems import Problem
from phloem.server.specs import SpecCache
from phloem.store.port import PipelineCatalog
from phloem.store.types import PipelineRow


class Graphs:
    """The graphs the UI draws, over the server's cache."""

    def __init__(self, cache: SpecCache) -> None:
        self.cache = cache

    def of_pipeline(self, row: PipelineRow) -> PipelineSpec | None:
        try:
            return self.cache.get(row)
        except (PhloemError, Problem, OSError, SyntaxError):
            return None

    def of_run(self, catalog: PipelineCatalog, run: RunRecord) -> PipelineSpec | None:
        """The graph of the run's pipeline as the catalog knows it now (a run of an older
        version is drawn with the current one's edges; its tasks are the run's own)."""
        try:
            row = catalog.pipeline(run.pipeline)
        except PhloemError:
            return None
        return self.of_pipeline(row)


def group_of(spec: PipelineSpec | None, task_id: str) -> str | None:
    """The task's group: from the graph, else from its dotted id (``features.clean``)."""
    if spec is not None and task_id in spec.tasks:
        return spec.tasks[task_id].group
    head, dot, _ = task_id.rpartition(".")
    return head if dot else None


__all__ = ["Graphs", "group_of"]
