"""``phloem.expect``: expectations on pandas and polars frames, every one checked, a report
artifact with lineage, row counts and null fractions as run metrics, fail or warn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.artifacts import ArtifactRef, ArtifactStore
from phloem.errors import ConditionError, ValidationFailed
from phloem.states import RunState, TaskState

ROWS = {
    "id": [1, 2, 3, 3, 5],
    "amount": [10.0, -5.0, None, 20000.0, 40.0],
    "country": ["FR", "DE", "XX", "FR", None],
}


def make(kind: str, data: dict[str, list[Any]] | None = None) -> Any:
    data = ROWS if data is None else data
    return pd.DataFrame(data) if kind == "pandas" else pl.DataFrame(data)


LIBS = ["pandas", "polars"]


@pytest.mark.parametrize("lib", LIBS)
def test_every_expectation_is_checked_and_reported(lib: str) -> None:
    report = (
        phloem.expect(make(lib), name="orders")
        .row_count(min=1, max=10)
        .schema({"id": "int", "amount": "float", "country": "str"})
        .not_null("id", "amount")
        .unique("id")
        .between("amount", 0, 10_000)
        .isin("country", {"FR", "DE"})
        .max_null_fraction("country", 0.1)
        .satisfies(lambda df: df["id"] > 0, name="positive ids")
        .check(on_fail="warn")
    )
    assert not report and report.rows == 5
    got = {(o.expectation, o.column): (o.passed, o.failing, list(o.examples)) for o in report}
    assert got == {
        ("row_count [1, 10]", None): (True, 0, []),
        ("schema", None): (True, 0, []),
        ("not_null", "id"): (True, 0, []),
        ("not_null", "amount"): (False, 1, []),
        ("unique", "id"): (False, 1, [3]),
        ("between [0, 10000]", "amount"): (False, 2, [-5.0, 20000.0]),
        ("isin {'DE', 'FR'}", "country"): (False, 1, ["XX"]),
        ("max_null_fraction 0.1", "country"): (False, 1, []),
        ("positive ids", None): (True, 0, []),
    }
    assert report.null_fractions == {"id": 0.0, "amount": 0.2, "country": 0.2}
    summary = report.summary()
    assert summary.startswith("validation of 'orders' failed: 5 of 9 expectations broken")
    assert "2 values outside [0, 10000]" in summary
    table = report.table()
    assert "FAIL  between [0, 10000]" in table and "-5.0, 20000.0" in table


def test_isin_labels_are_stable() -> None:
    report = phloem.expect(make("pandas")).isin("country", ["FR", "DE"]).check(on_fail="warn")
    assert report.outcomes[0].expectation == "isin {'FR', 'DE'}"


@pytest.mark.parametrize("lib", LIBS)
def test_a_clean_frame_passes(lib: str) -> None:
    clean = {"id": [1, 2, 3], "amount": [1.0, 2.0, 3.0], "country": ["FR", "DE", "FR"]}
    report = (
        phloem.expect(make(lib, clean))
        .not_null("id", "amount", "country")
        .unique("id")
        .unique("id", "country", together=True)
        .between("amount", 0, 3)
        .between("amount", 0, 4, inclusive=False)
        .schema({"id": "number", "amount": "float", "country": "any"}, strict=True)
        .satisfies(lambda s: s >= 1, column="amount")
        .check()
    )
    assert report and report.summary() == (
        "validation passed: 9 of 9 expectations (3 rows, 3 columns)"
    )


@pytest.mark.parametrize("lib", LIBS)
def test_missing_columns_and_wrong_types_fail_their_expectations(lib: str) -> None:
    report = (
        phloem.expect(make(lib))
        .not_null("email")
        .between("country", 0, 1)
        .schema({"id": "str", "email": "str"}, strict=True)
        .satisfies(lambda df: df["nope"] > 0, name="broken predicate")
        .check(on_fail="warn")
    )
    details = [o.detail for o in report]
    assert details[0] == "column 'email' is missing (columns: id, amount, country)"
    assert details[1].startswith("is ") and details[1].endswith(", not numbers")
    assert "'id' is " in details[2] and "not str" in details[2]
    assert "'email' is missing" in details[2] and "'amount' is not expected" in details[2]
    assert details[3].startswith("raised ")
    assert not any(o.passed for o in report)


def test_nan_counts_as_null_in_both_libraries() -> None:
    data = {"x": [1.0, float("nan"), None, 4.0]}
    for lib in LIBS:
        df = make(lib, data)
        report = phloem.expect(df).not_null("x").check(on_fail="warn")
        assert report.outcomes[0].failing == 2, lib


def test_a_failing_check_raises_with_the_report() -> None:
    with pytest.raises(ValidationFailed) as info:
        phloem.expect(make("pandas")).unique("id").check()
    assert "unique: 1 repeated values" in str(info.value)
    assert info.value.report.failed[0].examples == (3,)  # type: ignore[attr-defined]
    assert isinstance(info.value, phloem.Fail)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda e: e.between("amount", 5, 1), "min 5 is above max 1"),
        (lambda e: e.between("amount"), "give min, max or both"),
        (lambda e: e.between("amount", "0"), "must be a number, not '0'"),
        (lambda e: e.row_count(min=-1), "must be an int >= 0, not -1"),
        (lambda e: e.row_count(), "give min, max or both"),
        (lambda e: e.schema({"id": "integer"}), "unknown type 'integer'; use one of int"),
        (lambda e: e.max_null_fraction("x", 1.5), "must be between 0 and 1"),
        (lambda e: e.isin("country", "FR"), "non-empty list or set, not 'FR'"),
        (lambda e: e.not_null(), "takes column names"),
        (lambda e: e.satisfies("x > 0"), "takes a function"),
        (lambda e: e.check(on_fail="ignore"), "use 'fail' or 'warn'"),
    ],
)
def test_expectations_written_wrongly_are_refused_when_written(build: Any, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        build(phloem.expect(make("pandas")))
    assert message in str(info.value)


def test_only_data_frames_are_accepted() -> None:
    with pytest.raises(ConditionError, match=r"pandas or polars DataFrame, not builtins\.list"):
        phloem.expect([1, 2])
    with pytest.raises(ConditionError, match=r"call \.collect\(\) on the LazyFrame"):
        phloem.expect(pl.DataFrame(ROWS).lazy())


def test_a_predicate_of_the_wrong_shape_is_written_wrongly() -> None:
    e = phloem.expect(make("pandas")).satisfies(lambda df: np.array([True, False]), name="short")
    with pytest.raises(ConditionError, match=r"one bool per row \(5\), not ndarray of shape"):
        e.check(on_fail="warn")


# -- in a task: report artifact, metrics, log, fail or warn ------------------------------------


@task(retries=2, retry_delay=0)
def validate(on_fail: str, lib: str) -> int:
    df = make(lib)
    report = phloem.expect(df, name="orders").not_null("amount").unique("id").check(on_fail)
    return report.rows


@pipeline
def validating(on_fail: str = "fail", lib: str = "pandas") -> None:
    validate(on_fail, lib)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_in_a_task_the_report_is_an_artifact_and_the_numbers_are_metrics(
    store_url: str, tmp_path: Path, executor: str
) -> None:
    app = Phloem.open(store_url, tmp_path)
    try:
        r = phloem.run(validating, params={"on_fail": "warn"}, executor=executor, app=app)
        assert r.state is RunState.SUCCESS and r.output("validate") == 5
        final = app.store.tracking.final([r.run_id])[r.run_id]
        assert final == {
            "orders.rows": 5.0,
            "orders.null_fraction.id": 0.0,
            "orders.null_fraction.amount": 0.2,
            "orders.null_fraction.country": 0.2,
            "orders.validation.failed": 2.0,
        }
        uses = [u for u in app.store.artifact_uses(r.run_id) if u.role == "validation"]
        assert len(uses) == 1 and uses[0].task_id == "validate"
        rec = app.store.artifact(uses[0].digest)
        assert rec is not None and rec.serializer == "json"
        ref = ArtifactRef(rec.digest, rec.serializer, rec.type_name, rec.size, rec.key)
        payload = ArtifactStore(str(app.artifacts.root)).get(ref)
        assert isinstance(payload, dict) and payload["kind"] == "validation"
        assert payload["null_fractions"]["amount"] == 0.2
        assert "FAIL  not_null" in payload["table"]
        logs = "".join(p.read_text() for p in Path(app.logs_dir).rglob("*.log"))
        assert "validation of 'orders' failed: 2 of 2 expectations broken" in logs
    finally:
        app.close()


@pytest.mark.parametrize("lib", LIBS)
def test_a_failed_validation_fails_the_task_once_and_keeps_its_report(
    tmp_path: Path, lib: str
) -> None:
    app = Phloem.open("memory", tmp_path)
    try:
        r = phloem.run(validating, params={"lib": lib}, executor="inline", app=app)
        assert r.state is RunState.FAILED
        ti = r.tasks[("validate", -1)]
        assert ti.state is TaskState.FAILED and ti.try_number == 1  # not retried
        assert "validation of 'orders' failed: 2 of 2 expectations broken" in (ti.error or "")
        roles = [u.role for u in app.store.artifact_uses(r.run_id)]
        assert roles == ["validation"]  # the failed attempt's report is kept
        assert app.store.tracking.final([r.run_id])[r.run_id]["orders.rows"] == 5.0
    finally:
        app.close()


def test_outside_a_task_nothing_is_stored() -> None:
    report = phloem.expect(make("pandas")).not_null("id").check()
    assert report and report.artifact is None
    assert json.loads(json.dumps(report.to_dict()))["expectations"][0]["passed"] is True


def test_the_reports_command_prints_a_runs_reports(home: Path) -> None:
    from typer.testing import CliRunner

    from phloem.cli.main import app as cli_app

    app = Phloem.open()
    try:
        r = phloem.run(validating, params={"on_fail": "warn"}, executor="inline", app=app)
    finally:
        app.close()
    runner = CliRunner()
    out = runner.invoke(cli_app, ["reports", r.run_id])
    assert out.exit_code == 0, out.output
    assert "== validate (try 1), validation report" in out.output
    assert "FAIL  not_null" in out.output
    listed = json.loads(runner.invoke(cli_app, ["reports", r.run_id, "--json"]).output)
    assert [(x["task_id"], x["role"]) for x in listed] == [("validate", "validation")]
    assert listed[0]["report"]["rows"] == 5
    none = runner.invoke(cli_app, ["reports", r.run_id, "--task", "other"])
    assert none.exit_code == 2
    assert "kept no validation or drift report by task 'other'" in none.output


@pytest.mark.parametrize("lib", ["pandas", "polars"])
def test_a_predicate_may_return_one_numpy_bool_for_the_frame(lib: str) -> None:
    frame = make(lib)
    passed = phloem.expect(frame).satisfies(lambda df: np.bool_(True), name="np true").check()
    assert passed
    failed = phloem.expect(frame).satisfies(lambda df: np.bool_(False), name="np false")
    report = failed.check(on_fail="warn")
    assert not report and report.outcomes[0].failing == len(frame)
