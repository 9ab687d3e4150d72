"""Property tests of the reopen plan (retry, ``--task T --downstream``, backfill reruns) over
random pipelines and random instance states: pure, so no store is needed."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

import phloem
from phloem.engine.model import TI
from phloem.engine.reopen import plan_reopen
from phloem.states import TaskState
from strategies import DagPlan, build_pipeline, dag_plans, descendants

S = TaskState
RESETTABLE = {S.FAILED, S.UPSTREAM_FAILED, S.SUCCESS, S.SKIPPED, S.CACHED}


@st.composite
def reopen_cases(draw: st.DrawFn) -> tuple[DagPlan, list[TI], str | None, bool, bool]:
    plan = draw(dag_plans(max_tasks=6))
    instances = []
    for tp in plan.tasks:
        indexes = list(range(draw(st.integers(0, 3)))) if tp.mapped else [-1]
        for i in indexes:
            tries = draw(st.integers(0, 3))
            state = draw(st.sampled_from(list(S)))
            instances.append(
                replace(TI(task_id=tp.name, map_index=i), state=state, try_number=tries)
            )
    task = draw(st.one_of(st.none(), st.sampled_from([tp.name for tp in plan.tasks])))
    return plan, instances, task, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=150, deadline=None)
@given(case=reopen_cases())
def test_a_reopen_plan_resets_only_what_was_asked_and_keeps_try_counts(
    case: tuple[DagPlan, list[TI], str | None, bool, bool],
) -> None:
    plan, instances, task, downstream, everything = case
    spec = build_pipeline(plan).spec
    result = plan_reopen(instances, spec, task=task, downstream=downstream, everything=everything)
    remapped = {p.task_id for p in result.placeholders}
    reset_keys = [old.key for old, _ in result.resets]
    assert len(reset_keys) == len(set(reset_keys))  # each instance at most once
    for old, new in result.resets:
        assert old in instances and old.state in RESETTABLE
        assert old.task_id not in remapped  # its placeholder replaces it instead
        assert new.key == old.key and new.state is S.PENDING
        assert new.try_number == old.try_number == new.retry_base
        assert new.output is None and new.error is None and new.first_started_at is None
    for p in result.placeholders:
        assert spec.tasks[p.task_id].is_mapped and p.map_index == -1 and p.state is S.PENDING
        tries = [ti.try_number for ti in instances if ti.task_id == p.task_id]
        assert p.try_number == max(tries, default=0) == p.retry_base

    touched = {t for t, _ in reset_keys} | remapped
    if everything:
        allowed = set(spec.tasks)
    elif task is None:
        allowed = {ti.task_id for ti in instances if ti.state in (S.FAILED, S.UPSTREAM_FAILED)}
        assert not remapped
    else:
        allowed = {task} | (descendants(spec, task) if downstream else set())
    assert touched <= allowed
    # nothing asked for is left out: each resettable instance in scope is reset or remapped
    for ti in instances:
        in_scope = ti.task_id in allowed and ti.state in RESETTABLE
        if task is None and not everything:
            in_scope = ti.state in (S.FAILED, S.UPSTREAM_FAILED)
        if in_scope:
            assert ti.key in reset_keys or ti.task_id in remapped


@settings(max_examples=100, deadline=None)
@given(case=reopen_cases())
def test_retrying_twice_resets_nothing_the_second_time(
    case: tuple[DagPlan, list[TI], str | None, bool, bool],
) -> None:
    plan, instances, _, _, _ = case
    spec = build_pipeline(plan).spec
    first = plan_reopen(instances, spec)
    after = {ti.key: ti for ti in instances}
    after.update({new.key: new for _, new in first.resets})
    again = plan_reopen(list(after.values()), spec)
    assert again.empty


@phloem.task
def make() -> list[int]:
    return [1, 2]


@phloem.task
def other() -> None:
    return None


@phloem.task
def each(x: int) -> int:
    return x


@phloem.pipeline
def two_roots() -> None:
    o = other()
    o >> each.expand(x=make())


def test_rerunning_everything_expands_a_mapped_task_again_and_resets_none_of_its_instances() -> (
    None
):
    """Walking down from ``other`` alone would reset ``each``'s instances one by one; walking
    down from ``make`` expands ``each`` again: it is expanded again, and nothing else."""
    done = [
        replace(TI(task_id=t, map_index=i), state=S.SUCCESS, try_number=1)
        for t, i in (("make", -1), ("other", -1), ("each", 0), ("each", 1))
    ]
    result = plan_reopen(done, two_roots.spec, everything=True)
    assert sorted(old.task_id for old, _ in result.resets) == ["make", "other"]
    assert [p.task_id for p in result.placeholders] == ["each"]
