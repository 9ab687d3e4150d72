"""``/runs``: runs filtered and paged, one run with a summary of its tasks, its task instances
and attempts; retry and cancel.

Retry and cancel are the scheduler commands ``phloem retry`` and ``phloem cancel`` share
(``phloem.scheduler.commands``): a retried run is queued for a scheduler, a cancelled one
stops wherever it is driven.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.records import RunRecord
from phloem.server.auth import Principal, application, require
from phloem.server.paging import Cursor, Limit, Page
from phloem.server.problems import Problem
from phloem.server.specs import SpecCache
from phloem.states import RunState, RunType, TaskState
from phloem.wire import (
    AttemptOut,
    CancelIn,
    CancelOut,
    RetryIn,
    RetryOut,
    RunDetail,
    RunOut,
    TaskInstanceOut,
    TaskSummary,
)

router = APIRouter(prefix="/runs", tags=["runs"])

Viewer = Depends(require(Role.VIEWER))
Operator = Depends(require(Role.OPERATOR))
RunId = Annotated[str, "the run's id, or a prefix that names one run"]


@router.get("", dependencies=[Viewer])
def list_runs(
    ph: Phloem = Depends(application),
    pipeline: Annotated[str | None, Query(max_length=250)] = None,
    state: Annotated[list[RunState] | None, Query(description="Runs in these states.")] = None,
    run_type: Annotated[
        list[RunType] | None,
        Query(description="What started them: scheduled, manual, backfill, asset, triggered."),
    ] = None,
    logical_from: Annotated[
        str | None, Query(max_length=40, description="Logical dates from this one (ISO 8601).")
    ] = None,
    logical_to: Annotated[
        str | None, Query(max_length=40, description="Logical dates up to this one (ISO 8601).")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[RunOut]:
    """Runs, newest first, in pages: pass ``next_cursor`` back as ``cursor`` for the next."""
    from phloem.store.listing import RunFilter

    where = RunFilter(
        pipeline=pipeline,
        states=tuple(state or ()),
        run_types=tuple(run_type or ()),
        logical_from=logical_from,
        logical_to=logical_to,
    )
    page = ph.store.listing.runs(where, limit=limit, cursor=cursor)
    return Page(items=[RunOut.of(r) for r in page.items], next_cursor=page.next_cursor)


async def specs(request: Request) -> SpecCache:
    """The graphs the server keeps of the catalog's pipelines (a dependency)."""
    cache: SpecCache = request.app.state.specs
    return cache


def _task_order(ph: Phloem, cache: SpecCache, run: RunRecord) -> list[str] | None:
    """The run's pipeline's tasks in order: from the graph the server keeps of the catalog's
    pipeline when the run ran that code (imported off the request path), else read from the
    run's source as the CLI does; None if neither can be had now."""
    from phloem.errors import PhloemError
    from phloem.reading import task_order

    try:
        row = ph.store.catalog.pipeline(run.pipeline)
    except PhloemError:
        row = None
    if row is not None and run.source == f"{row.info.file}:{run.pipeline}":
        try:
            return list(cache.get(row).tasks)
        except (PhloemError, Problem, OSError):
            return None
    return task_order(run.source)


@router.get("/{run_id}", dependencies=[Viewer])
def get_run(
    run_id: RunId, ph: Phloem = Depends(application), cache: SpecCache = Depends(specs)
) -> RunDetail:
    """A run, its pipeline's task order, and per task the states of its instances (a mapped
    task's instances counted; list them with ``/runs/{run_id}/instances``)."""
    from phloem.reading import task_summaries

    run = ph.store.get_run(run_id)
    order = _task_order(ph, cache, run)
    counts = ph.store.listing.task_counts(run.run_id)
    return RunDetail(
        run=RunOut.of(run),
        task_order=order,
        tasks=[TaskSummary(**s) for s in task_summaries(counts, order)],
    )


@router.get("/{run_id}/instances", dependencies=[Viewer])
def list_instances(
    run_id: RunId,
    ph: Phloem = Depends(application),
    task_id: Annotated[str | None, Query(max_length=250)] = None,
    state: Annotated[list[TaskState] | None, Query()] = None,
    limit: Limit = 500,
    cursor: Cursor = None,
) -> Page[TaskInstanceOut]:
    """The run's task instances by task id, then map index, in pages."""
    from phloem.store.listing import InstanceFilter

    rid = ph.store.get_run(run_id).run_id
    where = InstanceFilter(task_id=task_id, states=tuple(state or ()))
    page = ph.store.listing.instances(rid, where, limit=limit, cursor=cursor)
    return Page(items=[TaskInstanceOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{run_id}/attempts", dependencies=[Viewer])
def list_attempts(
    run_id: RunId,
    ph: Phloem = Depends(application),
    task_id: Annotated[str | None, Query(max_length=250)] = None,
    map_index: Annotated[int | None, Query(ge=-1)] = None,
) -> list[AttemptOut]:
    """The run's attempts (of one task, or one instance, if asked), by task and try."""
    rid = ph.store.get_run(run_id).run_id
    rows = ph.store.attempts(rid, task_id)
    if map_index is not None:
        rows = [a for a in rows if a.map_index == map_index]
    return [AttemptOut.of(a) for a in rows]


@router.post("/{run_id}/retry")
def retry_run(
    run_id: RunId,
    body: RetryIn,
    ph: Phloem = Depends(application),
    who: Principal = Operator,
) -> RetryOut:
    """Reset the run's failed tasks (or ``task``, and with ``downstream`` every task after
    it) and queue it for a scheduler; tasks that succeeded keep their outputs."""
    from phloem.errors import PhloemError
    from phloem.scheduler.commands import queue_retry

    if body.downstream and body.task is None:
        raise PhloemError("downstream needs task: name the task to re-run from")
    run, reset = queue_retry(
        ph,
        run_id,
        task=body.task,
        downstream=body.downstream,
        reason=f"retry requested by {who.user}",
    )
    return RetryOut(run=RunOut.of(run), reset=reset)


@router.post("/{run_id}/cancel")
def cancel_run(
    run_id: RunId,
    body: CancelIn,
    ph: Phloem = Depends(application),
    who: Principal = Operator,
) -> CancelOut:
    """Stop the run now: its running attempts stop, its unfinished tasks fail, the run fails
    (retry resumes it). A run that has ended is left as it is."""
    from phloem.scheduler.commands import cancel

    reason = f"cancelled by {who.user}" + (f": {body.reason}" if body.reason else "")
    run, stopped = cancel(ph, run_id, reason)
    return CancelOut(run=RunOut.of(run), cancelled=stopped)


__all__ = ["router"]
