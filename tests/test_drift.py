"""``phloem.drift``: PSI and KS against hand-computed values and scipy, their properties, and
the drift report of two frames kept as an artifact with metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.drift import EPS, ks, psi, report
from phloem.errors import ConditionError
from phloem.states import RunState


def test_categorical_psi_is_the_formula_on_category_shares() -> None:
    ref = ["a"] * 50 + ["b"] * 50
    cur = ["a"] * 80 + ["b"] * 20
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(ref, cur) == pytest.approx(expected) == pytest.approx(0.415888, abs=1e-6)


def test_a_category_unseen_in_the_reference_counts_with_epsilon() -> None:
    value = psi(["a", "a"], ["a", "b"])
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPS) * math.log(0.5 / EPS)
    assert value == pytest.approx(expected)


def test_numeric_psi_bins_at_the_reference_quantiles() -> None:
    ref = np.arange(100.0)  # quartile edges 24.75, 49.5, 74.25: 25 values per bin
    cur = [10.0] * 50 + [60.0] * 50  # half in the first bin, half in the third
    half, quarter = 0.5, 0.25
    expected = 2 * (half - quarter) * math.log(half / quarter) + 2 * (EPS - quarter) * math.log(
        EPS / quarter
    )
    assert psi(ref, cur, bins=4) == pytest.approx(expected) == pytest.approx(4.257032, abs=1e-5)


def test_values_beyond_the_reference_fall_in_the_open_outer_bins() -> None:
    ref = np.arange(100.0)
    assert psi(ref, ref + 1000.0, bins=4) == pytest.approx(
        (1 - 0.25) * math.log(1 / 0.25) + 3 * (EPS - 0.25) * math.log(EPS / 0.25)
    )


def test_a_constant_reference_still_sees_a_shift() -> None:
    assert psi([5.0] * 20, [5.0] * 30) == 0.0
    shifted = psi([5.0] * 20, [6.0] * 30)
    assert shifted == pytest.approx(2 * (1 - EPS) * math.log(1 / EPS))


def test_missing_values_are_left_out() -> None:
    assert psi([1.0, 2.0, None, float("nan")], [1.0, 2.0], bins=2) == 0.0
    assert psi(pd.Series(["x", None, "y"]), pl.Series(["x", "y", None])) == 0.0


def _scipy():  # type: ignore[no-untyped-def]
    """scipy.stats, when installed (scikit-learn brings it): the reference for KS."""
    return pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(
    ("n", "m", "shift", "seed"),
    [(200, 300, 0.0, 1), (200, 300, 0.3, 2), (1000, 800, 0.1, 3), (60, 50, 0.5, 4), (7, 9, 1.0, 5)],
)
def test_ks_matches_scipy(n: int, m: int, shift: float, seed: int) -> None:
    scipy_stats = _scipy()
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(shift, size=m)
    ours, theirs = ks(a, b), scipy_stats.ks_2samp(a, b)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-12)
    if n * m >= 10_000:  # scipy's exact p-value for small samples; ours is asymptotic
        assert ours.pvalue == pytest.approx(theirs.pvalue, abs=0.02)
    asymp = scipy_stats.ks_2samp(a, b, method="asymp")
    assert ours.pvalue == pytest.approx(asymp.pvalue, abs=0.02)


def test_ks_with_ties_matches_scipy() -> None:
    scipy_stats = _scipy()
    a = [1, 1, 2, 2, 3, 3, 3, 4]
    b = [2, 2, 3, 4, 4, 5, 5, 5, 5]
    assert ks(a, b).statistic == pytest.approx(scipy_stats.ks_2samp(a, b).statistic)


def test_bad_input_is_refused_precisely() -> None:
    with pytest.raises(ConditionError, match=r"bins=\.\.\.\) must be an int >= 1, not 0"):
        psi([1], [1], bins=0)
    with pytest.raises(ConditionError, match="ref has no values"):
        psi([], [1.0])
    with pytest.raises(ConditionError, match="cur has no values"):
        psi([1.0], [None, float("nan")])
    with pytest.raises(ConditionError, match=r"'a' is not one \(use psi for categories\)"):
        ks([1.0, 2.0], ["a"])
    with pytest.raises(ConditionError, match="infinite values cannot be binned"):
        psi([1.0, math.inf], [1.0])
    with pytest.raises(ConditionError, match="one feature at a time"):
        psi([[1, 2]], [[1, 2]])
    with pytest.raises(ConditionError, match="must be a sequence of values, not 'abc'"):
        psi("abc", "abd")


# -- properties -----------------------------------------------------------------------------------

samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60
)


@settings(max_examples=150, deadline=None)
@given(samples, samples, st.integers(min_value=1, max_value=20))
def test_psi_is_non_negative_and_zero_on_the_same_sample(
    a: list[float], b: list[float], bins: int
) -> None:
    value = psi(a, b, bins)
    assert value >= 0 and math.isfinite(value)
    assert psi(a, a, bins) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, list(reversed(a)) * 3, bins) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_ks_is_a_symmetric_distance_with_a_probability(a: list[float], b: list[float]) -> None:
    d, p = ks(a, b)
    assert 0.0 <= d <= 1.0 and 0.0 <= p <= 1.0
    assert ks(b, a).statistic == pytest.approx(d)
    assert ks(a, a).statistic == 0.0 and ks(a, a).pvalue == 1.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value on tiny samples
@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_ks_statistic_matches_scipy_on_any_sample(a: list[float], b: list[float]) -> None:
    theirs = _scipy().ks_2samp(a, b, method="asymp")
    assert ks(a, b).statistic == pytest.approx(theirs.statistic, abs=1e-12)


# -- the report -----------------------------------------------------------------------------------


def frames(lib: str, shift: float, seed: int = 0) -> tuple[object, object]:
    rng = np.random.default_rng(seed)
    ref = {
        "amount": rng.normal(100, 10, 2000),
        "country": rng.choice(["FR", "DE", "ES"], 2000, p=[0.5, 0.3, 0.2]),
        "constant": np.ones(2000),
    }
    cur = {
        "amount": rng.normal(100 + shift, 10, 1500),
        "country": rng.choice(["FR", "DE", "ES"], 1500, p=[0.5, 0.3, 0.2]),
        "constant": np.ones(1500),
    }
    make = pd.DataFrame if lib == "pandas" else pl.DataFrame
    return make(ref), make(cur)


@pytest.mark.parametrize("lib", ["pandas", "polars"])
def test_the_report_finds_the_feature_that_moved(lib: str) -> None:
    ref, cur = frames(lib, shift=15.0)
    r = report(ref, cur)
    assert r and r.drifted_features == ("amount",)
    assert r["amount"].kind == "numeric" and r["amount"].psi > 0.2 and r["amount"].ks > 0.4
    assert r["country"].kind == "categorical" and r["country"].psi < 0.05
    assert r["country"].ks is None and r["constant"].psi == 0.0
    assert r.max_psi == r["amount"].psi
    assert r.summary() == "drift in 1 of 3 features (PSI >= 0.2): amount"
    assert "DRIFT  amount" in r.table()
    quiet = report(*frames(lib, shift=0.0))
    assert not quiet and quiet.summary().startswith("no drift: 3 features under PSI 0.2")


def test_report_input_is_checked() -> None:
    ref, cur = frames("pandas", 0.0)
    with pytest.raises(ConditionError, match="column 'x' is not in both frames"):
        report(ref, cur, columns=["x"])
    with pytest.raises(ConditionError, match="threshold must be a number > 0"):
        report(ref, cur, threshold=0)
    with pytest.raises(ConditionError, match="share no column"):
        report(pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]}))


@task
def monitor(shift: float) -> bool:
    ref, cur = frames("pandas", shift)
    return report(ref, cur, columns=["amount", "country"]).drifted


@pipeline
def monitoring(shift: float = 0.0) -> None:
    monitor(shift)


def test_in_a_task_the_report_is_an_artifact_and_psi_are_metrics(
    store_url: str, tmp_path: Path
) -> None:
    app = Phloem.open(store_url, tmp_path)
    try:
        r = phloem.run(monitoring, params={"shift": 15.0}, executor="local", app=app)
        assert r.state is RunState.SUCCESS and r.output("monitor") is True
        final = app.store.tracking.final([r.run_id])[r.run_id]
        assert set(final) == {"drift.max_psi", "drift.psi.amount", "drift.ks.amount",
                              "drift.psi.country"}
        assert final["drift.max_psi"] == final["drift.psi.amount"] > 0.2
        roles = [u.role for u in app.store.artifact_uses(r.run_id)]
        assert roles.count("drift") == 1
    finally:
        app.close()
