"""Response documents shared by several resources (a run's summary, a pipeline's graph)."""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from phloem.dsl.spec import PipelineSpec, TaskSpec
from phloem.records import RunRecord
from phloem.server.models import Out


class RunSummary(Out):
    run_id: str
    pipeline: str
    state: str
    logical_date: str
    run_type: str
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    params: dict[str, Any]
    idempotency_key: str | None = None

    @classmethod
    def of(cls, run: RunRecord) -> RunSummary:
        return cls(
            run_id=run.run_id,
            pipeline=run.pipeline,
            state=run.state.value,
            logical_date=run.logical_date,
            run_type=run.run_type.value,
            created_at=run.created_at,
            started_at=run.started_at,
            ended_at=run.ended_at,
            params=run.params,
            idempotency_key=run.idempotency_key,
        )


def plain(value: Any) -> Any:
    """An option's value as JSON: classes and functions by name, enums by value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, type) or callable(value):
        return getattr(value, "__qualname__", None) or getattr(value, "__name__", repr(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


class Param(Out):
    name: str
    type: str
    default: Any


class TaskNode(Out):
    task_id: str
    kind: str
    group: str | None
    mapped: bool
    upstream: list[str]
    downstream: list[str]
    defined_at: str
    options: dict[str, Any]


class Edge(Out):
    source: str
    target: str
    #: the target reads the source's output (else it only runs after it)
    data: bool


class Graph(Out):
    tasks: list[TaskNode]
    edges: list[Edge]
    groups: list[str]
    params: list[Param]


def _task(t: TaskSpec) -> TaskNode:
    opts = {
        f.name: plain(getattr(t.options, f.name))
        for f in dataclasses.fields(t.options)
        if f.name not in ("name", "kind")
    }
    return TaskNode(
        task_id=t.task_id,
        kind=t.options.kind,
        group=t.group,
        mapped=t.is_mapped,
        upstream=list(t.upstream),
        downstream=list(t.downstream),
        defined_at=t.defined_at,
        options=opts,
    )


def graph(spec: PipelineSpec) -> Graph:
    edges = [
        Edge(source=up, target=t.task_id, data=up in t.data_upstream)
        for t in spec.tasks.values()
        for up in t.upstream
    ]
    groups: set[str] = set()
    for t in spec.tasks.values():
        g = t.group
        while g:
            groups.add(g)
            g = g.rpartition(".")[0]
    return Graph(
        tasks=[_task(t) for t in spec.tasks.values()],
        edges=edges,
        groups=sorted(groups),
        params=[
            Param(name=p.name, type=p.describe(), default=plain(p.default))
            for p in spec.params.values()
        ],
    )


__all__ = ["Graph", "RunSummary", "graph", "plain"]
