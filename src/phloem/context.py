"""``phloem.context()``: what a running task may know about itself."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from phloem.errors import PhloemError


@dataclass(frozen=True, slots=True)
class TaskContext:
    run_id: str
    pipeline: str
    task_id: str
    map_index: int | None
    try_number: int
    logical_date: str
    data_interval_start: str | None
    data_interval_end: str | None
    params: dict[str, Any]
    log: logging.Logger = field(repr=False)
    store_url: str | None = None


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


def activate(ctx: TaskContext | None) -> Any:
    return _current.set(ctx)


def deactivate(token: Any) -> None:
    _current.reset(token)
