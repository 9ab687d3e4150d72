"""The overlay a decision is made in: the snapshot plus the changes decided so far."""

from __future__ import annotations

from collections import Counter, defaultdict

from phloem.engine.fanin import UpstreamCounts
from phloem.engine.model import TI, Expansion, Key, Kill, Snapshot, Transition, expansion_instances
from phloem.states import TERMINAL_TASK_STATES, TaskState


class Work:
    """The snapshot plus the changes decided so far in this call (an overlay, never copied)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.changed: dict[Key, TI] = {}
        self.delta: defaultdict[str, Counter[TaskState]] = defaultdict(Counter)
        self.total_delta: Counter[str] = Counter()
        self.transitions: list[Transition] = []
        self.expansions: list[Expansion] = []
        self.kills: list[Kill] = []
        self.created: dict[str, list[int]] = {}
        #: the pipeline's timeout ended the run in this decision
        self.timed_out = False
        #: the overlay's changes to the snapshot's upstream tallies
        self.upstream = UpstreamCounts(snap.upstream.edges)
        #: tasks whose trigger this overlay's changes may decide (as ``Snapshot.dirty`` marks
        #: them), and the same in the order they were first marked
        self.touched: dict[str, None] = {}
        self.touch_log: list[str] = []
        self._downstream = snap.upstream.edges.downstream

    def get(self, key: Key) -> TI:
        ti = self.changed.get(key)
        return ti if ti is not None else self.snap.tis[key]

    def set(self, new: TI, reason: str | None = None) -> None:
        key = new.key
        old = self.get(key)
        self.transitions.append(Transition(old, new, reason))
        self.changed[key] = new
        was, now = old.state, new.state
        if was is not now:
            d = self.delta[new.task_id]
            d[was] -= 1
            d[now] += 1
            self.upstream.move(new.task_id, was, now)
        if was in TERMINAL_TASK_STATES or now in TERMINAL_TASK_STATES:
            self._touch_downstream(new.task_id)  # as ``Snapshot.put`` marks them
        if now is TaskState.PENDING:
            self._touch(new.task_id)

    def _touch(self, task_id: str) -> None:
        if task_id not in self.touched:
            self.touched[task_id] = None
            self.touch_log.append(task_id)

    def _touch_downstream(self, task_id: str) -> None:
        for d in self._downstream[task_id]:
            self._touch(d)

    def expand(self, placeholder: TI, count: int, now: float) -> None:
        e = Expansion(placeholder, count)
        self.expansions.append(e)
        t = placeholder.task_id
        self.delta[t][placeholder.state] -= 1
        self.total_delta[t] -= 1
        self.upstream.add(t, placeholder.state, -1)
        created = expansion_instances(e, now)
        for ti in created:
            self.changed[ti.key] = ti
            self.delta[t][ti.state] += 1
            self.total_delta[t] += 1
        for state, n in Counter(ti.state for ti in created).items():
            self.upstream.add(t, state, n)
        self.created[t] = [ti.map_index for ti in created]
        self._touch_downstream(t)

    def counts(self, task_id: str) -> Counter[TaskState]:
        base = self.snap.counts[task_id]
        d = self.delta.get(task_id)
        if not d:
            return base
        out = Counter(base)
        for s, n in d.items():
            out[s] += n
        return out

    def upstream_counts(self, task_id: str) -> tuple[Counter[TaskState], int]:
        """``task_id``'s upstream instances by state, and their number: O(states), whatever
        the fan-in's width."""
        base = self.snap.upstream
        counts = base.counts(task_id, self.upstream)
        return counts, base.total[task_id] + self.upstream.total[task_id]

    def pending(self, task_id: str) -> int:
        """How many instances of ``task_id`` are pending: O(1)."""
        n = self.snap.counts[task_id][TaskState.PENDING]
        d = self.delta.get(task_id)
        return n + d[TaskState.PENDING] if d else n

    def upstream_ended(self, task_id: str) -> int:
        """How many of ``task_id``'s upstream instances have ended: O(1)."""
        return self.snap.upstream.ended[task_id] + self.upstream.ended[task_id]

    def data_unfinished(self, task_id: str) -> int:
        """Instances of the tasks whose output ``task_id`` reads that have not ended."""
        return self.snap.upstream.data_unfinished[task_id] + self.upstream.data_unfinished[task_id]

    def indexes(self, task_id: str) -> list[int]:
        if task_id in self.created:
            return self.created[task_id]
        return self.snap.indexes[task_id]

    def keys_in(self, *states: TaskState) -> list[Key]:
        """Keys currently in ``states``: the snapshot's index corrected by the overlay."""
        wanted = set(states)
        out = [k for s in states for k in self.snap.by_state[s] if k not in self.changed]
        out.extend(k for k, ti in self.changed.items() if ti.state in wanted)
        return out


__all__ = ["Work"]
