"""What the engine reads and writes: task instances, facts from executors, and transitions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from phloem.dsl.spec import PipelineSpec
from phloem.engine.fanin import Edges, UpstreamCounts
from phloem.records import TI, Expansion, Key, Transition, expansion_instances
from phloem.states import (
    ACTIVE_TASK_STATES,
    TERMINAL_TASK_STATES,
    AttemptOutcome,
    RunState,
    TaskState,
)

__all__ = ["TI", "Expansion", "Key", "Transition", "expansion_instances"]


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    key: Key
    try_number: int
    at: float


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """An attempt ended (how: ``outcome``); reported by the executor that ran it."""

    key: Key
    try_number: int
    outcome: AttemptOutcome
    at: float
    output: Any = None
    map_length: int | None = None
    follow: tuple[str, ...] | None = None
    error: str | None = None
    retryable: bool = True


Event = AttemptStarted | AttemptFinished


@dataclass(frozen=True, slots=True)
class CacheHit:
    """The driver found a ready instance's output in the cache: the instance is ``cached``
    with that output instead of running (``reason`` names where the output came from)."""

    key: Key
    output: Any
    map_length: int | None = None
    follow: tuple[str, ...] | None = None
    reason: str = "cache hit"


@dataclass(frozen=True, slots=True)
class Kill:
    key: Key
    try_number: int
    reason: str


@dataclass(frozen=True, slots=True)
class Capacity:
    """Slots the engine may fill: the executor's total, each pool's size (pools without an
    entry are unbounded), and the pool slots held by attempts of runs decided elsewhere (other
    schedulers'). The engine subtracts what the runs it decides already hold."""

    slots: int = 1_000_000
    pools: Mapping[str, int] | None = None
    held_elsewhere: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    transitions: tuple[Transition, ...] = ()
    expansions: tuple[Expansion, ...] = ()
    kills: tuple[Kill, ...] = ()
    run_state: RunState | None = None
    wake_at: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.transitions or self.expansions or self.kills or self.run_state)


@dataclass
class Snapshot:
    """A run's instances with the indexes the engine needs to decide without scanning.

    Mutated only through ``apply_*`` (by the driver, after the store committed the change), so
    every decision sees the committed truth.
    """

    spec: PipelineSpec
    run_id: str
    run_state: RunState
    params: dict[str, Any]
    tis: dict[Key, TI] = field(default_factory=dict)
    indexes: dict[str, list[int]] = field(default_factory=dict)
    counts: dict[str, Counter[TaskState]] = field(default_factory=dict)
    by_state: dict[TaskState, dict[Key, None]] = field(default_factory=dict)
    #: per task, its upstream instances by state (see ``fanin``); set by ``build``
    upstream: UpstreamCounts = field(default_factory=lambda: UpstreamCounts(Edges({}, {}, {})))
    #: every task has the same priority, so ready instances go first come, first served
    uniform_priority: bool = True
    #: when the run (last) started running; None while it waits
    started_at: float | None = None
    #: how many times the pipeline's ``retries`` ran this run's failed tasks again
    run_retries: int = 0
    #: tasks whose instances go to workers in batches: task -> instances per batch (> 1);
    #: a batch takes one executor slot (see ``ready``)
    batch: dict[str, int] = field(default_factory=dict)
    #: per state, keys deleted from its index since it was last copied (see ``_drop``)
    _deleted: dict[TaskState, int] = field(default_factory=dict)
    #: the tasks a draft must look at again (see ``dirty``): every task at first
    _dirty: dict[str, None] = field(init=False)

    def __post_init__(self) -> None:
        self._dirty = dict.fromkeys(self.spec.tasks)

    @classmethod
    def build(
        cls,
        spec: PipelineSpec,
        run_id: str,
        run_state: RunState,
        params: dict[str, Any],
        instances: Iterable[TI],
    ) -> Snapshot:
        snap = cls(spec, run_id, run_state, params)
        snap.by_state = {s: {} for s in TaskState}
        snap.uniform_priority = len({t.options.priority for t in spec.tasks.values()}) <= 1
        snap.counts = {t: Counter() for t in spec.tasks}
        snap.indexes = {t: [] for t in spec.tasks}
        snap.upstream = UpstreamCounts(Edges.of(spec))
        snap.batch = {
            t.task_id: t.options.batch_size
            for t in spec.tasks.values()
            if t.options.batch_size and t.options.batch_size > 1 and t.options.sensor is None
        }
        for ti in sorted(instances, key=lambda t: t.map_index):
            if ti.task_id not in spec.tasks:
                continue  # a task removed from the code since the run started
            snap._add(ti)
        # the tasks with a pending instance: no rule has been applied to them yet
        snap._dirty = dict.fromkeys(k[0] for k in snap.by_state[TaskState.PENDING])
        return snap

    def _add(self, ti: TI) -> None:
        self.tis[ti.key] = ti
        self.indexes[ti.task_id].append(ti.map_index)
        self.counts[ti.task_id][ti.state] += 1
        self.by_state[ti.state][ti.key] = None
        self.upstream.add(ti.task_id, ti.state)
        self._touch(ti, True)

    def _remove(self, ti: TI) -> None:
        del self.tis[ti.key]
        self.indexes[ti.task_id].remove(ti.map_index)
        self.counts[ti.task_id][ti.state] -= 1
        self._drop(ti.state, ti.key)
        self.upstream.add(ti.task_id, ti.state, -1)
        self._touch(ti, True)

    def put(self, ti: TI) -> None:
        old = self.tis[ti.key]
        if old.state is not ti.state:
            self.counts[ti.task_id][old.state] -= 1
            self.counts[ti.task_id][ti.state] += 1
            self._drop(old.state, ti.key)
            self.by_state[ti.state][ti.key] = None
            self.upstream.move(ti.task_id, old.state, ti.state)
        self.tis[ti.key] = ti
        self._touch(ti, old.state in TERMINAL_TASK_STATES or ti.state in TERMINAL_TASK_STATES)

    def _touch(self, ti: TI, moved: bool) -> None:
        """Mark the tasks whose trigger a change of ``ti`` may decide: its task's downstream
        tasks when ``moved`` (the tasks that read its output are among them), and its own task
        when ``ti`` is pending. Trigger rules, branches and mapping read only how upstream
        instances ended (and how many there are), so a change that neither ends an instance
        nor touches one that ended (scheduled to queued to running) moves nothing."""
        dirty = self._dirty
        if moved:
            for d in self.upstream.edges.downstream[ti.task_id]:
                dirty[d] = None
        if ti.state is TaskState.PENDING:
            dirty[ti.task_id] = None

    @property
    def dirty(self) -> Mapping[str, None]:
        """The tasks a draft must look at for their trigger rules: every other task with a
        pending instance waits (its rule said wait on the snapshot as it is). A change to the
        snapshot marks the tasks it may decide; a draft that finds a task waiting, on the
        snapshot alone, ``settle``s it. So a turn looks at what changed since the last, not at
        every pending task of the run."""
        return self._dirty

    def settle(self, task_id: str) -> None:
        """``task_id`` waits on the snapshot as it is (or has no pending instance): no draft
        need look at it until a change marks it again. Only the engine calls this; it changes
        no decision, only how much a draft reads."""
        self._dirty.pop(task_id, None)

    def _drop(self, state: TaskState, key: Key) -> None:
        """Take ``key`` out of its state's index. A dict keeps the room of what was deleted
        until it grows again, and reading it from the front walks over that room: an index
        emptied from the front (100,000 scheduled instances handed out a batch at a time) is
        copied once as many were deleted as remain, so reading its head stays O(what is read)
        and the copies cost O(1) per deletion overall."""
        index = self.by_state[state]
        del index[key]
        n = self._deleted[state] = self._deleted.get(state, 0) + 1
        if n > 1024 and n > len(index):
            self.by_state[state] = dict(index)
            self._deleted[state] = 0

    def apply_transition(self, t: Transition) -> None:
        self.put(t.new)

    def apply_expansion(self, e: Expansion, now: float) -> list[TI]:
        self._remove(self.tis[e.placeholder.key])
        created = expansion_instances(e, now)
        for ti in created:
            self._add(ti)
        return created

    def instances(self, task_id: str) -> list[TI]:
        return [self.tis[(task_id, i)] for i in self.indexes[task_id]]

    def keys_in(self, *states: TaskState) -> list[Key]:
        return [k for s in states for k in self.by_state[s]]

    @property
    def active_count(self) -> int:
        return sum(len(self.by_state[s]) for s in ACTIVE_TASK_STATES)

    @property
    def unfinished(self) -> int:
        return sum(len(self.by_state[s]) for s in TaskState if not s.is_terminal)
