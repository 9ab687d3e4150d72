"""What the store takes and returns besides domain records: commit requests, what a commit
applied, history rows and artifact records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phloem.effects import AttemptEffects
from phloem.records import Expansion, Key, Transition
from phloem.states import RunState
from phloem.store.cache_records import CacheCheck, CacheEntry

if TYPE_CHECKING:
    from phloem.store.read_types import AttemptRow as AttemptRow
    from phloem.store.read_types import EventRow as EventRow
    from phloem.store.read_types import InstanceInfo as InstanceInfo
    from phloem.store.read_types import MetadataRow as MetadataRow
    from phloem.store.read_types import PipelineInfo as PipelineInfo
    from phloem.store.read_types import PipelineRow as PipelineRow
    from phloem.store.read_types import UseRow as UseRow

#: the readers' rows, in ``read_types``: made when first asked for (a run asks for none)
_READ_TYPES = frozenset(
    {
        "AttemptRow",
        "EventRow",
        "InstanceInfo",
        "MetadataRow",
        "PipelineInfo",
        "PipelineRow",
        "UseRow",
    }
)


def __getattr__(name: str) -> Any:
    if name in _READ_TYPES:
        from phloem.store import read_types

        return getattr(read_types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
