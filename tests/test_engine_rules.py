"""Trigger rules against Airflow's documented semantics, including early decisions."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from phloem.engine import Verdict, evaluate
from phloem.states import TERMINAL_TASK_STATES, TaskState, TriggerRule

S = TaskState
R = TriggerRule
RUN, WAIT, SKIP, UF = Verdict.RUN, Verdict.WAIT, Verdict.SKIP, Verdict.UPSTREAM_FAILED

# one letter per upstream instance
LETTERS = {
    "s": S.SUCCESS,
    "c": S.CACHED,
    "f": S.FAILED,
    "u": S.UPSTREAM_FAILED,
    "k": S.SKIPPED,
    "p": S.PENDING,
    "d": S.SCHEDULED,
    "q": S.QUEUED,
    "r": S.RUNNING,
    "y": S.UP_FOR_RETRY,
    "z": S.UP_FOR_RESCHEDULE,
}

# (rule, upstream states, verdict, why)
CASES: list[tuple[TriggerRule, str, Verdict, str]] = [
    # all_success: every upstream succeeded; a failure fails it at once, a skip skips it at once
    (R.ALL_SUCCESS, "", RUN, "no upstream"),
    (R.ALL_SUCCESS, "ss", RUN, "all succeeded"),
    (R.ALL_SUCCESS, "sc", RUN, "cached counts as success"),
    (R.ALL_SUCCESS, "sp", WAIT, "one still pending"),
    (R.ALL_SUCCESS, "sr", WAIT, "one still running"),
    (R.ALL_SUCCESS, "sy", WAIT, "a retry is not an end"),
    (R.ALL_SUCCESS, "sz", WAIT, "a reschedule is not an end"),
    (R.ALL_SUCCESS, "fp", UF, "early: one failed"),
    (R.ALL_SUCCESS, "ur", UF, "early: one upstream_failed"),
    (R.ALL_SUCCESS, "kp", SKIP, "early: one skipped"),
    (R.ALL_SUCCESS, "kf", UF, "a failure outweighs a skip"),
    # all_failed: every upstream failed or upstream_failed
    (R.ALL_FAILED, "ff", RUN, "all failed"),
    (R.ALL_FAILED, "fu", RUN, "upstream_failed counts as failed"),
    (R.ALL_FAILED, "fp", WAIT, "one still pending"),
    (R.ALL_FAILED, "sp", SKIP, "early: one succeeded"),
    (R.ALL_FAILED, "kr", SKIP, "early: one skipped"),
    (R.ALL_FAILED, "cf", SKIP, "cached counts as success"),
    # all_done: every upstream ended, whatever the outcome
    (R.ALL_DONE, "sfku", RUN, "all ended"),
    (R.ALL_DONE, "kk", RUN, "all skipped is ended too"),
    (R.ALL_DONE, "fr", WAIT, "one running"),
    (R.ALL_DONE, "sy", WAIT, "one waiting for a retry"),
    (R.ALL_DONE, "sq", WAIT, "one queued"),
    # all_skipped: every upstream skipped
    (R.ALL_SKIPPED, "kk", RUN, "all skipped"),
    (R.ALL_SKIPPED, "kp", WAIT, "one pending"),
    (R.ALL_SKIPPED, "sp", SKIP, "early: one succeeded"),
    (R.ALL_SKIPPED, "fp", SKIP, "early: one failed"),
    (R.ALL_SKIPPED, "up", SKIP, "early: one upstream_failed"),
    # one_success: runs as soon as one succeeded
    (R.ONE_SUCCESS, "sp", RUN, "early: one succeeded"),
    (R.ONE_SUCCESS, "cr", RUN, "early: one cached"),
    (R.ONE_SUCCESS, "fp", WAIT, "nothing succeeded yet"),
    (R.ONE_SUCCESS, "kp", WAIT, "nothing succeeded yet"),
    (R.ONE_SUCCESS, "ff", UF, "all ended, none succeeded"),
    (R.ONE_SUCCESS, "kf", UF, "all ended, none succeeded, not all skipped"),
    (R.ONE_SUCCESS, "kk", SKIP, "all skipped"),
    (R.ONE_SUCCESS, "fs", RUN, "one success is enough"),
    # one_failed: runs as soon as one failed
    (R.ONE_FAILED, "fp", RUN, "early: one failed"),
    (R.ONE_FAILED, "ur", RUN, "early: one upstream_failed"),
    (R.ONE_FAILED, "sp", WAIT, "nothing failed yet"),
    (R.ONE_FAILED, "sk", SKIP, "all ended, none failed"),
    (R.ONE_FAILED, "ss", SKIP, "all ended, none failed"),
    # one_done: runs as soon as one succeeded or failed
    (R.ONE_DONE, "sp", RUN, "early: one succeeded"),
    (R.ONE_DONE, "fp", RUN, "early: one failed"),
    (R.ONE_DONE, "kp", WAIT, "a skip is not success or failure"),
    (R.ONE_DONE, "up", WAIT, "upstream_failed is not an upstream that ran and failed"),
    (R.ONE_DONE, "kk", SKIP, "all ended without success or failure"),
    (R.ONE_DONE, "uk", SKIP, "all ended without success or failure"),
    # none_failed: no upstream failed; all ended (success or skipped)
    (R.NONE_FAILED, "sk", RUN, "success and skip"),
    (R.NONE_FAILED, "kk", RUN, "all skipped still runs"),
    (R.NONE_FAILED, "sp", WAIT, "one pending"),
    (R.NONE_FAILED, "fp", UF, "early: one failed"),
    (R.NONE_FAILED, "up", UF, "early: one upstream_failed"),
    # none_failed_min_one_success: as none_failed, and at least one succeeded
    (R.NONE_FAILED_MIN_ONE_SUCCESS, "sk", RUN, "one success, one skip"),
    (R.NONE_FAILED_MIN_ONE_SUCCESS, "ck", RUN, "cached counts as success"),
    (R.NONE_FAILED_MIN_ONE_SUCCESS, "kk", SKIP, "all skipped"),
    (R.NONE_FAILED_MIN_ONE_SUCCESS, "sp", WAIT, "one pending"),
    (R.NONE_FAILED_MIN_ONE_SUCCESS, "kp", WAIT, "one pending"),
    (R.NONE_FAILED_MIN_ONE_SUCCESS, "fp", UF, "early: one failed"),
    (R.NONE_FAILED_MIN_ONE_SUCCESS, "uk", UF, "upstream_failed"),
    # none_skipped: no upstream skipped; all ended
    (R.NONE_SKIPPED, "sf", RUN, "failures are fine"),
    (R.NONE_SKIPPED, "su", RUN, "upstream_failed is fine"),
    (R.NONE_SKIPPED, "sp", WAIT, "one pending"),
    (R.NONE_SKIPPED, "kp", SKIP, "early: one skipped"),
    # always: runs at once
    (R.ALWAYS, "pp", RUN, "upstream not even started"),
    (R.ALWAYS, "ff", RUN, "upstream failed"),
    (R.ALWAYS, "", RUN, "no upstream"),
]


def counts_of(states: str) -> tuple[Counter[TaskState], int]:
    return Counter(LETTERS[c] for c in states), len(states)


@pytest.mark.parametrize(
    ("rule", "upstream", "expected", "why"),
    CASES,
    ids=[f"{r.value}-{u or 'none'}" for r, u, _, _ in CASES],
)
def test_rule_table(rule: TriggerRule, upstream: str, expected: Verdict, why: str) -> None:
    counts, total = counts_of(upstream)
    assert evaluate(rule, counts, total) is expected, why


def test_every_rule_is_in_the_table() -> None:
    assert {r for r, *_ in CASES} == set(TriggerRule)


def test_no_upstream_always_runs() -> None:
    for rule in TriggerRule:
        assert evaluate(rule, Counter(), 0) is RUN


NON_TERMINAL = [s for s in TaskState if not s.is_terminal]
ENDINGS = sorted(TERMINAL_TASK_STATES, key=lambda s: s.value)


@pytest.mark.parametrize("rule", list(TriggerRule), ids=str)
def test_all_ended_never_waits(rule: TriggerRule) -> None:
    for n in range(1, 4):
        for combo in itertools.combinations_with_replacement(ENDINGS, n):
            assert evaluate(rule, Counter(combo), n) is not WAIT, combo


def _early_and_final(rule: TriggerRule) -> list[tuple[tuple[TaskState, ...], Verdict, Verdict]]:
    """(upstream states, verdict now, verdict once every upstream ended) for every way the
    unfinished upstream instances of up to three could end."""
    out = []
    for n in range(1, 4):
        for combo in itertools.combinations_with_replacement(list(TaskState), n):
            verdict = evaluate(rule, Counter(combo), n)
            if verdict is WAIT:
                continue
            done = [s for s in combo if s.is_terminal]
            for ending in itertools.product(ENDINGS, repeat=n - len(done)):
                out.append((combo, verdict, evaluate(rule, Counter([*done, *ending]), n)))
    return out


@pytest.mark.parametrize("rule", list(TriggerRule), ids=str)
def test_early_decisions_are_final(rule: TriggerRule) -> None:
    """A verdict given before every upstream ended holds however the others end.

    The one exception is Airflow's: all_success skips at the first skipped upstream, and stays
    skipped even if another upstream fails later (it would have been upstream_failed had the
    failure come first). It never turns into a run either way.
    """
    for combo, early, final in _early_and_final(rule):
        if rule is R.ALL_SUCCESS and early is SKIP:
            assert final in (SKIP, UF), combo
        else:
            assert final is early, (combo, early, final)


def test_all_success_skip_before_a_failure() -> None:
    skipped_first, _ = counts_of("kr")
    assert evaluate(R.ALL_SUCCESS, skipped_first, 2) is SKIP
    assert evaluate(R.ALL_SUCCESS, *counts_of("kf")) is UF


@pytest.mark.parametrize("rule", list(TriggerRule), ids=str)
def test_cached_is_success(rule: TriggerRule) -> None:
    for n in range(1, 4):
        for combo in itertools.combinations_with_replacement(list(TaskState), n):
            swapped = [S.SUCCESS if s is S.CACHED else s for s in combo]
            assert evaluate(rule, Counter(combo), n) is evaluate(rule, Counter(swapped), n)


@pytest.mark.parametrize("rule", list(TriggerRule), ids=str)
def test_unfinished_states_are_alike(rule: TriggerRule) -> None:
    """Pending, scheduled, queued, running and waiting-to-retry all mean 'not ended yet'."""
    for done in itertools.combinations_with_replacement(ENDINGS, 2):
        verdicts = {evaluate(rule, Counter([*done, s]), 3) for s in NON_TERMINAL}
        assert len(verdicts) == 1, (done, verdicts)
