"""``phloem.outputs``: read what another run produced, for the monitoring patterns that compare
today with yesterday and for pipelines that feed on another's results.

Inside a task the run's own store and artifacts are used, and every artifact read is recorded
as an input of the task, so lineage follows values across runs and pipelines. Outside a task
(a notebook, a script) the configured store is used.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from phloem.artifacts.codec import from_stored_json
from phloem.artifacts.structured import pick
from phloem.context import current
from phloem.errors import OutputNotFound, PhloemError
from phloem.records import TI, RunRecord, iso_utc
from phloem.states import SUCCESS_STATES

if TYPE_CHECKING:
    from phloem.artifacts import ArtifactStore
    from phloem.store.port import Store

__all__ = ["latest"]

#: runs looked at, newest first, for one whose instances all succeeded
SEARCH_RUNS = 50
_EARLIEST = "0001-01-01T00:00:00.000000+00:00"


def latest(
    pipeline: str,
    task: str,
    logical_date: datetime | str | None = None,
    map_index: int | None = None,
) -> Any:
    """The output of ``task`` from the latest run of ``pipeline`` in which it succeeded.

    With ``logical_date``, from the run for that date. Inside a task, without a date, runs for
    a later logical date than the calling run's, and the calling run itself, are not
    considered, so a backfill of Monday compares with Sunday, not with today. A mapped task
    gives the list of its instances' outputs, or one of them with ``map_index``. Raises
    :class:`~phloem.errors.OutputNotFound` saying what exists when there is no such output.
    """
    ctx = current()
    if ctx is not None:
        if not ctx.store_url:
            raise PhloemError(
                "phloem.outputs needs a shared store (a SQLite file or PostgreSQL); this run's "
                "in-memory store is private to the process that made it: run with a store URL"
            )
        from phloem.variables import run_store

        store: Store = run_store("phloem.outputs")
        artifacts: ArtifactStore = ctx.artifacts
        reads = ctx.reads
        skip_run = ctx.run_id if logical_date is None else None
        upto = iso_utc(ctx.logical_date)
    else:
        from phloem.app import Phloem

        app = Phloem.open()
        store, artifacts, reads, skip_run, upto = app.store, app.artifacts, None, None, None
    _, stored = find_latest(store, pipeline, task, logical_date, map_index, skip_run, upto)
    if isinstance(stored, list):
        return [_value(s, artifacts, reads) for s in stored]
    return _value(stored, artifacts, reads)


def _value(stored: str | None, artifacts: ArtifactStore, reads: list[str] | None) -> Any:
    return None if stored is None else pick(from_stored_json(stored), (), artifacts, reads)


def find_latest(
    store: Store,
    pipeline: str,
    task: str,
    logical_date: datetime | str | None = None,
    map_index: int | None = None,
    skip_run: str | None = None,
    upto: str | None = None,
) -> tuple[RunRecord, str | list[str | None] | None]:
    """The run and the stored output(s) :func:`latest` reads (see there)."""
    if logical_date is not None:
        start = end = iso_utc(logical_date)
    else:
        start, end = _EARLIEST, upto or "9999-12-31T23:59:59.999999+00:00"
    runs = store.runs_by_logical_date(
        pipeline, start, end, task_succeeded=task, limit=SEARCH_RUNS + 1
    )
    for run in runs:
        if run.run_id == skip_run:
            continue
        found = _outputs(store.load_instances(run.run_id), task, map_index)
        if found is not _NONE:
            return run, found
    raise OutputNotFound(
        _explain(store, pipeline, task, logical_date, map_index, skip_run, upto),
        pipeline=pipeline,
        task=task,
    )


_NONE: Any = object()


def _outputs(tis: list[TI], task: str, map_index: int | None) -> Any:
    mine = sorted((ti for ti in tis if ti.task_id == task), key=lambda ti: ti.map_index)
    mapped = [ti for ti in mine if ti.map_index >= 0]
    if map_index is not None:
        hit = [ti for ti in mapped if ti.map_index == map_index]
        return hit[0].output if hit and hit[0].state in SUCCESS_STATES else _NONE
    if mapped:
        if all(ti.state in SUCCESS_STATES for ti in mapped):
            return [ti.output for ti in mapped]
        return _NONE
    return mine[0].output if mine and mine[0].state in SUCCESS_STATES else _NONE


def _explain(
    store: Store,
    pipeline: str,
    task: str,
    logical_date: datetime | str | None,
    map_index: int | None,
    skip_run: str | None,
    upto: str | None,
) -> str:
    asked = f"task '{task}'" + (f" [{map_index}]" if map_index is not None else "")
    when = (
        f" for logical date {iso_utc(logical_date)}"
        if logical_date is not None
        else (f" on or before {upto}" if upto else "")
    )
    runs = [r for r in store.list_runs(pipeline, limit=20) if r.run_id != skip_run]
    if not runs:
        others = sorted({r.pipeline for r in store.list_runs(None, limit=200)})
        known = f"pipelines with runs: {', '.join(others)}" if others else "the store has no runs"
        return (
            f"no output of {asked}: pipeline '{pipeline}' has no runs"
            f"{' besides this one' if skip_run else ''} in {store.display_url} ({known})"
        )
    newest = runs[0]
    tasks = sorted({ti.task_id for ti in store.load_instances(newest.run_id)})
    if task not in tasks:
        return (
            f"pipeline '{pipeline}' has no task '{task}': its latest run {newest.run_id} has "
            f"tasks {', '.join(tasks)}"
        )
    recent = []
    for r in runs[:5]:
        states = sorted(
            {ti.state.value for ti in store.load_instances(r.run_id) if ti.task_id == task}
        )
        recent.append(f"{r.run_id} ({r.logical_date}): {'/'.join(states) or 'no such task'}")
    hint = "" if map_index is None else "; check the map index"
    return (
        f"no run of pipeline '{pipeline}'{when} has a successful {asked}; its latest runs: "
        + "; ".join(recent)
        + hint
    )
