"""The JSON forms of runs, task instances and attempts that the REST API sends and the client
reads, and the way back to phloem's own records.

One module for both ends, so the server's answer and the client's reading of it cannot drift
apart, and a command renders the same records whether they came from the local store or from a
server (``RunOut.record()`` gives back the ``RunRecord`` the server read). Times are epoch
seconds (UTC), as the store keeps them, so they round-trip exactly; logical dates are ISO 8601.
Pydantic only: neither FastAPI nor httpx is imported here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from phloem.records import TI, RunRecord
from phloem.states import AttemptState, RunState, RunType, TaskState
from phloem.store.types import AttemptRow


class Wire(BaseModel):
    """A document of the API: unknown members are refused where the server builds it."""

    model_config = ConfigDict(extra="forbid")


class RunOut(Wire):
    run_id: str
    pipeline: str
    state: RunState
    logical_date: str
    data_interval_start: str | None = None
    data_interval_end: str | None = None
    params: dict[str, Any]
    #: what started it: scheduled, manual, backfill, asset, triggered (by another run)
    run_type: RunType
    source: str | None = None
    code_hash: str | None = None
    idempotency_key: str | None = None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    #: the scheduler or process driving it now (None: nobody)
    owner: str | None = None
    batch: str | None = None
    triggered_by: str | None = None

    @classmethod
    def of(cls, r: RunRecord) -> RunOut:
        return cls(
            run_id=r.run_id,
            pipeline=r.pipeline,
            state=r.state,
            logical_date=r.logical_date,
            data_interval_start=r.data_interval_start,
            data_interval_end=r.data_interval_end,
            params=r.params,
            run_type=r.run_type,
            source=r.source,
            code_hash=r.code_hash,
            idempotency_key=r.idempotency_key,
            created_at=r.created_at,
            started_at=r.started_at,
            ended_at=r.ended_at,
            owner=r.owner,
            batch=r.batch,
            triggered_by=r.triggered_by,
        )

    def record(self) -> RunRecord:
        return RunRecord(
            run_id=self.run_id,
            pipeline=self.pipeline,
            state=self.state,
            logical_date=self.logical_date,
            params=self.params,
            created_at=self.created_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            run_type=self.run_type,
            source=self.source,
            code_hash=self.code_hash,
            data_interval_start=self.data_interval_start,
            data_interval_end=self.data_interval_end,
            idempotency_key=self.idempotency_key,
            owner=self.owner,
            batch=self.batch,
            triggered_by=self.triggered_by,
        )


class TaskInstanceOut(Wire):
    task_id: str
    #: the instance of a mapped task (None: not mapped)
    map_index: int | None
    state: TaskState
    #: attempts handed out so far
    try_number: int
    next_try_at: float | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    first_started_at: float | None = None
    #: how many instances a task mapped over this one's output gets
    map_length: int | None = None
    #: the tasks a branch chose
    follow: list[str] | None = None
    error: str | None = None
    #: whether ``.../output`` has something to show
    has_output: bool = False

    @classmethod
    def of(cls, ti: TI) -> TaskInstanceOut:
        return cls(
            task_id=ti.task_id,
            map_index=ti.map_index if ti.map_index >= 0 else None,
            state=ti.state,
            try_number=ti.try_number,
            next_try_at=ti.next_try_at,
            queued_at=ti.queued_at,
            started_at=ti.started_at,
            ended_at=ti.ended_at,
            first_started_at=ti.first_started_at,
            map_length=ti.map_length,
            follow=None if ti.follow is None else list(ti.follow),
            error=ti.error,
            has_output=ti.output is not None,
        )

    def record(self) -> TI:
        return TI(
            task_id=self.task_id,
            map_index=-1 if self.map_index is None else self.map_index,
            state=self.state,
            try_number=self.try_number,
            next_try_at=self.next_try_at,
            queued_at=self.queued_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            first_started_at=self.first_started_at,
            map_length=self.map_length,
            follow=None if self.follow is None else tuple(self.follow),
            error=self.error,
        )


class AttemptOut(Wire):
    task_id: str
    map_index: int | None
    try_number: int
    state: AttemptState
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    #: where it ran (host:pid), when the executor said
    worker: str | None = None
    #: what it cost (CPU seconds, peak resident bytes) and the memory it was allowed
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    memory_limit: int | None = None
    #: GPU seconds reserved (on Ray: the GPUs its worker held times its wall time)
    gpu_seconds: float | None = None

    @classmethod
    def of(cls, a: AttemptRow) -> AttemptOut:
        return cls(
            task_id=a.task_id,
            map_index=a.map_index if a.map_index >= 0 else None,
            try_number=a.try_number,
            state=a.state,
            queued_at=a.queued_at,
            started_at=a.started_at,
            ended_at=a.ended_at,
            error=a.error,
            worker=a.worker,
            cpu_seconds=a.cpu_seconds,
            peak_rss=a.peak_rss,
            memory_limit=a.memory_limit,
            gpu_seconds=a.gpu_seconds,
        )

    def record(self) -> AttemptRow:
        return AttemptRow(
            self.task_id,
            -1 if self.map_index is None else self.map_index,
            self.try_number,
            self.state,
            self.queued_at,
            self.started_at,
            self.ended_at,
            self.error,
            self.worker,
            self.cpu_seconds,
            self.peak_rss,
            self.memory_limit,
            self.gpu_seconds,
        )


class TaskSummary(Wire):
    """One task of a run: an unmapped task's instance, or a mapped task's instances counted."""

    task_id: str
    mapped: bool
    instances: int
    #: state -> how many of its instances are in it
    states: dict[str, int]


class RunDetail(Wire):
    run: RunOut
    #: the pipeline's task ids in topological order (None: its code cannot be loaded here)
    task_order: list[str] | None
    tasks: list[TaskSummary]


class OutputOut(Wire):
    """A task instance's output: a JSON value, or the description of the artifact holding it
    (a data frame's shape, schema and first rows; an array's shape and dtype)."""

    kind: Literal["none", "value", "artifact", "structured"]
    value: Any = None
    artifact: dict[str, Any] | None = None
    #: a dict, tuple or dataclass stored value by value: its kind and each value's description
    structure: dict[str, Any] | None = None
    #: metadata kept with an inline value (an artifact's is in its description)
    metadata: dict[str, Any] | None = None


class RetryIn(Wire):
    #: re-run this task (default: every failed one)
    task: str | None = None
    #: with ``task``: every task after it too
    downstream: bool = False


class RetryOut(Wire):
    run: RunOut
    #: how many task instances were reset
    reset: int


class CancelIn(Wire):
    #: why, kept as the error of each task instance it stops
    reason: str | None = None


class CancelOut(Wire):
    run: RunOut
    #: how many unfinished task instances it failed (0: the run had ended)
    cancelled: int


class BackfillIn(Wire):
    pipeline: str
    #: first logical date (ISO 8601)
    start: str
    #: last logical date (ISO 8601)
    end: str
    rerun_failed: bool = False
    rerun_all: bool = False
    #: at most this many of the new runs at once (ignored by a dry run)
    max_active_runs: int | None = Field(default=None, ge=1)


class BackfillItemOut(Wire):
    logical_date: str
    interval_end: str
    #: new, exists (kept), rerun, running (kept)
    action: str
    run_id: str | None = None
    state: str | None = None


class BackfillOut(Wire):
    dry_run: bool
    items: list[BackfillItemOut]


__all__ = [
    "AttemptOut",
    "BackfillIn",
    "BackfillItemOut",
    "BackfillOut",
    "CancelIn",
    "CancelOut",
    "OutputOut",
    "RetryIn",
    "RetryOut",
    "RunDetail",
    "RunOut",
    "TaskInstanceOut",
    "TaskSummary",
    "Wire",
]
