"""Reading a run's parts for people: one task instance by name, an attempt's log file, an
output, the pipeline's task order. The CLI and the REST API both call these, so a command
says the same thing, with the same messages, whether it reads the store or a server.

Nothing here takes a path from its caller: a log file is found from a task instance the store
holds, under the logs folder of the application, and is checked to stay inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from phloem.app import Phloem
from phloem.errors import PhloemError, TaskNotFound
from phloem.records import TI
from phloem.states import SUCCESS_STATES
from phloem.store.port import Store

if TYPE_CHECKING:
    from phloem.store.listing import TaskCount


def label(task_id: str, map_index: int) -> str:
    return f"{task_id}[{map_index}]" if map_index >= 0 else task_id


def instance(store: Store, run_id: str, task: str, map_index: int | None) -> TI:
    """One task instance of a run (``map_index`` picks one of a mapped task's), with messages
    that say what exists instead."""
    from phloem.store.listing import MAX_PAGE, InstanceFilter

    tis: list[TI] = []
    cursor: str | None = None
    while True:
        page = store.listing.instances(
            run_id, InstanceFilter(task_id=task), limit=MAX_PAGE, cursor=cursor
        )
        tis += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    if not tis:
        have = sorted({ti.task_id for ti in store.load_instances(run_id)})
        raise TaskNotFound(
            f"run {run_id} has no task '{task}' (its tasks: {', '.join(have) or 'none'})",
            run=run_id,
            task=task,
        )
    indexes = sorted(ti.map_index for ti in tis)
    mapped = indexes[-1] >= 0
    if map_index is None:
        if mapped:
            raise TaskNotFound(
                f"task '{task}' of run {run_id} is mapped over {len(indexes)} instances; "
                f"pick one with --map-index (0..{indexes[-1]})",
                run=run_id,
                task=task,
            )
        return tis[0]
    for ti in tis:
        if ti.map_index == map_index:
            return ti
    if not mapped:
        raise TaskNotFound(
            f"task '{task}' of run {run_id} is not mapped; leave out --map-index",
            run=run_id,
            task=task,
        )
    raise TaskNotFound(
        f"task '{task}' of run {run_id} has no instance {map_index} "
        f"(it has {len(indexes)}: 0..{indexes[-1]})",
        run=run_id,
        task=task,
    )


def log_file(logs_dir: Path, run_id: str, ti: TI, try_number: int | None) -> Path:
    """The log file of an attempt of ``ti`` (default: its latest); it may not exist (an
    attempt that wrote nothing has none)."""
    from phloem.runner.logs import log_path

    name = label(ti.task_id, ti.map_index)
    if ti.try_number == 0:
        raise PhloemError(
            f"task {name} of run {run_id} has not started yet (it is {ti.state.value})",
            run=run_id,
            task=ti.task_id,
        )
    n = ti.try_number if try_number is None else try_number
    if n < 1 or n > ti.try_number:
        raise PhloemError(
            f"task {name} of run {run_id} has no try {n} (it has run {ti.try_number} "
            f"time{'s' if ti.try_number != 1 else ''})",
            run=run_id,
            task=ti.task_id,
        )
    base = logs_dir.resolve()
    path = Path(log_path(base, run_id, ti.task_id, ti.map_index, n)).resolve()
    if not path.is_relative_to(base):  # a run id of the store's making never leaves it
        raise PhloemError(f"the log of task {name} of run {run_id} is outside the logs folder")
    return path


def output_of(app: Phloem, run_id: str, ti: TI, rows: int | None = None) -> dict[str, Any]:
    """``{"kind": "none"}``, ``{"kind": "value", "value": ...}``, ``{"kind": "artifact",
    "artifact": description}`` or, for a dict, tuple or dataclass stored value by value,
    ``{"kind": "structured", "structure": description}`` (see artifacts/preview.py). The
    metadata kept with the output (and with each of its values) is in the description; an
    inline value's is beside it as ``"metadata"``."""
    from phloem.artifacts import ArtifactRef, Inline
    from phloem.artifacts.codec import from_stored_json
    from phloem.artifacts.preview import describe_output

    name = label(ti.task_id, ti.map_index)
    if ti.state not in SUCCESS_STATES:
        raise PhloemError(
            f"task {name} of run {run_id} has no output: it is {ti.state.value}",
            run=run_id,
            task=ti.task_id,
        )
    meta = {
        m.path: m.metadata
        for m in app.store.lineage.output_metadata(run_id, ti.task_id, ti.map_index)
    }
    if ti.output is None:
        return {"kind": "none"}
    node = from_stored_json(ti.output)
    if isinstance(node, Inline):
        out: dict[str, Any] = {"kind": "value", "value": node.value}
        if meta.get("[]"):
            out["metadata"] = meta["[]"]
        return out
    about = describe_output(app.artifacts, node, meta, *(() if rows is None else (rows,)))
    if isinstance(node, ArtifactRef):
        return {"kind": "artifact", "artifact": about}
    return {"kind": "structured", "structure": about}


def artifact_of(run_id: str, ti: TI) -> Any:
    """The artifact holding ``ti``'s output (an ArtifactRef); an error if it has none."""
    from phloem.artifacts import ArtifactRef
    from phloem.artifacts.codec import from_stored_json

    name = label(ti.task_id, ti.map_index)
    value = None
    if ti.state in SUCCESS_STATES and ti.output is not None:
        value = from_stored_json(ti.output)
    if not isinstance(value, ArtifactRef):
        what = "a JSON value (read it from .../output)" if value is not None else "no artifact"
        raise PhloemError(
            f"task {name} of run {run_id} has {what}; only an output kept as an artifact "
            "can be downloaded",
            run=run_id,
            task=ti.task_id,
        )
    return value


def task_order(source: str | None) -> list[str] | None:
    """The pipeline's task ids in topological order, when its code can still be loaded."""
    if not source:
        return None
    from phloem.loading import load_pipeline

    try:
        return list(load_pipeline(source).spec.tasks)
    except (PhloemError, OSError):
        return None


def task_summaries(counts: list[TaskCount], order: list[str] | None) -> list[dict[str, Any]]:
    """Per task, in pipeline order: whether it is mapped, its instances, their states."""
    rank = {t: i for i, t in enumerate(order or ())}
    groups: dict[str, list[TaskCount]] = {}
    for c in counts:
        groups.setdefault(c.task_id, []).append(c)
    out = []
    for task_id in sorted(groups, key=lambda t: (rank.get(t, len(rank)), t)):
        items = groups[task_id]
        out.append(
            {
                "task_id": task_id,
                "mapped": any(c.mapped for c in items),
                "instances": sum(c.count for c in items),
                "states": {c.state.value: c.count for c in sorted(items, key=lambda c: c.state)},
            }
        )
    return out


__all__ = [
    "artifact_of",
    "instance",
    "label",
    "log_file",
    "output_of",
    "task_order",
    "task_summaries",
]
