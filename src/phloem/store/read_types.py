"""The rows the store's readers hand out: attempts and events of a run, pipelines as discovery
found them, and what lineage shows. Apart from ``types`` (which still gives these names) so that
a run, which builds none of them, does not create their classes: each frozen dataclass costs
some half a millisecond to make at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phloem.states import AttemptState


@dataclass(frozen=True, slots=True)
class EventRow:
    task_id: str | None
    map_index: int | None
    try_number: int | None
    old_state: str | None
    new_state: str
    at: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    task_id: str
    map_index: int
    try_number: int
    state: AttemptState
    queued_at: float | None
    started_at: float | None
    ended_at: float | None
    error: str | None
    worker: str | None = None  # where it ran (host:pid), when the executor said
    cpu_seconds: float | None = None  # what it cost, where the executor measured it
    peak_rss: int | None = None  # bytes
    memory_limit: int | None = None  # bytes it was allowed (None: no limit)
    gpu_seconds: float | None = None  # GPUs reserved for it (on Ray) times its wall time


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    """A pipeline as discovery found it in a file."""

    name: str
    file: str
    code_hash: str
    schedule: str | None
    timezone: str
    start_date: str | None
    catchup: bool
    max_active_runs: int
    assets: tuple[str, ...]
    tasks: int = 0
    owner: str | None = None
    tags: tuple[str, ...] = ()
    description: str | None = None


@dataclass(frozen=True, slots=True)
class PipelineRow:
    info: PipelineInfo
    paused: bool
    active: bool
    last_parsed_at: float | None


@dataclass(frozen=True, slots=True)
class MetadataRow:
    """Metadata kept with an output (``path`` as in :class:`OutputMetadata`)."""

    run_id: str
    task_id: str
    map_index: int
    path: str
    try_number: int
    digest: str | None
    metadata: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class UseRow:
    """One artifact written (``role`` "output") or read ("input") by a task instance."""

    digest: str
    run_id: str
    task_id: str
    map_index: int
    role: str
    try_number: int
    at: float

    @property
    def instance(self) -> tuple[str, str, int]:
        """(run id, task id, map index): ``types.InstanceKey``."""
        return (self.run_id, self.task_id, self.map_index)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """A task instance with what lineage shows of its run: pipeline, code version, params."""

    run_id: str
    task_id: str
    map_index: int
    state: str
    try_number: int
    output: str | None  # the stored output (JSON text), for the files it names
    pipeline: str
    logical_date: str
    code_hash: str | None
    params: dict[str, Any]
    run_state: str


__all__ = [
    "AttemptRow",
    "EventRow",
    "InstanceInfo",
    "MetadataRow",
    "PipelineInfo",
    "PipelineRow",
    "UseRow",
]
