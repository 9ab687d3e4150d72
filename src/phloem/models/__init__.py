"""``phloem.models``: the model registry. Versions of named models, stored as artifacts and
linked to the run and task that made them; aliases (``production``, ``champion``) with a
history of every move; promotion only when a candidate beats the champion on the same data.

Inside a task, a registered version is allocated at once (its number is returned) but becomes
usable only when the task's attempt succeeds; an alias moved from a task moves then too. A
task that fails, or an attempt that was superseded, leaves no usable version behind, and its
retry registers cleanly. Outside a task (a notebook, a script) everything happens at once, in
the store of ``app`` (a :class:`phloem.app.Phloem`) or the configured one.

    v = phloem.models.register("fraud", model, metrics={"auc": 0.91}, eval_data=test_df)
    phloem.models.set_alias("fraud", v, "production", reason="beats v3 on May data")
    model = phloem.models.load("fraud@production")
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from phloem.context import current
from phloem.errors import PhloemError
from phloem.models.decision import Decision
from phloem.models.refs import ModelRef, parse
from phloem.models.registry import Registry, attempt_label, user
from phloem.store.models import AliasMove, ModelSummary, ModelVersion

if TYPE_CHECKING:
    from phloem.app import Phloem

__all__ = [
    "AliasMove",
    "Decision",
    "ModelRef",
    "ModelSummary",
    "ModelVersion",
    "aliases",
    "get",
    "history",
    "list_models",
    "load",
    "parse",
    "register",
    "register_if_better",
    "rollback",
    "set_alias",
    "versions",
]


@contextmanager
def registry(app: Phloem | None = None, *, who: str | None = None) -> Iterator[Registry]:
    """The registry to act on: the running task's store (its attempt acting), else ``app``'s,
    else the configured one (opened for this call)."""
    ctx = current()
    if ctx is not None and app is None:
        from phloem.variables import run_store

        store = run_store("models registered from tasks")  # says what to do on a private store
        if ctx.artifacts is None:
            raise PhloemError("phloem.models needs the run's artifact store, which this task lacks")
        label = f"{ctx.pipeline} {attempt_label(ctx)}"
        yield Registry(store, ctx.artifacts, who or label, attempt=ctx)
        return
    if app is not None:
        yield Registry(app.store, app.artifacts, who or user())
        return
    from phloem.app import Phloem
    from phloem.config import Settings

    with Phloem(Settings.from_env()) as opened:
        yield Registry(opened.store, opened.artifacts, who or user())


def register(
    name: str,
    model: Any,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    eval_data: Any = None,
    description: str | None = None,
    format: str | None = None,
    app: Phloem | None = None,
) -> int:
    """Register ``model`` as the next version of ``name`` and return its number.

    ``eval_data`` (a data frame, array, or an artifact reference) is what ``metrics`` were
    measured on; its content hash lets ``register_if_better`` compare like with like.
    ``format``: ``joblib`` (default), ``xgboost`` / ``lightgbm`` (their own model files, the
    default for their models), ``skops`` or ``pickle``.
    """
    with registry(app) as r:
        return r.register(
            name,
            model,
            metrics=metrics,
            params=params,
            tags=tags,
            eval_data=eval_data,
            description=description,
            format=format,
        )


def register_if_better(
    name: str,
    model: Any,
    *,
    metric: str,
    higher_is_better: bool = True,
    min_delta: float = 0.0,
    eval_data: Any = None,
    alias: str = "champion",
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    allow_different_eval: bool = False,
    description: str | None = None,
    format: str | None = None,
    app: Phloem | None = None,
) -> Decision:
    """Register ``model`` and point ``alias`` at it only if its ``metric`` beats the current
    holder of ``alias`` by more than ``min_delta`` on the same evaluation data (no holder yet:
    it is promoted). The decision and its reason are recorded; the returned
    :class:`Decision` is true when promoted. Metrics measured on different data are refused
    (EvalDataMismatch) unless ``allow_different_eval``."""
    with registry(app) as r:
        return r.register_if_better(
            name,
            model,
            metric=metric,
            higher_is_better=higher_is_better,
            min_delta=min_delta,
            eval_data=eval_data,
            alias=alias,
            metrics=metrics,
            params=params,
            tags=tags,
            allow_different_eval=allow_different_eval,
            description=description,
            format=format,
        )


def load(ref: str, *, app: Phloem | None = None) -> Any:
    """The model ``ref`` names: ``"fraud"`` (latest), ``"fraud:3"``, ``"fraud@production"``.
    In a task, the version read enters the task's lineage."""
    with registry(app) as r:
        return r.load(ref)


def get(ref: str, *, app: Phloem | None = None) -> ModelVersion:
    """The registered version ``ref`` names, with its metrics, params, tags and origin."""
    with registry(app) as r:
        return r.resolve(ref)


def set_alias(
    name: str,
    version: int,
    alias: str,
    *,
    reason: str | None = None,
    app: Phloem | None = None,
) -> AliasMove | None:
    """Point ``alias`` at ``version`` and append the move (who, when, why) to its history.
    In a task the move happens when the task succeeds (None is returned)."""
    with registry(app) as r:
        return r.set_alias(name, version, alias, reason=reason)


def rollback(
    name: str, alias: str, *, reason: str | None = None, app: Phloem | None = None
) -> AliasMove:
    """Move ``alias`` back to the version it pointed at before (recorded as a move)."""
    if current() is not None and app is None:
        raise PhloemError("phloem.models.rollback is for people, outside tasks; use set_alias")
    with registry(app) as r:
        return r.rollback(name, alias, reason=reason)


def versions(name: str, *, app: Phloem | None = None) -> list[ModelVersion]:
    """The usable versions of ``name``, oldest first."""
    with registry(app) as r:
        return r.store.models.versions(name)


def aliases(name: str, *, app: Phloem | None = None) -> dict[str, int]:
    """``name``'s aliases and the version each points at."""
    with registry(app) as r:
        return r.store.models.aliases(name)


def history(name: str, alias: str | None = None, *, app: Phloem | None = None) -> list[AliasMove]:
    """Every move of ``name``'s aliases (or of one), oldest first."""
    with registry(app) as r:
        return r.store.models.alias_history(name, alias)


def list_models(*, app: Phloem | None = None) -> list[ModelSummary]:
    """Every registered model: its latest version, how many, its aliases."""
    with registry(app) as r:
        return r.store.models.names()
