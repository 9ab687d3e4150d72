"""Which task instances a retry or a backfill rerun resets: pure, so the store applies the whole
plan in one transaction and tests check it without a database.

``phloem retry RUN`` resets the failed instances; ``--task T`` resets T, and with
``--downstream`` everything after it; a rerun of the whole run resets every instance. A mapped
task whose input is reset is expanded again from scratch (its instances are replaced by one
placeholder), since the new input may have another length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from phloem.dsl.spec import PipelineSpec
from phloem.engine.model import TI, Key
from phloem.states import TaskState

S = TaskState

_RESETTABLE = frozenset({S.FAILED, S.UPSTREAM_FAILED, S.SUCCESS, S.SKIPPED, S.CACHED})


@dataclass(frozen=True, slots=True)
class ReopenPlan:
    #: (current, reset) pairs, applied as compare-and-sets
    resets: tuple[tuple[TI, TI], ...]
    #: one placeholder per mapped task to expand again (its instances are replaced)
    placeholders: tuple[TI, ...]

    @property
    def empty(self) -> bool:
        return not (self.resets or self.placeholders)


def plan_reopen(
    instances: Sequence[TI],
    spec: PipelineSpec,
    *,
    task: str | None = None,
    downstream: bool = False,
    everything: bool = False,
) -> ReopenPlan:
    """The failed instances (or ``task`` and, with ``downstream``, all after it, or
    ``everything``) reset to pending, keeping their try counts."""
    if task is not None:
        spec.task(task)  # an unknown task is an error that names the known ones
    if everything:
        resets: dict[Key, tuple[TI, TI]] = {}
        remap: set[str] = set()
        for root in (t for t, ts in spec.tasks.items() if not ts.upstream):
            r, m = _plan(instances, spec, root, True)
            resets.update({old.key: (old, new) for old, new in r})
            remap |= m
        # a mapped task one root's walk resets and another's expands again is expanded again
        reset_list = [pair for pair in resets.values() if pair[0].task_id not in remap]
    else:
        reset_list, remap = _plan(instances, spec, task, downstream)
    placeholders = []
    for task_id in sorted(remap):
        tries = max((ti.try_number for ti in instances if ti.task_id == task_id), default=0)
        placeholders.append(TI(task_id=task_id, try_number=tries, retry_base=tries))
    return ReopenPlan(tuple(reset_list), tuple(placeholders))


def _plan(
    instances: Sequence[TI], spec: PipelineSpec, task: str | None, downstream: bool
) -> tuple[list[tuple[TI, TI]], set[str]]:
    if task is not None:
        chosen = {task}
        if downstream:
            frontier = [task]
            while frontier:
                for d in spec.tasks[frontier.pop()].downstream:
                    if d not in chosen:
                        chosen.add(d)
                        frontier.append(d)
        targets = [ti for ti in instances if ti.task_id in chosen]
    else:
        chosen = set()
        targets = [ti for ti in instances if ti.state in (S.FAILED, S.UPSTREAM_FAILED)]
    remap = {
        t
        for t in chosen
        if spec.tasks[t].is_mapped
        and (any(u in chosen for u in spec.tasks[t].data_upstream) or t == task)
    }
    resets = [
        (ti, _reset(ti)) for ti in targets if ti.task_id not in remap and ti.state in _RESETTABLE
    ]
    return resets, remap


def _reset(ti: TI) -> TI:
    return replace(
        ti,
        state=S.PENDING,
        retry_base=ti.try_number,
        first_started_at=None,  # a sensor's time limit starts again
        next_try_at=None,
        started_at=None,
        ended_at=None,
        output=None,
        error=None,
        follow=None,
        map_length=None,
    )


__all__ = ["ReopenPlan", "plan_reopen"]
