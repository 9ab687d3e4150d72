"""What people ask of the scheduler: trigger a run, pause a pipeline, backfill a range, retry
or cancel a run.

The CLI and the REST API call these; they write to the store and the scheduler picks the runs
up, so they work the same with one scheduler or several, from any machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from phloem.app import Phloem
from phloem.dsl.spec import PipelineSpec
from phloem.errors import PhloemError, RunBusy, RunConflict
from phloem.loading import load_pipeline
from phloem.records import RunRecord, iso_utc
from phloem.runs import create_run, new_run_id, reopen
from phloem.scheduler.lookup import find_pipeline
from phloem.scheduler.triggers import parse_time, schedule_of
from phloem.scheduler.wakeup import notify_all
from phloem.schedules import Continuous
from phloem.states import RunState, RunType
from phloem.store.port import PipelineCatalog
from phloem.store.types import PipelineRow


def _known(catalog: PipelineCatalog, name: str, *, for_what: str) -> PipelineRow:
    row = catalog.pipeline(name)
    if not row.active:
        raise PhloemError(
            f"pipeline '{name}' is no longer defined in {row.info.file}; restore it to {for_what}",
            pipeline=name,
        )
    return row


def trigger(
    app: Phloem,
    pipeline: str,
    *,
    params: dict[str, Any] | None = None,
    logical_date: datetime | str | None = None,
    idempotency_key: str | None = None,
    spec: PipelineSpec | None = None,
) -> tuple[RunRecord, bool]:
    """Queue a run now; returns (run, created). A repeated idempotency key returns the run it
    made the first time instead of a new one. ``spec`` is the pipeline's graph when the caller
    has it loaded already (the server keeps them), else its file is imported."""
    pipeline = find_pipeline(app, pipeline)
    catalog = app.store.catalog
    row = _known(catalog, pipeline, for_what="trigger it")
    if row.paused:
        raise PhloemError(
            f"pipeline '{pipeline}' is paused; `phloem pipelines unpause {pipeline}` first",
            pipeline=pipeline,
        )
    if idempotency_key is not None:
        existing = app.store.find_run(pipeline, idempotency_key=idempotency_key)
        if existing is not None:
            return existing, False
    if spec is None:
        spec = load_pipeline(f"{row.info.file}:{pipeline}").spec
    try:
        run = create_run(
            app.store,
            spec,
            params,
            logical_date,
            source=f"{row.info.file}:{pipeline}",
            run_type=RunType.MANUAL,
            idempotency_key=idempotency_key,
        )
    except RunConflict:
        if idempotency_key is None:
            raise
        existing = app.store.find_run(pipeline, idempotency_key=idempotency_key)
        assert existing is not None
        return existing, False
    _wake(app)
    return run, True


def _wake(app: Phloem) -> None:
    notify_all(app.home, app.store)


def set_paused(app: Phloem, pipeline: str, paused: bool) -> str:
    """Pause or unpause ``pipeline`` (a name, or ``FILE[:PIPELINE]``); returns its name."""
    name = find_pipeline(app, pipeline)
    app.store.catalog.set_paused(name, paused, time.time())
    return name


@dataclass(frozen=True, slots=True)
class BackfillItem:
    logical_date: str
    interval_end: str
    action: str  # "new" | "exists" (kept) | "rerun" | "running"
    run_id: str | None = None
    state: str | None = None


def _aware(value: datetime | str, what: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = parse_time(value)
        except ValueError:
            raise PhloemError(f"{what} {value!r} is not an ISO 8601 date or time") from None
        assert parsed is not None
        return parsed
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def plan_backfill(
    app: Phloem,
    pipeline: str,
    start: datetime | str,
    end: datetime | str,
    *,
    rerun_failed: bool = False,
    rerun_all: bool = False,
) -> list[BackfillItem]:
    """Every interval whose start lies in [start, end] and what backfill would do with it."""
    pipeline = find_pipeline(app, pipeline)
    catalog = app.store.catalog
    row = _known(catalog, pipeline, for_what="backfill it")
    begin, finish = _aware(start, "start"), _aware(end, "end")
    if finish < begin:
        raise PhloemError(
            f"the end date {finish.isoformat()} is before the start date {begin.isoformat()}"
        )
    sched = schedule_of(row.info)
    if sched is None or isinstance(sched, Continuous):
        raise PhloemError(
            f"pipeline '{pipeline}' has no time schedule ({row.info.schedule or 'manual'}), so "
            "it has no intervals to backfill; trigger runs with explicit logical dates instead"
        )
    anchor = parse_time(row.info.start_date) or begin
    if finish < anchor:
        raise PhloemError(
            f"pipeline '{pipeline}' starts on {anchor.isoformat()}, after the range to "
            f"backfill ({begin.isoformat()} to {finish.isoformat()}): there is nothing to run"
        )
    intervals = sched.intervals(max(begin, anchor), finish)
    existing = catalog.runs_between(
        pipeline,
        iso_utc(intervals[0][0]) if intervals else iso_utc(begin),
        iso_utc(intervals[-1][0]) if intervals else iso_utc(finish),
    )
    plan = []
    for lo, hi in intervals:
        run = existing.get(iso_utc(lo))
        if run is None:
            plan.append(BackfillItem(iso_utc(lo), iso_utc(hi), "new"))
            continue
        if run.state in (RunState.QUEUED, RunState.RUNNING):
            action = "running"
        elif rerun_all or (rerun_failed and run.state is RunState.FAILED):
            action = "rerun"
        else:
            action = "exists"
        plan.append(BackfillItem(iso_utc(lo), iso_utc(hi), action, run.run_id, run.state.value))
    return plan


def backfill(
    app: Phloem,
    pipeline: str,
    start: datetime | str,
    end: datetime | str,
    *,
    rerun_failed: bool = False,
    rerun_all: bool = False,
    max_active_runs: int | None = None,
) -> list[BackfillItem]:
    """Create the backfill runs the plan asks for (the scheduler drives them, after its own
    scheduled runs when slots are scarce, at most ``max_active_runs`` of the new ones at a
    time) and reset the runs to rerun."""
    if max_active_runs is not None and max_active_runs < 1:
        raise PhloemError(f"--max-active-runs must be at least 1, got {max_active_runs}")
    pipeline = find_pipeline(app, pipeline)
    plan = plan_backfill(app, pipeline, start, end, rerun_failed=rerun_failed, rerun_all=rerun_all)
    batch = f"backfill-{new_run_id(time.time())}"
    row = app.store.catalog.pipeline(pipeline)
    spec = load_pipeline(f"{row.info.file}:{pipeline}").spec
    out = []
    for item in plan:
        if item.action == "new":
            try:
                run = create_run(
                    app.store,
                    spec,
                    None,
                    item.logical_date,
                    source=f"{row.info.file}:{pipeline}",
                    run_type=RunType.BACKFILL,
                    data_interval=(item.logical_date, item.interval_end),
                    batch=batch,
                    batch_limit=max_active_runs,
                )
                item = BackfillItem(
                    item.logical_date, item.interval_end, "new", run.run_id, run.state.value
                )
            except RunConflict:
                item = BackfillItem(item.logical_date, item.interval_end, "exists")
        elif item.action == "rerun":
            assert item.run_id is not None
            # queued again, so it waits for room like the new runs of this backfill
            reopen(
                app.store,
                spec,
                item.run_id,
                everything=rerun_all,
                reason="backfill rerun",
                queue=True,
                batch=batch,
                batch_limit=max_active_runs,
            )
        out.append(item)
    _wake(app)
    return out


def queue_retry(
    app: Phloem,
    run_id: str,
    *,
    task: str | None = None,
    downstream: bool = False,
    reason: str = "retry requested",
) -> tuple[RunRecord, int]:
    """Reset a run's failed tasks (or ``task`` and, with ``downstream``, all after it) and
    queue it for a scheduler, as ``phloem retry`` does but without driving it here. Returns
    the run and how many instances were reset; a run some process drives is refused
    (RunBusy): cancel it first, or wait for it to end."""
    from phloem.api import load_run_pipeline
    from phloem.driver.leases import holder_id
    from phloem.states import DriverRole

    record, pipeline = load_run_pipeline(app.store, run_id)
    if task is not None:
        pipeline.spec.task(task)  # an unknown task is an error naming the ones there are
    owner = holder_id(DriverRole.RETRY)
    catalog = app.store.catalog
    holder = catalog.claim_run(record.run_id, owner, app.settings.lease_ttl, time.time())
    if holder is not None:
        raise RunBusy(
            f"run {record.run_id} is being driven by {holder}; cancel it first "
            f"(`phloem cancel {record.run_id}`) or wait for it to end",
            run=record.run_id,
        )
    try:
        changed = reopen(
            app.store,
            pipeline.spec,
            record.run_id,
            task=task,
            downstream=downstream,
            reason=reason,
            queue=True,
        )
    finally:
        catalog.release_runs(owner, [record.run_id])
    _wake(app)
    return app.store.get_run(record.run_id), changed


def cancel(app: Phloem, run_id: str, reason: str = "cancelled") -> tuple[RunRecord, int]:
    """End a run now, whoever drives it: its unfinished tasks fail with ``reason``, the run
    fails, and its driver stops its running attempts within about a second (``driver.ended``);
    ``phloem retry`` resumes it. Returns the run and how many instances were stopped (0: it
    had ended)."""
    record = app.store.get_run(run_id)
    stopped = app.store.cancel_run(record.run_id, reason, time.time())
    return app.store.get_run(record.run_id), stopped
