"""Attempt effects: what a task asks phloem to record while it runs (a metric, a watermark
advance, an asset event, an alias move), committed by the store in the same transaction as
the end of that attempt.

Tasks run at least once but their effects must commit exactly once: an effect recorded by an
attempt that then fails, is killed or was already superseded (a zombie) never reaches the
store, and one recorded by the attempt that succeeds lands atomically with its success. Some
effects (metrics) are worth keeping from a failed attempt too; they say so with
``on_success_only = False`` and are committed with the attempt's end, whatever it was.

An effect is plain, picklable data: it travels from a worker process to the driver inside
the attempt's result. The store knows how to write each kind (``phloem.store.effects``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar

from phloem.errors import PhloemError


@dataclass(frozen=True, slots=True)
class Effect:
    """Base of every effect kind."""

    #: committed only with the attempt's success (else with its end, whatever it was)
    on_success_only: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class AttemptEffects:
    """The effects one attempt recorded, in the order it recorded them."""

    task_id: str
    map_index: int
    try_number: int
    effects: tuple[Effect, ...]


@dataclass(frozen=True, slots=True)
class MetricLogged(Effect):
    """``phloem.log_metric``: one value of a numeric metric (``step`` for a series, such as
    a training curve). Kept from failed attempts too: they explain the failure."""

    on_success_only: ClassVar[bool] = False
    key: str
    value: float
    step: int | None
    at: float


@dataclass(frozen=True, slots=True)
class ParamLogged(Effect):
    """``phloem.log_param``: a parameter the attempt used, as JSON text (the last value of a
    key wins)."""

    on_success_only: ClassVar[bool] = False
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class WatermarkAdvanced(Effect):
    """``wm.advance(value)``: move watermark ``name`` to ``value`` (typed text, see
    ``phloem.watermark_values``) when the attempt succeeds. ``read_version`` is the version
    the task read (0: none yet); the store re-checks the move against the value it holds then,
    as another run may have advanced it meanwhile."""

    name: str
    kind: str
    value: str
    read_version: int
    force: bool = False


@dataclass(frozen=True, slots=True)
class AssetEmitted(Effect):
    """``phloem.emit(Asset(...))``: an event of ``asset`` (with JSON ``metadata``) when the
    attempt succeeds, which starts the pipelines scheduled on that asset."""

    asset: str
    metadata: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptUsage(Effect):
    """What the attempt cost, as the executor measured it, and the memory it was allowed:
    kept with the attempt however it ended. ``gpu_seconds`` is GPU time *reserved*: the GPUs
    Ray gave the attempt's worker times the attempt's wall time, whether or not the task kept
    them busy (None: no GPU held, or not on Ray)."""

    on_success_only: ClassVar[bool] = False
    cpu_seconds: float
    peak_rss: int | None
    memory_limit: int | None
    gpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ArtifactRecorded(Effect):
    """An artifact the task stored besides its output (a validation or drift report),
    recorded with its role for lineage. Kept from failed attempts too: a failed validation's
    report says why it failed."""

    on_success_only: ClassVar[bool] = False
    digest: str
    serializer: str
    type_name: str
    size: int
    key: str
    role: str


@dataclass(frozen=True, slots=True)
class OutputMetadataKept(Effect):
    """Metadata of the attempt's output, or of one value of it (``phloem.Output``, a data
    frame's row count and schema): ``path`` is a JSON list of keys (``"[]"``: the whole
    output), ``digest`` the artifact holding the value (None: kept inline)."""

    path: str
    digest: str | None
    metadata: str  # a JSON object


@dataclass(frozen=True, slots=True)
class ModelVersionReady(Effect):
    """``phloem.models.register`` in a task: the version it allocated (pending, tied to this
    attempt) becomes usable when the attempt succeeds; ``uses`` are (digest, role) pairs of
    the model (``model``) and its evaluation data (``input``), the attempt's lineage."""

    name: str
    version: int
    uses: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ModelAliasMoved(Effect):
    """``phloem.models.set_alias`` in a task: the alias moves when the attempt succeeds."""

    name: str
    alias: str
    version: int
    reason: str | None
    who: str
    at: float


@dataclass(frozen=True, slots=True)
class ModelDecided(Effect):
    """``phloem.models.register_if_better`` in a task: its decision and reason, as JSON."""

    name: str
    decision: str
    at: float


_pending: ContextVar[list[Effect] | None] = ContextVar("phloem_attempt_effects", default=None)


def record(effect: Effect, *, what: str = "this") -> None:
    """Record ``effect`` for the attempt running now; ``what`` names the caller's function
    in the error raised outside a task."""
    pending = _pending.get()
    if pending is None:
        raise PhloemError(
            f"{what} only works while a task runs (it is recorded with the task's attempt "
            "and committed when the attempt ends); call it from inside a @task function"
        )
    pending.append(effect)


def recording() -> bool:
    """Whether an attempt is collecting effects in this context."""
    return _pending.get() is not None


@contextmanager
def collect() -> Iterator[list[Effect]]:
    """Collect the effects recorded in this context (the runner wraps each attempt in it)."""
    pending: list[Effect] = []
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)


__all__ = [
    "ArtifactRecorded",
    "AssetEmitted",
    "AttemptEffects",
    "AttemptUsage",
    "Effect",
    "MetricLogged",
    "OutputMetadataKept",
    "ModelAliasMoved",
    "ModelDecided",
    "ModelVersionReady",
    "ParamLogged",
    "WatermarkAdvanced",
    "collect",
    "record",
    "recording",
]
