"""Trigger rules: may a task run, given how its upstream instances ended (Airflow's semantics).

Each rule is one small function over a tally of the upstream states, looked up in a table,
so adding a rule is adding a row and every rule decides early when its outcome is certain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from enum import Enum
from typing import NamedTuple

from phloem.states import TaskState, TriggerRule


class Verdict(Enum):
    RUN = "run"
    WAIT = "wait"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


S = TaskState
RUN, WAIT, SKIP, UPSTREAM_FAILED = Verdict.RUN, Verdict.WAIT, Verdict.SKIP, Verdict.UPSTREAM_FAILED


class Tally(NamedTuple):
    """How the upstream instances stand: cached counts as success, upstream_failed as a
    failure; ``done`` counts every instance that ended."""

    success: int
    skipped: int
    failed: int
    failures: int
    done: int
    total: int

    @property
    def all_done(self) -> bool:
        return self.done == self.total


def _all_success(t: Tally) -> Verdict:
    if t.failures:
        return UPSTREAM_FAILED
    if t.skipped:
        return SKIP
    return RUN if t.success == t.total else WAIT


def _all_failed(t: Tally) -> Verdict:
    if t.success or t.skipped:
        return SKIP
    return RUN if t.failures == t.total else WAIT


def _all_done(t: Tally) -> Verdict:
    return RUN if t.all_done else WAIT


def _all_skipped(t: Tally) -> Verdict:
    if t.success or t.failures:
        return SKIP
    return RUN if t.skipped == t.total else WAIT


def _one_success(t: Tally) -> Verdict:
    if t.success:
        return RUN
    if t.all_done:
        return SKIP if t.skipped == t.total else UPSTREAM_FAILED
    return WAIT


def _one_failed(t: Tally) -> Verdict:
    if t.failures:
        return RUN
    return SKIP if t.all_done else WAIT


def _one_done(t: Tally) -> Verdict:
    if t.success or t.failed:
        return RUN
    return SKIP if t.all_done else WAIT


def _none_failed(t: Tally) -> Verdict:
    if t.failures:
        return UPSTREAM_FAILED
    return RUN if t.all_done else WAIT


def _none_failed_min_one_success(t: Tally) -> Verdict:
    if t.failures:
        return UPSTREAM_FAILED
    if t.all_done:
        return RUN if t.success else SKIP
    return WAIT


def _none_skipped(t: Tally) -> Verdict:
    if t.skipped:
        return SKIP
    return RUN if t.all_done else WAIT


def _always(t: Tally) -> Verdict:
    return RUN


R = TriggerRule
RULES: dict[TriggerRule, Callable[[Tally], Verdict]] = {
    R.ALL_SUCCESS: _all_success,
    R.ALL_FAILED: _all_failed,
    R.ALL_DONE: _all_done,
    R.ALL_SKIPPED: _all_skipped,
    R.ONE_SUCCESS: _one_success,
    R.ONE_FAILED: _one_failed,
    R.ONE_DONE: _one_done,
    R.NONE_FAILED: _none_failed,
    R.NONE_FAILED_MIN_ONE_SUCCESS: _none_failed_min_one_success,
    R.NONE_SKIPPED: _none_skipped,
    R.ALWAYS: _always,
}


def evaluate(rule: TriggerRule, counts: Counter[TaskState], total: int) -> Verdict:
    """Decide from the upstream instances' states. Decides early when the outcome is certain."""
    if total == 0 or rule is TriggerRule.ALWAYS:
        return RUN
    success = counts[S.SUCCESS] + counts[S.CACHED]
    skipped = counts[S.SKIPPED]
    failed = counts[S.FAILED]
    failures = failed + counts[S.UPSTREAM_FAILED]
    done = success + skipped + failures
    return RULES[rule](Tally(success, skipped, failed, failures, done, total))
