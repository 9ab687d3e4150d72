"""The validated, immutable graph a pipeline definition produces."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from phloem.alerts.rules import Rule
from phloem.dsl.hints import did_you_mean
from phloem.dsl.options import TaskOptions
from phloem.dsl.refs import ArgSpec
from phloem.errors import TaskNotFound


@dataclass(frozen=True, slots=True)
class TaskSpec:
    task_id: str
    fn: Callable[..., Any]
    options: TaskOptions
    args: tuple[ArgSpec, ...]
    kwargs: tuple[tuple[str, ArgSpec], ...]
    #: mapped keyword arguments (cross product, in order) or None for an unmapped task
    expand: tuple[tuple[str, ArgSpec], ...] | None
    upstream: tuple[str, ...]  # data and ordering edges, in definition order
    data_upstream: tuple[str, ...]
    downstream: tuple[str, ...]
    group: str | None
    defined_at: str  # "file:line"
    index: int  # topological position

    @property
    def is_mapped(self) -> bool:
        return self.expand is not None

    @property
    def is_branch(self) -> bool:
        return self.options.kind == "branch"

    @property
    def is_sensor(self) -> bool:
        return self.options.kind == "sensor"


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    default: Any
    #: the body's annotation (a type, ``list[int]``, a Literal, a pydantic model ...); None
    #: means any JSON value
    annotation: Any = None

    @property
    def type(self) -> type | None:
        return self.annotation if isinstance(self.annotation, type) else None

    def describe(self) -> str:
        a = self.annotation
        if a is None:
            return "any"
        return a.__name__ if isinstance(a, type) else str(a).replace("typing.", "")


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    name: str
    tasks: Mapping[str, TaskSpec]  # in topological order
    params: Mapping[str, ParamSpec]
    schedule: Any = None  # phloem.schedules.Schedule | None
    schedule_text: str | None = None
    assets: tuple[str, ...] = ()  # scheduled when all these assets were updated
    timezone: str = "UTC"
    start_date: datetime | None = None
    catchup: bool = False
    max_active_runs: int = 16
    max_active_tasks: int | None = None
    tags: tuple[str, ...] = ()
    description: str | None = None
    owner: str | None = None
    #: a run still unfinished this many seconds after it started fails, its attempts stopped
    timeout: float | None = None
    #: a failed run runs its failed tasks again this many times (succeeded ones are kept)
    retries: int = 0
    retry_delay: float = 0.0
    on_retry: Callable[..., Any] | None = None  # called when a failed run is retried
    on_success: Callable[..., Any] | None = None  # called once when a run succeeds
    on_failure: Callable[..., Any] | None = None  # called once when a run fails
    alerts: tuple[Rule, ...] = ()  # alert rules declared with the pipeline
    source_file: str | None = None
    defined_at: str = ""
    code_hash: str = ""
    leaves: tuple[str, ...] = field(default=())

    def task(self, task_id: str) -> TaskSpec:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise unknown_task(self, task_id) from None


def unknown_task(spec: PipelineSpec, task_id: str) -> TaskNotFound:
    hint = did_you_mean(task_id, spec.tasks, "its tasks")
    return TaskNotFound(f"pipeline '{spec.name}' has no task '{task_id}'{hint}")
