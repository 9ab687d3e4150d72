"""The Python API behind ``phloem run`` / ``retry``: create a run, drive it, read its results."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from phloem.artifacts import ArtifactStore, decode_output
from phloem.artifacts.codec import from_stored_json
from phloem.config import DEFAULT_LOG_MAX_BYTES, Settings
from phloem.driver import DEFAULT_TTL, Driver, Reporter, holder_id
from phloem.driver.leases import is_dead_local
from phloem.dsl.params import resolve_params
from phloem.dsl.pipeline import Pipeline
from phloem.dsl.spec import PipelineSpec
from phloem.engine import TI
from phloem.errors import PhloemError, TaskNotFound
from phloem.executors import Executor, make_executor
from phloem.loading import load_pipeline
from phloem.records import RunRecord, iso_utc
from phloem.states import SUCCESS_STATES, RunState, TaskState
from phloem.store import SqlStore
from phloem.store.catalog import Catalog
from phloem.store.sql import RunIdTaken

S = TaskState


@dataclass(frozen=True, slots=True)
class Env:
    """Where one call reads and writes: the store, artifacts and logs."""

    store: SqlStore
    artifacts: ArtifactStore
    logs_dir: Path
    workers: int
    home: Path | None = None
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES


def open_env(
    store: SqlStore | str | None = None, home: str | os.PathLike[str] | None = None
) -> Env:
    if store == "memory" and home is None and not os.environ.get("PHLOEM_HOME"):
        home = tempfile.mkdtemp(prefix="phloem-")
    settings = Settings.from_env(home)
    if isinstance(store, SqlStore):
        st = store
    else:
        if store is None and settings.db_url.startswith("sqlite"):
            settings.ensure_dirs()
        st = SqlStore(store or settings.db_url)
    return Env(
        st,
        ArtifactStore(settings.artifacts_url),
        settings.logs_dir,
        settings.workers,
        settings.home,
        settings.log_max_bytes,
    )


def new_run_id(now: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(6)}"


def create_run(
    store: SqlStore,
    spec: PipelineSpec,
    params: Mapping[str, Any] | None = None,
    logical_date: datetime | str | None = None,
    *,
    source: str | None = None,
    run_type: str = "manual",
    idempotency_key: str | None = None,
    data_interval: tuple[str, str] | None = None,
    owner: str | None = None,
    batch: str | None = None,
    batch_limit: int | None = None,
) -> RunRecord:
    values = resolve_params(spec, params)
    now = time.time()
    record = RunRecord(
        run_id=new_run_id(now),
        pipeline=spec.name,
        state=RunState.QUEUED,
        logical_date=iso_utc(logical_date),
        params=values,
        created_at=now,
        run_type=run_type,
        source=source,
        code_hash=spec.code_hash,
        data_interval_start=data_interval[0] if data_interval else None,
        data_interval_end=data_interval[1] if data_interval else None,
        idempotency_key=idempotency_key,
        owner=owner,
        batch=batch,
        batch_limit=batch_limit,
    )
    pools = {t.task_id: (t.options.pool, t.options.pool_slots) for t in spec.tasks.values()}
    instances = [TI(task_id=t) for t in spec.tasks]
    for _ in range(5):
        try:
            return store.create_run(record, instances, pools, DEFAULT_TTL)
        except RunIdTaken:
            found = store.find_run(spec.name, record.logical_date, idempotency_key)
            if found is not None and found.run_id == record.run_id:
                return found  # our own insert, whose acknowledgement was lost
            record = replace(record, run_id=new_run_id(time.time()))
    raise PhloemError("could not find a free run id after 5 tries")


class RunResult:
    """A finished (or interrupted) run: its state, each task's state, and outputs."""

    def __init__(self, env: Env, spec: PipelineSpec, run: RunRecord) -> None:
        self._env = env
        self.spec = spec
        self.run = run
        self.tasks: dict[tuple[str, int], TI] = {
            ti.key: ti for ti in env.store.load_instances(run.run_id)
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
            else decode_output(from_stored_json(ti.output), self._env.artifacts)
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
    executor: str | Executor = "local",
    workers: int | None = None,
    store: SqlStore | str | None = None,
    logical_date: datetime | str | None = None,
    home: str | os.PathLike[str] | None = None,
    reporter: Reporter | None = None,
    on_created: Any = None,
) -> RunResult:
    """Run a pipeline to its end on the durable store, with no server."""
    p, source = _pipeline(pipeline)
    env = open_env(store, home)
    ex = make_executor(
        executor, workers or env.workers, log_max_bytes=env.log_max_bytes
    )  # a bad name fails before the run
    record = create_run(
        env.store, p.spec, params, logical_date, source=source, owner=holder_id("run")
    )
    if on_created is not None:
        on_created(record)
    return drive(env, p.spec, record, ex, workers, reporter)


def drive(
    env: Env,
    spec: PipelineSpec,
    record: RunRecord,
    executor: str | Executor = "local",
    workers: int | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    ex = (
        make_executor(executor, workers or env.workers, log_max_bytes=env.log_max_bytes)
        if isinstance(executor, str)
        else executor
    )
    Driver(env.store, ex, spec, record, env.artifacts, env.logs_dir, reporter).drive()
    return RunResult(env, spec, env.store.get_run(record.run_id))


def load_run_pipeline(env: Env, run_id: str) -> tuple[RunRecord, Pipeline]:
    record = env.store.get_run(run_id)
    if not record.source:
        raise PhloemError(
            f"run {record.run_id} does not record where its pipeline's code lives, so it "
            "cannot be resumed from here; resume it from Python with phloem.retry(pipeline=...)",
            run=record.run_id,
        )
    return record, load_pipeline(record.source)


def plan_retry(
    snap_tis: list[TI], spec: PipelineSpec, task: str | None, downstream: bool
) -> tuple[list[tuple[TI, TI]], set[str]]:
    """Which instances to reset, and which mapped tasks to re-expand from scratch."""
    if task is not None:
        spec.task(task)
        chosen = {task}
        if downstream:
            frontier = [task]
            while frontier:
                for d in spec.tasks[frontier.pop()].downstream:
                    if d not in chosen:
                        chosen.add(d)
                        frontier.append(d)
        targets = [ti for ti in snap_tis if ti.task_id in chosen]
    else:
        chosen = set()
        targets = [ti for ti in snap_tis if ti.state in (S.FAILED, S.UPSTREAM_FAILED)]
    remap = {
        t
        for t in chosen
        if spec.tasks[t].is_mapped
        and (any(u in chosen for u in spec.tasks[t].data_upstream) or t == task)
    }
    resets = []
    for ti in targets:
        if ti.task_id in remap or ti.state not in _RESETTABLE:
            continue
        resets.append(
            (
                ti,
                replace(
                    ti,
                    state=S.PENDING,
                    retry_base=ti.try_number,
                    first_started_at=None,  # a sensor's time limit starts again
                    next_try_at=None,
                    started_at=None,
                    ended_at=None,
                    output=None,
                    error=None,
                    follow=None,
                    map_length=None,
                ),
            )
        )
    return resets, remap


_RESETTABLE = {S.FAILED, S.UPSTREAM_FAILED, S.SUCCESS, S.SKIPPED, S.CACHED}


def retry(
    run_id: str,
    *,
    task: str | None = None,
    downstream: bool = False,
    pipeline: Pipeline | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    store: SqlStore | str | None = None,
    home: str | os.PathLike[str] | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Reset failed tasks (or ``task`` and, with ``downstream``, all after it) and resume.

    Succeeded tasks keep their outputs; running it twice, or on a run that succeeded with no
    ``task`` named, resets nothing and duplicates nothing.
    """
    env = open_env(store, home)
    if pipeline is None:
        record, pipeline = load_run_pipeline(env, run_id)
    else:
        record = env.store.get_run(run_id)
    spec = pipeline.spec
    owner = holder_id("retry")
    catalog = Catalog(env.store)
    holder = catalog.claim_run(record.run_id, owner, DEFAULT_TTL, time.time())
    if holder is not None and is_dead_local(holder):
        holder = catalog.claim_run(record.run_id, owner, DEFAULT_TTL, time.time(), take_from=holder)
    if holder is not None:
        raise PhloemError(
            f"run {record.run_id} is being driven by {holder}; wait for it to finish, or stop "
            "that process (its lease then expires and the run can be resumed)",
            run=record.run_id,
        )
    record = replace(record, owner=owner)
    try:
        ex = make_executor(
            executor, workers or env.workers, log_max_bytes=env.log_max_bytes
        )  # a bad name changes nothing
        reopen(env, spec, record.run_id, task=task, downstream=downstream, reason="retry requested")
        record = replace(env.store.get_run(record.run_id), owner=owner)
        if record.state.is_terminal:
            catalog.release_runs(owner, [record.run_id])
            return RunResult(env, spec, record)
    except BaseException:
        catalog.release_runs(owner, [record.run_id])
        raise
    return drive(env, spec, record, ex, workers, reporter)


def reopen(
    env: Env,
    spec: PipelineSpec,
    run_id: str,
    *,
    task: str | None = None,
    downstream: bool = False,
    everything: bool = False,
    reason: str,
    queue: bool = False,
    batch: str | None = None,
    batch_limit: int | None = None,
) -> int:
    """Reset a run's failed tasks (or ``task`` and after it, or ``everything``) and make it
    running again, in one transaction. Returns how many instances changed."""
    tis = env.store.load_instances(run_id)
    if everything:
        resets: dict[tuple[str, int], tuple[TI, TI]] = {}
        remap: set[str] = set()
        for root in (t for t, ts in spec.tasks.items() if not ts.upstream):
            r, m = plan_retry(tis, spec, root, True)
            resets.update({old.key: (old, new) for old, new in r})
            remap |= m
        reset_list = list(resets.values())
    else:
        reset_list, remap = plan_retry(tis, spec, task, downstream)
    placeholders = []
    for task_id in remap:
        tries = max((ti.try_number for ti in tis if ti.task_id == task_id), default=0)
        placeholders.append(TI(task_id=task_id, try_number=tries, retry_base=tries))
    changed = env.store.reopen_run(
        run_id,
        reset_list,
        placeholders,
        reason,
        time.time(),
        state=RunState.QUEUED if queue else RunState.RUNNING,
        batch=batch,
        batch_limit=batch_limit,
    )
    run = env.store.get_run(run_id)
    if run.state.is_terminal and any(not ti.state.is_terminal for ti in tis):
        # finished with work left (e.g. written by an older version): open it again
        env.store.set_run_state(run_id, run.state, RunState.RUNNING, time.time())
    return changed


__all__ = [
    "Env",
    "RunResult",
    "create_run",
    "drive",
    "open_env",
    "retry",
    "reopen",
    "run",
]
