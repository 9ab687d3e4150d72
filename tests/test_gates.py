"""``phloem.gate``: metrics against conditions, every miss listed, strict condition syntax."""

from __future__ import annotations

import math
import operator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import phloem
from phloem import pipeline, task
from phloem.errors import ConditionError, GateFailed
from phloem.quality.conditions import OPERATORS, parse
from phloem.states import RunState, TaskState


def test_a_passing_gate_returns_a_truthy_verdict() -> None:
    v = phloem.gate(
        {"auc": 0.91, "p95_latency_ms": 42}, {"auc": ">= 0.85", "p95_latency_ms": "< 50"}
    )
    assert v and v.passed and v.failed == ()
    assert v["auc"].value == 0.91 and v["auc"].passed
    assert v.to_dict()["checks"][1] == {
        "metric": "p95_latency_ms",
        "condition": "< 50",
        "value": 42.0,
        "passed": True,
    }


def test_a_failing_gate_lists_every_missed_check() -> None:
    metrics = {"auc": 0.81, "p95_latency_ms": 62.0, "recall": 0.7}
    conds = {"auc": ">= 0.85", "p95_latency_ms": "< 50", "recall": "> 0.5"}
    with pytest.raises(GateFailed) as info:
        phloem.gate(metrics, conds)
    msg = str(info.value)
    assert msg.startswith("gate failed: 2 of 3 checks missed")
    assert "auc = 0.81 is not >= 0.85" in msg and "p95_latency_ms = 62 is not < 50" in msg
    assert "recall" not in msg
    assert isinstance(info.value, phloem.Fail)  # not retried
    verdict = info.value.verdict
    assert [c.metric for c in verdict.failed] == ["auc", "p95_latency_ms"]


def test_raise_on_fail_false_returns_a_falsy_verdict_for_a_branch() -> None:
    v = phloem.gate({"auc": 0.5}, {"auc": ">= 0.85"}, raise_on_fail=False)
    assert not v
    assert "auc = 0.5 is not >= 0.85" in str(v)


def test_nan_never_passes_and_numpy_values_are_numbers() -> None:
    v = phloem.gate({"auc": float("nan")}, {"auc": "> 0"}, raise_on_fail=False)
    assert not v and "auc = NaN is not > 0" in v.summary()
    assert v.to_dict()["checks"][0]["value"] is None
    assert phloem.gate({"auc": np.float32(0.9), "n": np.array(3)}, {"auc": "> 0.5", "n": "== 3"})


@pytest.mark.parametrize(
    ("conditions", "metrics", "message"),
    [
        ({"auc": "=> 0.85"}, {"auc": 0.9}, "unknown operator '=>'; did you mean '>='?"),
        ({"auc": "= 0.85"}, {"auc": 0.9}, "unknown operator '='; did you mean '=='?"),
        ({"auc": ">= high"}, {"auc": 0.9}, "'high' is not a number"),
        ({"auc": ">="}, {"auc": 0.9}, "no number after '>='"),
        ({"auc": "0.85"}, {"auc": 0.9}, "is not a condition"),
        ({"auc": 0.85}, {"auc": 0.9}, "must be text such as '>= 0.85', not float"),
        (
            {"acu": ">= 0.85"},
            {"auc": 0.9},
            "metric 'acu' is not among the metrics given (auc); did you mean 'auc'?",
        ),
        ({"auc": ">= 0.85"}, {"auc": "0.9"}, "metric 'auc' must be a number, not str"),
        ({"auc": ">= 0.85"}, {"auc": True}, "metric 'auc' must be a number, not bool"),
        ({}, {"auc": 0.9}, "needs at least one condition"),
    ],
)
def test_bad_conditions_are_refused_precisely(
    conditions: dict[str, object], metrics: dict[str, object], message: str
) -> None:
    with pytest.raises(ConditionError) as info:
        phloem.gate(metrics, conditions, raise_on_fail=False)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_every_bad_condition_is_listed_at_once() -> None:
    with pytest.raises(ConditionError) as info:
        phloem.gate({"auc": 0.9}, {"auc": "~ 1", "f1": "> 0"})
    assert "unknown operator '~'" in str(info.value) and "metric 'f1'" in str(info.value)


def test_metrics_must_be_a_mapping() -> None:
    with pytest.raises(ConditionError, match="mapping of name to number, not list"):
        phloem.gate([0.9], {"auc": "> 0"})  # type: ignore[arg-type]


# -- the parser, by property ------------------------------------------------------------------

numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(op=st.sampled_from(sorted(OPERATORS)), threshold=numbers, value=numbers,
       pad=st.sampled_from(["", " ", "  "]))
def test_a_written_condition_means_what_python_would_compute(
    op: str, threshold: float, value: float, pad: str
) -> None:
    cond = parse(f"{pad}{op}{pad}{threshold!r}{pad}")
    assert cond.op == op and cond.threshold == threshold
    assert cond.holds(value) == OPERATORS[op](value, threshold)
    assert not cond.holds(math.nan)
    assert parse(str(cond)).op == op  # its text form parses back


@given(st.text(max_size=12))
def test_any_text_parses_or_is_a_condition_error(text: str) -> None:
    try:
        cond = parse(text)
    except ConditionError as exc:
        assert repr(text) in str(exc) or "must be text" in str(exc)
    else:
        assert cond.op in OPERATORS and not math.isnan(cond.threshold)


def test_the_operators_are_the_six_comparisons() -> None:
    assert OPERATORS[">="] is operator.ge and set(OPERATORS) == {">=", "<=", ">", "<", "==", "!="}


# -- in a task ----------------------------------------------------------------------------------


@task(retries=2, retry_delay=0)
def evaluate(auc: float) -> float:
    phloem.gate({"auc": auc}, {"auc": ">= 0.85"})
    return auc


@task
def decide(auc: float) -> str:
    verdict = phloem.gate({"auc": auc}, {"auc": ">= 0.85"}, raise_on_fail=False)
    return "promote" if verdict else "hold"


@pipeline
def gated(auc: float = 0.9) -> None:
    decide(evaluate(auc))


def test_a_failed_gate_fails_the_task_once_without_retries(tmp_path: Path) -> None:
    r = phloem.run(gated, params={"auc": 0.8}, executor="inline", store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    ti = r.tasks[("evaluate", -1)]
    assert ti.state is TaskState.FAILED and ti.try_number == 1
    assert "gate failed: 1 of 1 checks missed: auc = 0.8 is not >= 0.85" in (ti.error or "")
    log = Path(tmp_path).rglob("*.log")
    assert any("FAIL auc = 0.8" in p.read_text() for p in log)


def test_a_passing_gate_lets_the_run_go_on(tmp_path: Path) -> None:
    r = phloem.run(gated, params={"auc": 0.9}, executor="local", store="memory", home=tmp_path)
    assert r.state is RunState.SUCCESS
    assert r.output("decide") == "promote"
