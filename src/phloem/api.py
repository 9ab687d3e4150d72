"""The Python API behind ``phloem run`` / ``retry``: create a run, drive it, read its results.

Each call runs in an application (:class:`phloem.app.Phloem`): the one passed as ``app``, or one
built from the environment, where ``store`` and ``home`` win.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from phloem.app import Phloem
from phloem.artifacts import decode_output
from phloem.artifacts.codec import from_stored_json
from phloem.caching import CacheMode
from phloem.driver import Driver, Reporter, holder_id
from phloem.driver.leases import is_dead_local
from phloem.dsl.params import resolve_params
from phloem.dsl.pipeline import Pipeline
from phloem.dsl.spec import PipelineSpec
from phloem.engine import TI
from phloem.errors import ParamError, PhloemError, RunConflict, TaskNotFound
from phloem.executors import Executor
from phloem.loading import load_pipeline
from phloem.records import RunRecord, Transition
from phloem.runs import create_run, reopen
from phloem.states import (
    ACTIVE_TASK_STATES,
    SUCCESS_STATES,
    DriverRole,
    ExecutorKind,
    RunState,
    TaskState,
)
from phloem.store import Commit, Store


class RunResult:
    """A finished (or interrupted) run: its state, each task's state, and outputs."""

    def __init__(self, app: Phloem, spec: PipelineSpec, run: RunRecord) -> None:
        self.app = app  # where the run lives: its store, artifacts and logs
        self.spec = spec
        self.run = run
        self.tasks: dict[tuple[str, int], TI] = {
            ti.key: ti for ti in app.store.load_instances(run.run_id)
        }

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def succeeded(self) -> bool:
        return self.run.state is RunState.SUCCESS

    def task_state(self, task_id: str, map_index: int = -1) -> TaskState:
        return self._ti(task_id, map_index).state

    def states(self) -> dict[str, str]:
        """task id (with [i] for mapped instances) -> state."""
        out = {}
        for (task_id, i), ti in sorted(
            self.tasks.items(),
            key=lambda kv: (
                self.spec.tasks[kv[0][0]].index if kv[0][0] in self.spec.tasks else 0,
                kv[0][1],
            ),
        ):
            out[f"{task_id}[{i}]" if i >= 0 else task_id] = ti.state.value
        return out

    def _ti(self, task_id: str, map_index: int) -> TI:
        ti = self.tasks.get((task_id, map_index))
        if ti is None:
            raise TaskNotFound(
                f"run {self.run_id} has no task instance {task_id}"
                + (f"[{map_index}]" if map_index >= 0 else "")
            )
        return ti

    def output(self, task_id: str, map_index: int | None = None) -> Any:
        """A task's output; for a mapped task without ``map_index``, the list of outputs."""
        if map_index is None and self.spec.task(task_id).is_mapped:
            idx = sorted(i for (t, i) in self.tasks if t == task_id and i >= 0)
            return [self.output(task_id, i) for i in idx]
        ti = self._ti(task_id, -1 if map_index is None else map_index)
        if ti.state not in SUCCESS_STATES:
            raise PhloemError(
                f"task '{task_id}' of run {self.run_id} has no output: it is {ti.state.value}",
                run=self.run_id,
                task=task_id,
            )
        return (
            None
            if ti.output is None
            else decode_output(from_stored_json(ti.output), self.app.artifacts)
        )

    def __repr__(self) -> str:
        return f"<RunResult {self.run.pipeline} {self.run_id} {self.state.value}>"


def _pipeline(target: Pipeline | str) -> tuple[Pipeline, str | None]:
    if isinstance(target, Pipeline):
        src = target.spec.source_file
        return target, f"{src}:{target.name}" if src else None
    p = load_pipeline(target)
    path = target.rpartition(":")[0] if ":" in target and not target.endswith(".py") else target
    return p, f"{Path(path).resolve()}:{p.name}"


def run(
    pipeline: Pipeline | str,
    *,
    params: Mapping[str, Any] | None = None,
    executor: ExecutorKind | str | Executor | None = None,
    workers: int | None = None,
    store: Store | str | None = None,
    logical_date: datetime | str | None = None,
    home: str | os.PathLike[str] | None = None,
    reporter: Reporter | None = None,
    on_created: Any = None,
    app: Phloem | None = None,
    rerun: bool = False,
    cache: CacheMode | str = CacheMode.USE,
) -> RunResult:
    """Run a pipeline to its end on the durable store, with no server.

    ``store`` is a store, a URL or ``"memory"`` (a private store for this process); without
    ``app``, settings come from the environment, where ``store`` and ``home`` win. A run for
    ``logical_date`` that exists already is an error, unless ``rerun``: then that run runs
    again, every task, with the parameters it recorded. ``cache``: ``"use"`` the task cache,
    leave it ``"off"`` (``--no-cache``), or ``"refresh"`` it (``--refresh-cache``: recompute
    cached tasks and replace their entries)."""
    mode = cache_mode(cache)
    p, source = _pipeline(pipeline)
    app = app or Phloem.open(store, home)
    ex = app.executor(executor, workers)  # a bad name fails before the run
    try:
        record = create_run(
            app.store,
            p.spec,
            params,
            logical_date,
            source=source,
            owner=holder_id(DriverRole.RUN),
            lease_ttl=app.settings.lease_ttl,
        )
    except RunConflict as exc:
        existing = exc.context.get("run")
        if not isinstance(existing, str):
            raise
        if not rerun:
            raise _offer_rerun(exc, existing, pipeline) from None
        return _rerun(app, p, existing, params, ex, reporter, on_created, mode)
    if on_created is not None:
        on_created(record)
    return drive(app, p.spec, record, ex, reporter, cache=mode)


def cache_mode(value: CacheMode | str) -> CacheMode:
    """``value`` as a cache mode, or a clear error naming the modes."""
    try:
        return CacheMode(value)
    except ValueError:
        modes = ", ".join(repr(m.value) for m in CacheMode)
        raise PhloemError(f"unknown cache mode {value!r}; use one of {modes}") from None


def _offer_rerun(exc: RunConflict, run_id: str, target: Pipeline | str) -> RunConflict:
    where = target if isinstance(target, str) else target.spec.name
    return RunConflict(
        f"{str(exc).split(': ')[0]}: {run_id}. Run that day again, every task, with "
        f"`phloem run {where} --logical-date ... --rerun` (phloem.run(..., rerun=True)), or "
        f"resume only its failed tasks with `phloem retry {run_id}`",
        run=run_id,
    )


def _rerun(
    app: Phloem,
    p: Pipeline,
    run_id: str,
    params: Mapping[str, Any] | None,
    ex: Executor,
    reporter: Reporter | None,
    on_created: Any,
    mode: CacheMode,
) -> RunResult:
    record = app.store.get_run(run_id)
    if params and resolve_params(p.spec, params) != record.params:
        raise ParamError(
            f"run {run_id} of that day ran with parameters {record.params}; --rerun runs it "
            "again with those: leave out --param, or pick another logical date"
        )
    if on_created is not None:
        on_created(record)
    return retry(
        run_id, pipeline=p, everything=True, executor=ex, reporter=reporter, app=app, cache=mode
    )


#: how long ``phloem run`` waits at the end of a run for its alerts to be delivered
ALERT_GRACE = 5.0


def drive(
    app: Phloem,
    spec: PipelineSpec,
    record: RunRecord,
    executor: Executor,
    reporter: Reporter | None = None,
    *,
    cache: CacheMode = CacheMode.USE,
) -> RunResult:
    """Drive a run this process owns to its end."""
    alerts = app.alerting
    try:
        Driver(
            app.store,
            executor,
            spec,
            record,
            app.artifacts,
            app.logs_dir,
            reporter,
            lease_ttl=app.settings.lease_ttl,
            cache_mode=cache,
            alerts=alerts,
        ).drive()
    finally:
        # alerts the run raised go out now if their receivers answer soon; the rest stay
        # pending in the store for the next process that drives runs
        alerts.flush(ALERT_GRACE)
    return RunResult(app, spec, app.store.get_run(record.run_id))


def load_run_pipeline(store: Store, run_id: str) -> tuple[RunRecord, Pipeline]:
    record = store.get_run(run_id)
    if not record.source:
        raise PhloemError(
            f"run {record.run_id} does not record where its pipeline's code lives, so it "
            "cannot be resumed from here; resume it from Python with phloem.retry(pipeline=...)",
            run=record.run_id,
        )
    return record, load_pipeline(record.source)


def retry(
    run_id: str,
    *,
    task: str | None = None,
    downstream: bool = False,
    everything: bool = False,
    pipeline: Pipeline | None = None,
    executor: ExecutorKind | str | Executor | None = None,
    workers: int | None = None,
    store: Store | str | None = None,
    home: str | os.PathLike[str] | None = None,
    reporter: Reporter | None = None,
    app: Phloem | None = None,
    cache: CacheMode | str = CacheMode.USE,
) -> RunResult:
    """Reset failed tasks (or ``task`` and, with ``downstream``, all after it, or with
    ``everything`` every task) and resume.

    Succeeded tasks keep their outputs; running it twice, or on a run that succeeded with no
    ``task`` named, resets nothing and duplicates nothing.
    """
    app = app or Phloem.open(store, home)
    if pipeline is None:
        record, pipeline = load_run_pipeline(app.store, run_id)
    else:
        record = app.store.get_run(run_id)
    spec = pipeline.spec
    owner = holder_id(DriverRole.RETRY)
    catalog = app.store.catalog
    ttl = app.settings.lease_ttl
    holder = catalog.claim_run(record.run_id, owner, ttl, time.time())
    if holder is not None and is_dead_local(holder):
        dead = holder
        holder = catalog.claim_run(record.run_id, owner, ttl, time.time(), take_from=dead)
        if holder is None:
            # its attempts died with it (workers die with their driver): nothing to wait for
            _interrupted(app.store, record.run_id, owner, f"its driver {dead} died", ttl)
    if holder is not None:
        raise PhloemError(
            f"run {record.run_id} is being driven by {holder}; wait for it to finish, or stop "
            "that process (its lease then expires and the run can be resumed)",
            run=record.run_id,
        )
    record = replace(record, owner=owner)
    try:
        ex = app.executor(executor, workers)  # a bad name changes nothing
        reopen(
            app.store,
            spec,
            record.run_id,
            task=task,
            downstream=downstream,
            everything=everything,
            reason="rerun requested" if everything else "retry requested",
        )
        record = replace(app.store.get_run(record.run_id), owner=owner)
        if record.state.is_terminal:
            catalog.release_runs(owner, [record.run_id])
            return RunResult(app, spec, record)
    except BaseException:
        catalog.release_runs(owner, [record.run_id])
        raise
    return drive(app, spec, record, ex, reporter, cache=cache_mode(cache))


def _interrupted(store: Store, run_id: str, owner: str, reason: str, ttl: float) -> None:
    """What the run's driver would have done had it stopped cleanly: nothing claims to run."""
    stale = [ti for ti in store.load_instances(run_id) if ti.state in ACTIVE_TASK_STATES]
    if stale:
        ts = tuple(Transition(ti, replace(ti, state=TaskState.SCHEDULED), reason) for ti in stale)
        store.commit_many([Commit(run_id, ts, owner=owner, lease_ttl=ttl)])


__all__ = ["RunResult", "drive", "load_run_pipeline", "retry", "run"]
