"""What the store takes and returns besides domain records: commit requests, what a commit
applied, history rows and artifact records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phloem.effects import AttemptEffects
from phloem.records import Expansion, Key, Transition
from phloem.states import AttemptState, RunState
from phloem.store.cache_records import CacheCheck, CacheEntry


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    digest: str
    serializer: str
    type_name: str
    size: int
    key: str


@dataclass(frozen=True, slots=True)
class ArtifactUse:
    digest: str
    task_id: str
    map_index: int
    role: str  # "output" | "input"
    try_number: int


@dataclass(frozen=True, slots=True)
class Commit:
    """One run's decision, as the store applies it."""

    run_id: str
    transitions: tuple[Transition, ...]
    expansions: tuple[Expansion, ...] = ()
    run_state: tuple[RunState, RunState] | None = None
    artifacts: tuple[ArtifactRecord, ...] = ()
    uses: tuple[ArtifactUse, ...] = ()
    asset_outputs: Mapping[str, tuple[str, ...]] | None = None
    #: what attempts recorded; each lands only if that attempt's end is among the changes
    effects: tuple[AttemptEffects, ...] = ()
    #: fencing: applied only while ``owner`` holds the run's lease, which the commit extends
    #: by ``lease_ttl`` seconds; a driver that lost its run can no longer change it
    owner: str | None = None
    lease_ttl: float = 30.0
    #: outputs to reuse later (written only if the instance's success is applied with them)
    cache_entries: tuple[CacheEntry, ...] = ()
    #: what the cache said about instances of this run
    cache_checks: tuple[CacheCheck, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.transitions
            or self.expansions
            or self.run_state
            or self.artifacts
            or self.uses
            or self.effects
            or self.cache_checks
        )


@dataclass(slots=True)
class Applied:
    """What a commit actually changed (the compare-and-sets that won)."""

    transitions: list[Transition] = field(default_factory=list)
    expansions: list[Expansion] = field(default_factory=list)
    run_state: RunState | None = None
    lost: list[Key] = field(default_factory=list)  # keys whose CAS failed
    fenced: bool = False  # the committer no longer owns the run: nothing was applied

    @property
    def complete(self) -> bool:
        return not self.lost


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
class Beat:
    """One attempt's heartbeat; ``owner`` is the lease holder of the driver that handed it
    out (None: the run has no lease, e.g. a test driving it directly)."""

    run_id: str
    task_id: str
    map_index: int
    try_number: int
    owner: str | None


#: an attempt of a run: (task id, map index, try number)
AttemptKey = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class AttemptLease:
    """What a successor needs to know of an attempt it inherits."""

    #: its last heartbeat, by the database's clock (None: it never sent one)
    heartbeat_at: float | None
    #: the lease holder of the driver that handed it out (None: unknown)
    holder: str | None


class RunIdTaken(Exception):
    """A new run's id is in use already (astronomically rare; pick another)."""


#: a task instance anywhere in the store: (run id, task id, map index)
InstanceKey = tuple[str, str, int]


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
    def instance(self) -> InstanceKey:
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
