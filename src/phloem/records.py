"""Domain records shared by the engine and the store: plain frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from phloem.errors import PhloemError
from phloem.states import RunState, RunType, TaskState

Key = tuple[str, int]  # (task_id, map_index); map_index -1 for an unmapped task


@dataclass(frozen=True, slots=True)
class TI:
    """One task instance as the store holds it."""

    task_id: str
    map_index: int = -1
    state: TaskState = TaskState.PENDING
    try_number: int = 0  # attempts handed out so far
    retry_base: int = 0  # tries that do not count against ``retries`` (reschedules, clears)
    next_try_at: float | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    first_started_at: float | None = None
    map_length: int | None = None  # len() of the output when it is a sequence
    follow: tuple[str, ...] | None = None  # branch decision
    output: Any = None  # stored output reference; opaque to the engine
    error: str | None = None

    @property
    def key(self) -> Key:
        return (self.task_id, self.map_index)


@dataclass(frozen=True, slots=True)
class Transition:
    """A compare-and-set: ``key`` goes from (old, old_try) to ``new``'s state."""

    old: TI
    new: TI
    reason: str | None = None

    @property
    def key(self) -> Key:
        return self.new.key


@dataclass(frozen=True, slots=True)
class Expansion:
    """Replace the placeholder of a mapped task by ``count`` scheduled instances."""

    placeholder: TI
    count: int


def iso_utc(value: datetime | str | None) -> str:
    """A logical date as stored: ISO 8601 in UTC with microseconds, so dates compare and sort
    as text (now when None; a naive time is taken as UTC)."""
    if value is None:
        value = datetime.now(timezone.utc)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise PhloemError(
                f"logical date {value!r} is not an ISO 8601 date or time (e.g. 2026-01-31 or "
                "2026-01-31T02:00:00+00:00)"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    pipeline: str
    state: RunState
    logical_date: str  # ISO 8601, UTC
    params: dict[str, Any]
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    run_type: RunType = RunType.MANUAL
    source: str | None = None  # "path/to/file.py:pipeline_name", to reload the code
    code_hash: str | None = None
    data_interval_start: str | None = None
    data_interval_end: str | None = None
    idempotency_key: str | None = None
    owner: str | None = None  # who drives it now (a scheduler or a `phloem run` process)
    batch: str | None = None  # runs made together (a backfill)
    batch_limit: int | None = None  # at most this many runs of the batch at once
    #: the run and task whose ``phloem.trigger`` call made it: "RUN_ID/TASK_ID" (a mapped
    #: task's instance as "RUN_ID/TASK_ID[2]")
    triggered_by: str | None = None


def expansion_instances(e: Expansion, now: float) -> list[TI]:
    base = e.placeholder
    if e.count == 0:
        return [replace(base, state=TaskState.SKIPPED, ended_at=now)]
    return [
        # a re-expansion (after a retry) continues the try numbers of the earlier instances
        TI(
            task_id=base.task_id,
            map_index=i,
            state=TaskState.SCHEDULED,
            try_number=base.try_number,
            retry_base=base.try_number,
        )
        for i in range(e.count)
    ]
