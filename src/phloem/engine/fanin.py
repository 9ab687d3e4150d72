"""Fan-in tallies: for every task, its upstream instances counted by state.

A trigger rule reads only how many upstream instances are in each state. Keeping those counts
up to date as instances change (a change touches the changed task's direct downstream tasks,
nothing more) makes deciding a fan-in over fifty thousand upstream tasks cost the same per
turn as one over two; summing the upstream counts on every turn made a wide fan-in quadratic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from phloem.dsl.spec import PipelineSpec
from phloem.states import TaskState


@dataclass(frozen=True, slots=True)
class Edges:
    """The graph's edges the tallies follow, derived once per snapshot (O(edges))."""

    #: task -> the tasks that list it upstream (data or ordering edge)
    downstream: Mapping[str, tuple[str, ...]]
    #: task -> the tasks that read its output
    data_downstream: Mapping[str, tuple[str, ...]]
    #: task -> its upstream tasks that are branches
    branch_upstream: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, spec: PipelineSpec) -> Edges:
        down: dict[str, list[str]] = {t: [] for t in spec.tasks}
        data_down: dict[str, list[str]] = {t: [] for t in spec.tasks}
        branches: dict[str, tuple[str, ...]] = {}
        for t in spec.tasks.values():
            for up in dict.fromkeys(t.upstream):
                down[up].append(t.task_id)
            for up in dict.fromkeys(t.data_upstream):
                data_down[up].append(t.task_id)
            branches[t.task_id] = tuple(u for u in t.upstream if spec.tasks[u].is_branch)
        return cls(
            downstream={t: tuple(d) for t, d in down.items()},
            data_downstream={t: tuple(d) for t, d in data_down.items()},
            branch_upstream=branches,
        )


class UpstreamCounts:
    """Per task: its upstream instances by state, their number, how many of them have ended,
    and how many instances of the tasks whose output it reads have not ended. Also used as a
    signed delta (an overlay)."""

    __slots__ = ("data_unfinished", "edges", "ended", "states", "total")

    def __init__(self, edges: Edges) -> None:
        self.edges = edges
        self.states: dict[str, Counter[TaskState]] = {}
        self.total: Counter[str] = Counter()
        #: upstream instances in a terminal state: a task none of whose upstream instances has
        #: ended cannot be triggered, which each turn checks for every pending task
        self.ended: Counter[str] = Counter()
        self.data_unfinished: Counter[str] = Counter()

    def add(self, task_id: str, state: TaskState, n: int = 1) -> None:
        """``n`` instances of ``task_id`` in ``state`` appeared (or, negative, went away)."""
        terminal = state.is_terminal
        for d in self.edges.downstream[task_id]:
            c = self.states.get(d)
            if c is None:
                c = self.states[d] = Counter()
            c[state] += n
            self.total[d] += n
            if terminal:
                self.ended[d] += n
        if not terminal:
            for d in self.edges.data_downstream[task_id]:
                self.data_unfinished[d] += n

    def move(self, task_id: str, old: TaskState, new: TaskState) -> None:
        """One instance of ``task_id`` went from ``old`` to ``new``."""
        if old is new:
            return
        ended = int(new.is_terminal) - int(old.is_terminal)
        for d in self.edges.downstream[task_id]:
            c = self.states.get(d)
            if c is None:
                c = self.states[d] = Counter()
            c[old] -= 1
            c[new] += 1
            if ended:
                self.ended[d] += ended
        if ended:
            for d in self.edges.data_downstream[task_id]:
                self.data_unfinished[d] -= ended

    def counts(self, task_id: str, delta: UpstreamCounts | None = None) -> Counter[TaskState]:
        """Upstream instances of ``task_id`` by state, this tally plus ``delta``."""
        base = self.states.get(task_id)
        extra = delta.states.get(task_id) if delta is not None else None
        out: Counter[TaskState] = Counter(base) if base else Counter()
        if extra:
            for s, n in extra.items():
                out[s] += n
        return out
