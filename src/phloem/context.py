"""``phloem.context()``: what a running task may know about itself.

Dates are timezone-aware ``datetime`` objects (UTC), so task code can call ``.strftime``,
``.date()``, compare and add timedeltas; ``ds``/``ds_nodash``/``ts`` give the usual strings.
They become ISO text only at the JSON edge (the store, the CLI).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from phloem.errors import PhloemError


def as_datetime(value: datetime | str | None) -> datetime | None:
    """An ISO 8601 string (as the store keeps dates) as an aware datetime; naive means UTC."""
    if value is None:
        return None
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class TaskContext:
    run_id: str
    pipeline: str
    task_id: str
    map_index: int | None
    try_number: int
    logical_date: datetime
    #: the span of data the run covers; a run started by hand covers just its logical date
    data_interval_start: datetime
    data_interval_end: datetime
    params: dict[str, Any]
    log: logging.Logger = field(repr=False)
    store_url: str | None = None
    #: what started the run: scheduled, manual, backfill, asset, triggered...
    run_type: str = "manual"
    #: the attempt's artifact store, and the digests of the artifacts it read (its inputs in
    #: lineage), for ``phloem.outputs``; set by the runner
    artifacts: Any = field(default=None, repr=False, compare=False)
    reads: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def ds(self) -> str:
        """The logical date as ``YYYY-MM-DD`` (the day the run is for, in UTC)."""
        return self.logical_date.strftime("%Y-%m-%d")

    @property
    def ds_nodash(self) -> str:
        return self.logical_date.strftime("%Y%m%d")

    @property
    def ts(self) -> str:
        """The logical date as ISO 8601 text."""
        return self.logical_date.isoformat()


class Deferred:
    """An argument whose value is known only when the attempt runs (a template string, say):
    the runner calls ``resolve`` inside the attempt, with its context active."""

    __slots__ = ()

    def resolve(self) -> Any:
        raise NotImplementedError


_current: ContextVar[TaskContext | None] = ContextVar("phloem_task_context", default=None)


def context() -> TaskContext:
    """The context of the task attempt running now; an error outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise PhloemError(
            "phloem.context() is only available while a task runs; in a unit test of "
            "task.fn, build a TaskContext yourself or pass the values as arguments"
        )
    return ctx


def current() -> TaskContext | None:
    """The running attempt's context, or None outside a task (no error)."""
    return _current.get()


def activate(ctx: TaskContext | None) -> Any:
    return _current.set(ctx)


def deactivate(token: Any) -> None:
    _current.reset(token)
