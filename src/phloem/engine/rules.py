"""Trigger rules: may a task run, given how its upstream instances ended (Airflow's semantics)."""

from __future__ import annotations

from collections import Counter
from enum import Enum

from phloem.states import TaskState, TriggerRule


class Verdict(Enum):
    RUN = "run"
    WAIT = "wait"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


S = TaskState


def evaluate(rule: TriggerRule, counts: Counter[TaskState], total: int) -> Verdict:
    """Decide from the upstream instances' states. Decides early when the outcome is certain."""
    if total == 0 or rule is TriggerRule.ALWAYS:
        return Verdict.RUN
    success = counts[S.SUCCESS] + counts[S.CACHED]
    skipped = counts[S.SKIPPED]
    failed = counts[S.FAILED]
    upstream_failed = counts[S.UPSTREAM_FAILED]
    failures = failed + upstream_failed
    done = success + skipped + failures
    all_done = done == total
    R = TriggerRule
    if rule is R.ALL_SUCCESS:
        if failures:
            return Verdict.UPSTREAM_FAILED
        if skipped:
            return Verdict.SKIP
        return Verdict.RUN if success == total else Verdict.WAIT
    if rule is R.ALL_FAILED:
        if success or skipped:
            return Verdict.SKIP
        return Verdict.RUN if failures == total else Verdict.WAIT
    if rule is R.ALL_DONE:
        return Verdict.RUN if all_done else Verdict.WAIT
    if rule is R.ALL_SKIPPED:
        if success or failures:
            return Verdict.SKIP
        return Verdict.RUN if skipped == total else Verdict.WAIT
    if rule is R.ONE_SUCCESS:
        if success:
            return Verdict.RUN
        if all_done:
            return Verdict.SKIP if skipped == total else Verdict.UPSTREAM_FAILED
        return Verdict.WAIT
    if rule is R.ONE_FAILED:
        if failures:
            return Verdict.RUN
        return Verdict.SKIP if all_done else Verdict.WAIT
    if rule is R.ONE_DONE:
        if success or failed:
            return Verdict.RUN
        return Verdict.SKIP if all_done else Verdict.WAIT
    if rule is R.NONE_FAILED:
        if failures:
            return Verdict.UPSTREAM_FAILED
        return Verdict.RUN if all_done else Verdict.WAIT
    if rule is R.NONE_FAILED_MIN_ONE_SUCCESS:
        if failures:
            return Verdict.UPSTREAM_FAILED
        if all_done:
            return Verdict.RUN if success else Verdict.SKIP
        return Verdict.WAIT
    if rule is R.NONE_SKIPPED:
        if skipped:
            return Verdict.SKIP
        return Verdict.RUN if all_done else Verdict.WAIT
    raise AssertionError(f"unhandled trigger rule {rule}")
