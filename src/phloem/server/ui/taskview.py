"""What a task instance's page shows: its attempts, the log of one of them (read by offset,
so a running attempt's log can be followed), its output and the artifacts it read and wrote.

Log files are found from the instance the store holds, never from a path the browser sent,
and must lie inside the logs folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phloem.app import Phloem
from phloem.errors import PhloemError, TaskNotFound
from phloem.reading import log_file
from phloem.records import TI, RunRecord
from phloem.states import SUCCESS_STATES
from phloem.store.models import ModelVersion
from phloem.store.types import ArtifactUse, AttemptRow

#: the most of a log a page shows at once (its end; the rest is a click away)
LOG_WINDOW = 256 * 1024
#: the most instances of a mapped task listed on one page
INSTANCES_PAGE = 200


@dataclass(frozen=True, slots=True)
class LogChunk:
    text: str
    start: int  # byte offset of ``text`` in the file
    end: int  # next offset to read from
    size: int  # the file's size now
    exists: bool


@dataclass(frozen=True, slots=True)
class Lineage:
    """An artifact a task instance read or wrote, and the instance that wrote it."""

    use: ArtifactUse
    producer: ArtifactUse | None
    type_name: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class TaskPage:
    run: RunRecord
    task_id: str
    instances: list[TI]  # of a mapped task, the page's slice of them
    instance_total: int
    ti: TI | None  # the one shown (None: a mapped task's list)
    attempts: list[AttemptRow]
    try_number: int | None
    log: LogChunk | None
    output: dict[str, Any] | None
    output_error: str | None
    lineage: list[Lineage]
    #: why the instance was (or was not) served from the cache; None: it does not cache
    cache: dict[str, Any] | None = None
    #: the model versions the instance registered (their metrics, aliases and links)
    models: list[ModelVersion] = field(default_factory=list)


def find_instances(tis: list[TI], run_id: str, task_id: str) -> list[TI]:
    mine = sorted((ti for ti in tis if ti.task_id == task_id), key=lambda ti: ti.map_index)
    if not mine:
        have = sorted({ti.task_id for ti in tis})
        raise TaskNotFound(
            f"run {run_id} has no task '{task_id}' (its tasks: {', '.join(have) or 'none'})",
            run=run_id,
            task=task_id,
        )
    return mine


def read_log(path: Path, offset: int | None, window: int = LOG_WINDOW) -> LogChunk:
    """From ``offset`` on (None: the last ``window`` bytes), at most ``window`` bytes, cut at a
    line end where one is near so a tail never shows half a character."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return LogChunk("", 0, 0, 0, False)
    start = max(0, size - window) if offset is None else max(0, min(offset, size))
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(min(window, size - start))
    if offset is None and start > 0:
        nl = data.find(b"\n")
        if 0 <= nl < 4096:
            start += nl + 1
            data = data[nl + 1 :]
    return LogChunk(data.decode("utf-8", "replace"), start, start + len(data), size, True)


def output_of(app: Phloem, run_id: str, ti: TI) -> dict[str, Any] | None:
    """The instance's output as JSON, or a description of its artifact (never the bytes);
    None while it has none."""
    from phloem.reading import output_of as read_output

    if ti.state not in SUCCESS_STATES:
        return None
    out = read_output(app, run_id, ti)
    return None if out["kind"] == "none" else out


def lineage_of(app: Phloem, run_id: str, ti: TI) -> list[Lineage]:
    uses = app.store.artifact_uses(run_id)
    producers = {u.digest: u for u in uses if u.role == "output"}
    out = []
    for u in uses:
        if u.task_id != ti.task_id or u.map_index != ti.map_index:
            continue
        record = app.store.artifact(u.digest)
        out.append(
            Lineage(
                u,
                producers.get(u.digest) if u.role == "input" else None,
                record.type_name if record else None,
                record.size if record else None,
            )
        )
    return out


def cache_of(app: Phloem, run_id: str, ti: TI) -> dict[str, Any] | None:
    """The cache's word on the instance, explained (``phloem cache explain`` says the same)."""
    from phloem.caching.explain import explain

    check = app.store.cache.check(run_id, ti.task_id, ti.map_index)
    if check is None:
        return None
    return explain(app.store, check).to_json()


def task_page(
    app: Phloem,
    run_id: str,
    task_id: str,
    map_index: int | None,
    try_number: int | None,
    page: int = 0,
) -> TaskPage:
    store = app.store
    run = store.get_run(run_id)
    mine = find_instances(store.load_instances(run_id), run_id, task_id)
    mapped = len(mine) > 1 or mine[0].map_index >= 0
    ti: TI | None = None
    if not mapped:
        ti = mine[0]
    elif map_index is not None:
        ti = next((x for x in mine if x.map_index == map_index), None)
        if ti is None:
            raise TaskNotFound(
                f"task '{task_id}' of run {run_id} has no instance {map_index} "
                f"(it has {len(mine)}: 0..{mine[-1].map_index})",
                run=run_id,
                task=task_id,
            )
    attempts: list[AttemptRow] = []
    log = None
    output = None
    output_error = None
    lineage: list[Lineage] = []
    cache = None
    models: list[ModelVersion] = []
    chosen = None
    if ti is not None:
        attempts = [a for a in store.attempts(run_id, task_id) if a.map_index == ti.map_index]
        if ti.try_number > 0:
            path = log_file(app.logs_dir, run_id, ti, try_number)  # checks the try
            chosen = ti.try_number if try_number is None else try_number
            log = read_log(path, None)
        try:
            output = output_of(app, run_id, ti)
        except (PhloemError, OSError, ValueError) as exc:
            output_error = str(exc)
        lineage = lineage_of(app, run_id, ti)
        cache = cache_of(app, run_id, ti)
        models = store.models.registered_by(run_id, task_id, ti.map_index)
    window = mine[page * INSTANCES_PAGE : (page + 1) * INSTANCES_PAGE] if mapped else mine
    return TaskPage(
        run,
        task_id,
        window,
        len(mine),
        ti,
        attempts,
        chosen,
        log,
        output,
        output_error,
        lineage,
        cache,
        models,
    )


__all__ = [
    "INSTANCES_PAGE",
    "LOG_WINDOW",
    "Lineage",
    "LogChunk",
    "TaskPage",
    "lineage_of",
    "output_of",
    "read_log",
    "task_page",
]
