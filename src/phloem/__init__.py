"""phloem: machine-learning pipelines as plain Python, run fast on durable state.

Importing phloem is cheap: it records definitions only. The store, executors and CLI load
when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from phloem.artifacts.output import Output
from phloem.context import TaskContext, context
from phloem.dsl import Asset, Pipeline, Resources, Task, TaskRef, group, pipeline, sensor, task
from phloem.dsl.breaker import Breaker
from phloem.dsl.cache import Cache
from phloem.errors import (
    AccountError,
    AccountNotFound,
    AlertError,
    ArtifactError,
    ArtifactNotFound,
    BadCursor,
    BreakerOpen,
    CommandFailed,
    ConditionError,
    ConnectionNotFound,
    CycleError,
    DefinitionError,
    EvalDataMismatch,
    Fail,
    GateFailed,
    LastAdmin,
    LineageError,
    ModelNotFound,
    OutputNotFound,
    ParamError,
    PhloemError,
    PipelineNotFound,
    PoolNotFound,
    RunBusy,
    RunConflict,
    RunNotFound,
    SecretError,
    SerializationError,
    ServerError,
    StoreError,
    StoreLocked,
    TaskFailed,
    TaskNotFound,
    ValidationFailed,
    VariableNotFound,
    WatermarkError,
)
from phloem.files import File
from phloem.states import RunState, TaskState, TriggerRule

if TYPE_CHECKING:
    from phloem import drift, models, outputs, tasks
    from phloem.api import RunResult, retry, run
    from phloem.breakers import breaker
    from phloem.emitting import emit
    from phloem.quality.expectations import expect
    from phloem.quality.gates import gate
    from phloem.templating import template
    from phloem.tracking import log_metric, log_metrics, log_param, log_params
    from phloem.triggering import trigger
    from phloem.variables import Connection, connection, variable
    from phloem.watermarks import watermark

__version__ = "0.1.0"

__all__ = [
    # authoring
    "Asset",
    "Breaker",
    "Cache",
    "File",
    "Pipeline",
    "Resources",
    "Task",
    "TaskRef",
    "TriggerRule",
    "group",
    "pipeline",
    "sensor",
    "task",
    # inside a task
    "Output",
    "TaskContext",
    "breaker",
    "context",
    "drift",
    "emit",
    "expect",
    "gate",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "outputs",
    "skip",
    "template",
    "trigger",
    "watermark",
    # models
    "models",
    # configuration and secrets
    "Connection",
    "connection",
    "tasks",
    "variable",
    # running
    "RunResult",
    "RunState",
    "TaskState",
    "retry",
    "run",
    # errors
    "AccountError",
    "AccountNotFound",
    "LastAdmin",
    "AlertError",
    "ArtifactError",
    "BadCursor",
    "BreakerOpen",
    "CommandFailed",
    "ConditionError",
    "ConnectionNotFound",
    "CycleError",
    "DefinitionError",
    "EvalDataMismatch",
    "Fail",
    "GateFailed",
    "ArtifactNotFound",
    "LineageError",
    "OutputNotFound",
    "ModelNotFound",
    "ParamError",
    "PhloemError",
    "PipelineNotFound",
    "PoolNotFound",
    "RunBusy",
    "RunConflict",
    "RunNotFound",
    "SecretError",
    "SerializationError",
    "ServerError",
    "StoreError",
    "StoreLocked",
    "TaskFailed",
    "TaskNotFound",
    "ValidationFailed",
    "VariableNotFound",
    "WatermarkError",
]


def skip(reason: str = "") -> None:
    """End the running task as skipped (downstream trigger rules then decide)."""
    from phloem.runner.execute import SkipTask

    raise SkipTask(reason)


def __getattr__(name: str) -> Any:
    if name in ("run", "retry", "RunResult"):
        from phloem import api

        return getattr(api, name)
    if name in ("variable", "connection", "Connection"):
        from phloem import variables

        return getattr(variables, name)
    if name in ("log_metric", "log_metrics", "log_param", "log_params"):
        from phloem import tracking

        return getattr(tracking, name)
    if name == "breaker":
        from phloem.breakers import breaker

        return breaker
    if name == "emit":
        from phloem.emitting import emit

        return emit
    if name == "watermark":
        from phloem.watermarks import watermark

        return watermark
    if name == "expect":
        from phloem.quality.expectations import expect

        return expect
    if name == "gate":
        from phloem.quality.gates import gate

        return gate
    if name == "template":
        from phloem.templating import template

        return template
    if name == "trigger":
        from phloem.triggering import trigger

        return trigger
    if name in ("tasks", "drift", "models", "outputs"):
        import importlib

        return importlib.import_module(f"phloem.{name}")
    raise AttributeError(f"module 'phloem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
