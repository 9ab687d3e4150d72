"""What travels between the driver and wherever an attempt runs (picklable, small)."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from phloem.artifacts.ref import ArtifactRef
from phloem.dsl.options import Resources
from phloem.effects import Effect
from phloem.states import AttemptOutcome


@dataclass(frozen=True, slots=True)
class Out:
    """An upstream output, as stored (JSON text), optionally indexed by ``path``."""

    stored: str | None
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Element:
    """Element ``index`` of an upstream output stored as an artifact (a mapping source too
    large to decode in the driver): the worker decodes it once and picks the element."""

    stored: str
    index: int


@dataclass(frozen=True, slots=True)
class OutList:
    """A mapped upstream's outputs, in map-index order (fan-in)."""

    stored: tuple[str | None, ...]
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Attempt:
    run_id: str
    pipeline: str
    task_id: str
    map_index: int
    try_number: int
    args: tuple[Any, ...]  # values, with Out/OutList where upstream outputs go
    kwargs: dict[str, Any]
    logical_date: str
    data_interval_start: str | None
    data_interval_end: str | None
    params: dict[str, Any]
    log_path: str
    first_started_at: float
    timeout: float | None = None
    source: str | None = None  # "file.py:pipeline" for workers that must load the code
    code_hash: str | None = None  # which version of that code the run was created with
    store_url: str | None = None
    run_type: str = "manual"
    #: fencing (see ``executors.fencing``): the lease holder of the driver that handed this
    #: attempt out, when (its clock) it last confirmed holding the run, and the lease time
    #: (None: no heartbeats, e.g. an in-memory store)
    owner: str | None = None
    lease_from: float | None = None
    heartbeat_ttl: float | None = None
    #: bytes of memory the attempt may use (the executor enforces it; None: no limit)
    memory_limit: int | None = None
    #: what the task asked for, when more than the default (executors that place work honour
    #: it: Ray); the memory to limit is ``memory_limit``
    resources: Resources | None = None
    #: how many attempts of this task, this one first, may go to a worker in one message
    #: (tiny mapped instances in batches; each still runs, fails and reports on its own)
    batch: int = 1

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.map_index)


@dataclass(frozen=True, slots=True)
class Result:
    """How an attempt ended, as the runner saw it; the engine decides what it means."""

    run_id: str
    task_id: str
    map_index: int
    try_number: int
    outcome: AttemptOutcome
    started_at: float
    ended_at: float
    output: str | None = None  # stored JSON text
    map_length: int | None = None
    follow: tuple[str, ...] | None = None
    error: str | None = None
    retryable: bool = True
    artifacts: tuple[ArtifactRef, ...] = ()  # outputs stored as artifacts
    inputs: tuple[str, ...] = field(default=())  # digests of artifacts read
    effects: tuple[Effect, ...] = ()  # what the task recorded (phloem.effects)

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.map_index)


_FIELDS = tuple(f.name for f in fields(Result))
if _FIELDS[-1] != "effects":  # with_effects passes the others by position
    raise ImportError("Result.effects must stay its last field")
_kept: Callable[[Result], tuple[Any, ...]] = operator.attrgetter(*_FIELDS[:-1])


def with_effects(result: Result, effects: tuple[Effect, ...]) -> Result:
    """``result`` with ``effects`` instead of its own: ``dataclasses.replace`` looks the
    fields up in Python on every call, and every attempt's result gets its usage this way."""
    values: tuple[Any, ...] = (*_kept(result), effects)
    return Result(*values)


def failed_result(
    attempt: Attempt,
    error: str,
    *,
    started: float | None = None,
    ended: float | None = None,
    retryable: bool = True,
) -> Result:
    """A failed attempt that phloem ended for the task (its code would not load, its worker
    died, its fence refused it): one shape wherever an attempt can end before or around it."""
    ended = time.time() if ended is None else ended
    return Result(
        attempt.run_id,
        attempt.task_id,
        attempt.map_index,
        attempt.try_number,
        AttemptOutcome.FAILED,
        ended if started is None else started,
        ended,
        error=error,
        retryable=retryable,
    )
