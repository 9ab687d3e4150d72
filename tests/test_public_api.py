"""The public API is what ``phloem.__all__`` says, no more and no less, and every error a user
can catch is in it, placed in the tree that ``phloem.errors`` documents."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys

import phloem
import phloem.errors
from phloem.errors import PhloemError

#: the exported names, by topic; a change here is a change of the public API (CHANGELOG it)
PUBLIC = {
    "authoring": {
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
    },
    "inside a task": {
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
    },
    "models": {"models"},
    "configuration and secrets": {"Connection", "connection", "tasks", "variable"},
    "running": {"RunResult", "RunState", "TaskState", "retry", "run"},
    "errors": {
        "AccountError",
        "AccountNotFound",
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
        "LastAdmin",
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
    },
}


def test_the_exported_names_are_exactly_the_public_api() -> None:
    assert len(phloem.__all__) == len(set(phloem.__all__)), "a name is exported twice"
    assert set(phloem.__all__) == set().union(*PUBLIC.values())


def test_every_exported_name_resolves() -> None:
    for name in phloem.__all__:
        assert getattr(phloem, name) is not None, name
        assert name in dir(phloem), name


def test_star_import_gives_every_name_in_a_fresh_interpreter() -> None:
    code = "from phloem import *; import phloem; print(all(n in globals() for n in phloem.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr


def _all_modules() -> list[str]:
    """Every phloem module but the migration scripts (Alembic runs those) and ``__main__``."""
    names = []
    for info in pkgutil.walk_packages(phloem.__path__, "phloem."):
        if ".migrations" not in info.name and not info.name.endswith("__main__"):
            names.append(info.name)
            importlib.import_module(info.name)
    return names


def _error_classes() -> set[type[PhloemError]]:
    found: set[type[PhloemError]] = set()
    todo = [PhloemError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("phloem.") and not cls.__name__.startswith("_"):
            found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_a_user_can_catch_is_exported_from_phloem_errors() -> None:
    assert len(_all_modules()) > 50
    for cls in _error_classes():
        where = f"{cls.__module__}.{cls.__qualname__}"
        assert cls.__module__ == "phloem.errors", f"{where}: define it in phloem.errors"
        assert getattr(phloem, cls.__name__, None) is cls, f"{where} is not exported by phloem"
        assert cls.__name__ in PUBLIC["errors"], where


def _documented_tree() -> dict[str, str]:
    """child -> parent, read from the drawing in phloem.errors' docstring."""
    doc = phloem.errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        m = re.match(r"^[\s|]*(\+-- )?([A-Z]\w*)", line)
        if m is None or not (m.group(1) or m.group(2) == "PhloemError"):
            continue
        depth, name = m.start(2), m.group(2)  # the column a name starts at is its depth
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_the_documented_error_tree_is_the_real_one() -> None:
    documented = _documented_tree()
    assert documented, "no tree found in phloem.errors' docstring"
    real = {cls.__name__: cls.__bases__[0].__name__ for cls in _error_classes()}
    real.pop("PhloemError", None)
    assert documented == real
