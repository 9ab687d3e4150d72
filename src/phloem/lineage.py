"""Lineage: the graph from any artifact, task instance or model version back to the code,
parameters and data that made it (upstream), or forward to everything that used it
(downstream).

The graph is read from the artifact records (who wrote and read which artifact, kept with
every attempt that succeeded) through the store port (``store.lineage``), so the CLI and the
REST API share this one walk. Nodes are artifacts and task instances (with their run's
pipeline, code version, logical date and params, and the files their output names by content
hash); edges follow the data: artifact -> task that read it, task -> artifact it wrote.
Content is addressed by hash, so one artifact may have several writers (the same data made
by several runs) and the graph joins runs and pipelines. It cannot have cycles (a task reads
only what existed before it ran), but it can be large: the walk stops at ``max_depth`` task
hops or ``max_nodes`` nodes and says so.

Targets are parsed by a small sequence of parsers, tried in order; a model registry plugs in
its own resolver for ``name:3`` and ``name@alias`` (see :func:`target_parsers`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from phloem.errors import ArtifactNotFound, LineageError, TaskNotFound
from phloem.files import is_file_marker
from phloem.store.lineage import READ_ROLES
from phloem.store.port import Store
from phloem.store.types import InstanceInfo, InstanceKey, UseRow

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "SERVED_MAX_DEPTH",
    "SERVED_MAX_NODES",
    "ArtifactTarget",
    "Edge",
    "InstanceTarget",
    "LineageGraph",
    "ModelResolver",
    "Node",
    "Target",
    "TargetParser",
    "lineage",
    "resolve_target",
    "target_parsers",
]

DEFAULT_MAX_DEPTH = 25
DEFAULT_MAX_NODES = 500
#: what one request to the server may ask at most (larger asks are clamped to these)
SERVED_MAX_DEPTH = 100
SERVED_MAX_NODES = 5000
#: an artifact hash prefix shorter than this is refused (too many matches to be meant)
MIN_PREFIX = 6
#: how a JSON document from ``--json`` is shaped; bumped on incompatible changes
FORMAT_VERSION = 1

#: ``both`` is the upstream and the downstream walk from the same target, in one graph
Direction = Literal["upstream", "downstream", "both"]


# -- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtifactTarget:
    digest: str


@dataclass(frozen=True, slots=True)
class InstanceTarget:
    """Task instances of a run: one (``map_index``), or every instance of a mapped task."""

    run_id: str
    task_id: str
    map_index: int | None = None


Target = ArtifactTarget | InstanceTarget

#: parses the words of a target (``["3fa9c1"]``, ``["RUN", "TASK"]``, ``["fraud@prod"]``);
#: returns None when the words are not of its kind, raises LineageError when they are but
#: name nothing
TargetParser = Callable[[Store, Sequence[str], "int | None"], "Target | None"]


class ModelResolver(Protocol):
    """What the model registry gives lineage: the target behind a model version, by number
    (``fraud:3``) or alias (``fraud@production``)."""

    def __call__(self, name: str, version: int | None, alias: str | None) -> Target: ...


_HEX = re.compile(r"(?:sha256:)?([0-9a-fA-F]+)")
_MODEL = re.compile(r"([A-Za-z_][\w.\-]*)(?::(\d+)|@([\w.\-]+))")


def parse_artifact(store: Store, words: Sequence[str], map_index: int | None) -> Target | None:
    """``3fa9c1…`` or ``sha256:3fa9c1…``: an artifact by its hash or a unique prefix of it."""
    if len(words) != 1:
        return None
    m = _HEX.fullmatch(words[0])
    if m is None:
        return None
    prefix = m[1].lower()
    if len(prefix) < MIN_PREFIX:
        raise LineageError(
            f"artifact hash prefix {words[0]!r} is too short: give at least {MIN_PREFIX} hex "
            "digits (`phloem output RUN TASK` shows an output's digest)"
        )
    found = store.lineage.find_artifacts(prefix, limit=6)
    if not found:
        raise ArtifactNotFound(
            f"no artifact with hash {prefix}{'…' if len(prefix) < 64 else ''} is recorded in "
            f"{store.display_url}; `phloem output RUN TASK` shows an output's digest",
            artifact=prefix,
        )
    if len(found) > 1:
        shown = ", ".join(f"{a.digest[:16]}… ({a.type_name})" for a in found[:5])
        more = " and more" if len(found) > 5 else ""
        raise LineageError(
            f"artifact hash prefix {prefix!r} is ambiguous: it matches {shown}{more}; give "
            "more digits",
            artifact=prefix,
        )
    return ArtifactTarget(found[0].digest)


def parse_instance(store: Store, words: Sequence[str], map_index: int | None) -> Target | None:
    """``RUN TASK``: a task instance of a run (the run id may be a unique prefix)."""
    if len(words) != 2:
        return None
    run = store.get_run(words[0])  # RunNotFound says what to do
    task = words[1]
    have = store.lineage.task_ids(run.run_id)
    mine = sorted(i for t, i in have if t == task)
    if not mine:
        tasks = sorted({t for t, _ in have})
        raise TaskNotFound(
            f"run {run.run_id} has no task '{task}' (its tasks: {', '.join(tasks) or 'none'})",
            run=run.run_id,
            task=task,
        )
    if map_index is not None and map_index not in mine:
        where = f"0..{mine[-1]}" if mine[-1] >= 0 else "none: it is not mapped"
        raise TaskNotFound(
            f"task '{task}' of run {run.run_id} has no map index {map_index} (indexes: {where})",
            run=run.run_id,
            task=task,
        )
    return InstanceTarget(run.run_id, task, map_index)


def model_versions(resolve: ModelResolver | None) -> TargetParser:
    """The parser of ``name:3`` and ``name@alias``, answered by the model registry's
    ``resolve``; without one, such a target is a clear error rather than a wrong guess."""

    def parse(store: Store, words: Sequence[str], map_index: int | None) -> Target | None:
        if len(words) != 1:
            return None
        m = _MODEL.fullmatch(words[0])
        if m is None:
            return None
        name, version, alias = m[1], m[2], m[3]
        if resolve is None:
            raise LineageError(
                f"{words[0]!r} names a model version, but no model registry is available to "
                "resolve it; give the artifact hash of the model, or the run and task that "
                "produced it (`phloem lineage RUN TASK`)",
                model=name,
            )
        return resolve(name, int(version) if version else None, alias)

    return parse


def target_parsers(resolve_model: ModelResolver | None = None) -> tuple[TargetParser, ...]:
    """The parsers ``phloem lineage`` tries, in order; a model registry passes its resolver."""
    return (model_versions(resolve_model), parse_instance, parse_artifact)


def resolve_target(
    store: Store,
    words: Sequence[str],
    map_index: int | None = None,
    parsers: Sequence[TargetParser] | None = None,
) -> Target:
    """The target named by ``words`` (see the parsers), or a LineageError saying what
    targets look like."""
    for parse in parsers if parsers is not None else target_parsers():
        target = parse(store, words, map_index)
        if target is not None:
            if map_index is not None and not isinstance(target, InstanceTarget):
                raise LineageError("--map-index goes with a RUN TASK target only")
            return target
    raise LineageError(
        f"cannot tell what {' '.join(words)!r} is: give an artifact hash (or a unique prefix "
        f"of at least {MIN_PREFIX} hex digits), a run id and a task id (`RUN TASK`), or a "
        "model version (`name:3`, `name@alias`)"
    )


# -- the graph -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    id: str  # "artifact:<sha256>" or "task:<run>/<task>" ("…[i]" for a mapped instance)
    kind: str  # "artifact" | "task"
    attrs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Edge:
    """Data flow: an artifact into the task that read it (role ``input``, or ``eval`` for a
    model's evaluation data), a task into the artifact it wrote (``output``, or the role it
    recorded: ``model`` for a registered model, a report's role)."""

    source: str
    target: str
    role: str


@dataclass(slots=True)
class LineageGraph:
    roots: list[str]
    direction: Direction
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    #: why the walk stopped early, if it did (None: the graph is complete)
    truncated: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A stable JSON form: nodes sorted by id, edges in data-flow order (sorted)."""
        return {
            "format": FORMAT_VERSION,
            "direction": self.direction,
            "roots": list(self.roots),
            "nodes": [
                {"id": n.id, "kind": n.kind, **n.attrs}
                for n in sorted(self.nodes.values(), key=lambda n: n.id)
            ],
            "edges": [
                {"from": e.source, "to": e.target, "role": e.role}
                for e in sorted(self.edges, key=lambda e: (e.source, e.target, e.role))
            ],
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LineageGraph:
        """The graph :meth:`to_json` wrote (as the server answers it), to render as locally."""
        nodes = {}
        for n in doc["nodes"]:
            attrs = {k: v for k, v in n.items() if k not in ("id", "kind")}
            nodes[n["id"]] = Node(n["id"], n["kind"], attrs)
        edges = [Edge(e["from"], e["to"], e["role"]) for e in doc["edges"]]
        return cls(list(doc["roots"]), doc["direction"], nodes, edges, doc.get("truncated"))

    def children(self, node_id: str) -> list[str]:
        """The next nodes in the walk's direction (what made it, or what used it; for
        ``both``, what used it)."""
        if self.direction == "upstream":
            return sorted({e.source for e in self.edges if e.target == node_id})
        return sorted({e.target for e in self.edges if e.source == node_id})


def artifact_id(digest: str) -> str:
    return f"artifact:{digest}"


def task_id_of(key: InstanceKey) -> str:
    run_id, task_id, map_index = key
    return f"task:{run_id}/{task_id}" + (f"[{map_index}]" if map_index >= 0 else "")


def lineage(
    store: Store,
    target: Target,
    direction: Direction = "upstream",
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> LineageGraph:
    """Walk from ``target`` ``direction``-wards, breadth first, one query per level and
    kind (never one per node), until nothing is left or a limit is reached. ``both`` walks
    each way within the limits and joins the two graphs."""
    if max_depth < 1 or max_nodes < 1:
        raise LineageError("the lineage limits must be at least 1")
    if direction == "both":
        up = lineage(store, target, "upstream", max_depth=max_depth, max_nodes=max_nodes)
        down = lineage(store, target, "downstream", max_depth=max_depth, max_nodes=max_nodes)
        return _joined(up, down)
    q = store.lineage
    upstream = direction == "upstream"
    graph = LineageGraph([], direction)
    seen_artifacts: set[str] = set()
    seen_tasks: set[InstanceKey] = set()
    artifacts: set[str] = set()
    tasks: set[InstanceKey] = set()
    if isinstance(target, ArtifactTarget):
        artifacts = {target.digest}
        graph.roots = [artifact_id(target.digest)]
    else:
        have = q.task_ids(target.run_id)
        tasks = {
            (target.run_id, target.task_id, i)
            for t, i in have
            if t == target.task_id and (target.map_index is None or i == target.map_index)
        }
        if not tasks:
            raise TaskNotFound(
                f"run {target.run_id} has no task instance '{target.task_id}'",
                run=target.run_id,
                task=target.task_id,
            )
        graph.roots = sorted(task_id_of(k) for k in tasks)
    depth = 0
    note = f"stopped at {max_nodes} nodes with more to walk (raise --max-nodes to see more)"
    while artifacts or tasks:
        if depth >= max_depth:
            graph.truncated = (
                f"stopped after {max_depth} task hops with more to walk "
                "(raise --max-depth to see further)"
            )
            # the artifacts at the edge are shown, what made (or used) them is not
            _add_artifacts(graph, q, _budget(graph, artifacts - seen_artifacts, max_nodes, note))
            break
        # artifacts -> the tasks that wrote them (upstream) or read them (downstream)
        new_artifacts = _budget(graph, artifacts - seen_artifacts, max_nodes, note)
        seen_artifacts |= new_artifacts
        _add_artifacts(graph, q, new_artifacts)
        uses = q.writers_of(new_artifacts) if upstream else q.readers_of(new_artifacts)
        tasks |= {u.instance for u in uses}
        _add_edges(graph, uses)
        # tasks -> the artifacts they read (upstream) or wrote (downstream)
        new_tasks = _budget(graph, tasks - seen_tasks, max_nodes, note)
        seen_tasks |= new_tasks
        _add_tasks(graph, q, new_tasks)
        uses = q.read_by(new_tasks) if upstream else q.written_by(new_tasks)
        _add_edges(graph, uses)
        artifacts = {u.digest for u in uses} - seen_artifacts
        tasks = set()
        if graph.truncated:
            break
        depth += 1
    if graph.truncated:  # keep the graph whole: no edge to a node left out
        kept = graph.nodes
        graph.edges = [e for e in graph.edges if e.source in kept and e.target in kept]
    return graph


def _joined(up: LineageGraph, down: LineageGraph) -> LineageGraph:
    """One graph of both walks (they share the roots; nodes and edges are kept once)."""
    graph = LineageGraph(up.roots, "both", {**up.nodes, **down.nodes})
    graph.edges = list(dict.fromkeys([*up.edges, *down.edges]))
    notes = [f"{w}: {g.truncated}" for w, g in (("upstream", up), ("downstream", down))
             if g.truncated]
    graph.truncated = "; ".join(notes) or None
    return graph


def _budget(graph: LineageGraph, todo: set[Any], max_nodes: int, note: str) -> set[Any]:
    """``todo``, or as much of it as fits in ``max_nodes`` (then the graph says so)."""
    room = max_nodes - len(graph.nodes)
    if len(todo) <= room:
        return todo
    graph.truncated = note
    return set(sorted(todo)[: max(0, room)])


def _add_edges(graph: LineageGraph, uses: Sequence[UseRow]) -> None:
    have = {(e.source, e.target, e.role) for e in graph.edges}
    for u in uses:
        a, t = artifact_id(u.digest), task_id_of(u.instance)
        edge = (a, t, u.role) if u.role in READ_ROLES else (t, a, u.role)
        if edge not in have:
            have.add(edge)
            graph.edges.append(Edge(*edge))


def _add_artifacts(graph: LineageGraph, q: Any, digests: set[str]) -> None:
    digests = {d for d in digests if artifact_id(d) not in graph.nodes}
    if not digests:
        return
    records = q.artifacts(digests)
    metadata = q.metadata_of(digests)
    for d in sorted(digests):
        rec = records.get(d)
        attrs: dict[str, Any] = {"digest": d}
        if rec is not None:
            attrs.update(type_name=rec.type_name, serializer=rec.serializer, size=rec.size)
        else:
            attrs["recorded"] = False
        meta = metadata.get(d)
        if meta:
            attrs["metadata"] = meta[0].metadata
        graph.nodes[artifact_id(d)] = Node(artifact_id(d), "artifact", attrs)


def _add_tasks(graph: LineageGraph, q: Any, keys: set[InstanceKey]) -> None:
    keys = {k for k in keys if task_id_of(k) not in graph.nodes}
    if not keys:
        return
    infos: dict[InstanceKey, InstanceInfo] = q.instances(keys)
    for key in sorted(keys):
        info = infos.get(key)
        attrs: dict[str, Any] = {"run_id": key[0], "task_id": key[1]}
        attrs["map_index"] = key[2] if key[2] >= 0 else None
        if info is not None:
            attrs.update(
                pipeline=info.pipeline,
                state=info.state,
                try_number=info.try_number,
                logical_date=info.logical_date,
                code_hash=info.code_hash,
                params=info.params,
                run_state=info.run_state,
            )
            files = _files(info.output)
            if files:
                attrs["files"] = files
        else:
            attrs["recorded"] = False  # its run was deleted
        graph.nodes[task_id_of(key)] = Node(task_id_of(key), "task", attrs)


def _files(output: str | None) -> list[dict[str, Any]]:
    """The files (``phloem.File``) a stored output names, by path and content hash."""
    if not output or "__file__" not in output:
        return []
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if is_file_marker(value):
            found.append({"path": value["__file__"], "sha256": value["sha256"]})
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    try:
        walk(json.loads(output))
    except ValueError:
        return []
    return found
