"""``phloem.trigger``: a task starts a run of another pipeline (Airflow's TriggerDagRunOperator).

The run is queued on the triggering run's store, like ``phloem trigger``, with its
``run_type`` ``triggered`` and ``triggered_by`` naming the run and task that made it; a
scheduler on that store drives it. With ``wait=True`` the task then waits for it to end,
polling the store like a sensor, and fails if it failed.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from phloem.context import TaskContext, current
from phloem.errors import PhloemError, PipelineNotFound, RunConflict
from phloem.records import RunRecord
from phloem.states import RunState, RunType, TaskState

if TYPE_CHECKING:
    from phloem.dsl.spec import PipelineSpec
    from phloem.store.port import Store

#: how often ``wait=True`` looks at the triggered run, unless told otherwise
POKE_INTERVAL = 5.0


def trigger(
    pipeline: str,
    params: dict[str, Any] | None = None,
    logical_date: datetime | str | None = None,
    wait: bool = False,
    *,
    poke_interval: float | timedelta = POKE_INTERVAL,
    timeout: float | timedelta | None = None,
) -> str:
    """Queue a run of ``pipeline`` (a name a scheduler of this store knows, or
    ``FILE:PIPELINE``) from inside a task; returns its run id.

    ``logical_date`` defaults to now. With ``wait=True``, look at the run every
    ``poke_interval`` until it ends: return when it succeeded, raise when it failed or when
    ``timeout`` (default: none of its own; the task's ``timeout`` still applies) passed first.
    A retry of the task gets the run an earlier try made (for the same logical date, or
    when none was given) instead of starting a second one.
    """
    ctx = current()
    if ctx is None:
        raise PhloemError(
            f"phloem.trigger('{pipeline}') starts a run from inside a task; outside one, use "
            f"`phloem trigger {pipeline}` or phloem.run(...)"
        )
    if not ctx.store_url:
        raise PhloemError(
            f"phloem.trigger('{pipeline}') needs a shared store (a SQLite file or PostgreSQL) "
            "that a scheduler can read; this run's in-memory store is private to the process "
            "that made it: run with a store URL or a home"
        )
    # checked before anything is queued: a bad value must not leave a run behind
    every, limit = _seconds(poke_interval, "poke_interval"), _seconds(timeout, "timeout")
    from phloem.store import open_store

    store = open_store(ctx.store_url, migrate=False)
    try:
        run = _create(store, ctx, pipeline, params, logical_date)
        ctx.log.info(
            "triggered run %s of %s (logical date %s)", run.run_id, run.pipeline, run.logical_date
        )
        if wait:
            _wait(store, ctx, run, every, limit)
        return run.run_id
    finally:
        store.close()


def _create(
    store: Store,
    ctx: TaskContext,
    target: str,
    params: dict[str, Any] | None,
    logical_date: datetime | str | None,
) -> RunRecord:
    from phloem.runs import create_run

    spec, source = _resolve(store, target)
    mapped = ctx.map_index is not None and ctx.map_index >= 0
    by = f"{ctx.run_id}/{ctx.task_id}" + (f"[{ctx.map_index}]" if mapped else "")
    if logical_date is None and ctx.try_number > 1:
        # "now" differs on every try: find the run an earlier try made instead of a second one
        made = [r for r in store.list_runs(spec.name, limit=500) if r.triggered_by == by]
        if made:
            return made[0]
    try:
        run = create_run(
            store,
            spec,
            params,
            logical_date,
            source=source,
            run_type=RunType.TRIGGERED,
            triggered_by=by,
        )
    except RunConflict:
        from phloem.records import iso_utc

        existing = store.find_run(spec.name, iso_utc(logical_date))
        if existing is None or existing.triggered_by != by:
            raise
        return existing  # a retry of this task: the run it made before
    store.announce_work()  # wakes schedulers elsewhere at once where the store can notify
    return run


def _resolve(store: Store, target: str) -> tuple[PipelineSpec, str]:
    """The pipeline's graph and where its code lives, from ``FILE:PIPELINE`` or the store's
    catalog of pipelines that schedulers registered."""
    from pathlib import Path

    from phloem.loading import load_pipeline, split_target

    if ":" in target or target.endswith(".py"):
        path, _ = split_target(target)
        found = load_pipeline(target)
        return found.spec, f"{Path(path).resolve()}:{found.name}"
    try:
        row = store.catalog.pipeline(target)
    except PipelineNotFound as exc:
        raise PipelineNotFound(
            f"phloem.trigger: {exc}; or name its file as phloem.trigger('path/to/file.py:"
            f"{target}')",
            pipeline=target,
        ) from None
    if not row.active:
        raise PipelineNotFound(
            f"phloem.trigger: pipeline '{target}' is no longer defined in {row.info.file}",
            pipeline=target,
        )
    if row.paused:
        raise PhloemError(
            f"phloem.trigger: pipeline '{target}' is paused; `phloem pipelines unpause "
            f"{target}` first",
            pipeline=target,
        )
    source = f"{row.info.file}:{target}"
    return load_pipeline(source).spec, source


def _wait(
    store: Store, ctx: TaskContext, run: RunRecord, every: float | None, limit: float | None
) -> None:
    every = every if every is not None and every > 0 else POKE_INTERVAL
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        state = store.get_run(run.run_id).state
        if state is RunState.SUCCESS:
            return
        if state is RunState.FAILED:
            failed = sorted(
                ti.task_id
                for ti in store.load_instances(run.run_id)
                if ti.state is TaskState.FAILED
            )
            raise PhloemError(
                f"triggered run {run.run_id} of '{run.pipeline}' failed"
                + (f" (failed: {', '.join(failed)})" if failed else "")
                + f"; see `phloem runs show {run.run_id}`",
                run=run.run_id,
                pipeline=run.pipeline,
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise PhloemError(
                f"triggered run {run.run_id} of '{run.pipeline}' did not end within {limit:g}s "
                f"(it is {state.value}; it goes on; is a scheduler running on this store?)",
                run=run.run_id,
                pipeline=run.pipeline,
            )
        pause = every if deadline is None else max(0.0, min(every, deadline - time.monotonic()))
        time.sleep(pause)


def _seconds(value: float | timedelta | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise PhloemError(f"phloem.trigger: {name} takes seconds or a timedelta, got {value!r}")
    if seconds < 0:
        raise PhloemError(f"phloem.trigger: {name} must not be negative, got {value!r}")
    return seconds


__all__ = ["POKE_INTERVAL", "trigger"]
