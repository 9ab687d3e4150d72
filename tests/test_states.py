"""The lifecycle table in phloem.states: complete, and consistent with what the docs promise."""

from __future__ import annotations

import pytest

from phloem.states import (
    ACTIVE_TASK_STATES,
    RUN_TRANSITIONS,
    SUCCESS_STATES,
    TASK_TRANSITIONS,
    TERMINAL_TASK_STATES,
    RunState,
    TaskState,
    TriggerRule,
    run_transition_allowed,
    task_transition_allowed,
)

S = TaskState


def _reachable(table: dict[TaskState, frozenset[TaskState]], start: TaskState) -> set[TaskState]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in table[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_transition_table_covers_every_state() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskState)
    for old, targets in TASK_TRANSITIONS.items():
        assert targets <= set(TaskState), old
        assert old not in targets, f"{old} -> {old} is not a transition"
    assert set(RUN_TRANSITIONS) == set(RunState)
    for old, run_targets in RUN_TRANSITIONS.items():
        assert run_targets <= set(RunState)
        assert old not in run_targets


def test_terminal_states_are_the_documented_ones() -> None:
    documented = {S.SUCCESS, S.FAILED, S.SKIPPED, S.UPSTREAM_FAILED, S.CACHED}
    assert documented == TERMINAL_TASK_STATES
    assert {s for s in TaskState if s.is_terminal} == documented
    assert {r for r in RunState if r.is_terminal} == {RunState.SUCCESS, RunState.FAILED}


def test_terminal_states_leave_only_through_a_clear() -> None:
    """Only a person's retry/clear (back to pending) moves a finished instance, except that a
    branch ending later skips a task that another upstream's failure had decided (Airflow's
    order of precedence, checked in test_airflow_oracle)."""
    for state in TERMINAL_TASK_STATES:
        extra = {S.SKIPPED} if state is S.UPSTREAM_FAILED else set()
        assert TASK_TRANSITIONS[state] == {S.PENDING} | extra, state


def test_every_state_is_reachable_and_can_finish() -> None:
    assert _reachable(TASK_TRANSITIONS, S.PENDING) == set(TaskState)
    for state in TaskState:
        if not state.is_terminal:
            assert _reachable(TASK_TRANSITIONS, state) & TERMINAL_TASK_STATES, state


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PENDING, S.SCHEDULED),
        (S.SCHEDULED, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.SUCCESS),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.UP_FOR_RETRY),
        (S.UP_FOR_RETRY, S.SCHEDULED),
        (S.RUNNING, S.UP_FOR_RESCHEDULE),
        (S.UP_FOR_RESCHEDULE, S.SCHEDULED),
        (S.RUNNING, S.SKIPPED),
        (S.PENDING, S.SKIPPED),
        (S.PENDING, S.UPSTREAM_FAILED),
        (S.PENDING, S.CACHED),
    ],
)
def test_documented_lifecycle_steps_are_allowed(old: TaskState, new: TaskState) -> None:
    assert task_transition_allowed(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PENDING, S.RUNNING),  # nothing runs without being queued
        (S.PENDING, S.SUCCESS),
        (S.SCHEDULED, S.RUNNING),
        (S.SUCCESS, S.FAILED),  # a finished instance is never rewritten by a late report
        (S.FAILED, S.SUCCESS),
        (S.SKIPPED, S.SCHEDULED),
        (S.UPSTREAM_FAILED, S.SCHEDULED),
    ],
)
def test_forbidden_steps_are_refused(old: TaskState, new: TaskState) -> None:
    assert not task_transition_allowed(old, new)


def test_helpers_read_the_tables() -> None:
    for old in TaskState:
        for new in TaskState:
            assert task_transition_allowed(old, new) == (new in TASK_TRANSITIONS[old])
    for rold in RunState:
        for rnew in RunState:
            assert run_transition_allowed(rold, rnew) == (rnew in RUN_TRANSITIONS[rold])


def test_run_lifecycle() -> None:
    assert run_transition_allowed(RunState.QUEUED, RunState.RUNNING)
    assert run_transition_allowed(RunState.RUNNING, RunState.SUCCESS)
    assert run_transition_allowed(RunState.RUNNING, RunState.FAILED)
    assert not run_transition_allowed(RunState.SUCCESS, RunState.FAILED)
    assert not run_transition_allowed(RunState.RUNNING, RunState.QUEUED)


def test_state_groups() -> None:
    assert {S.SUCCESS, S.CACHED} == SUCCESS_STATES
    assert SUCCESS_STATES <= TERMINAL_TASK_STATES
    assert {S.QUEUED, S.RUNNING} == ACTIVE_TASK_STATES
    assert not ACTIVE_TASK_STATES & TERMINAL_TASK_STATES


def test_values_and_str() -> None:
    assert str(S.UP_FOR_RETRY) == "up_for_retry"
    assert str(RunState.SUCCESS) == "success"
    assert TaskState("upstream_failed") is S.UPSTREAM_FAILED
    assert {r.value for r in TriggerRule} == {
        "all_success",
        "all_failed",
        "all_done",
        "all_skipped",
        "one_success",
        "one_failed",
        "one_done",
        "none_failed",
        "none_failed_min_one_success",
        "none_skipped",
        "always",
    }
    assert str(TriggerRule.ONE_DONE) == "one_done"
