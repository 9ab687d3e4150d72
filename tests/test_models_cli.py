"""``phloem models``: what people see and do from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.cli.main import app

runner = CliRunner()
X = np.arange(40, dtype=float).reshape(20, 2)
Y = (X[:, 0] > 15).astype(int)


def cli(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: object) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return str(result.stdout)  # type: ignore[attr-defined]


def error(*args: object) -> str:
    result = cli(*args)
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    return str(result.stderr)  # type: ignore[attr-defined]


@task
def features() -> np.ndarray:
    return X


@task
def train(x: np.ndarray, c: float) -> int:
    model = LogisticRegression(C=c).fit(x, Y)
    return phloem.models.register(
        "fraud", model, metrics={"auc": 0.8 + c / 10}, params={"C": c}, eval_data=x
    )


@pipeline
def training(c: float = 0.5) -> None:
    train(features(), c)


@pytest.fixture
def registered(home: Path) -> Phloem:
    ph = Phloem.open(home=home)
    for c in (0.5, 1.0):
        r = phloem.run(training, params={"c": c}, executor="inline", app=ph,
                       logical_date=f"2026-01-0{int(c * 2)}")
        assert r.state is phloem.RunState.SUCCESS
    ph.close()
    return ph


def test_list_and_show(registered: Phloem) -> None:
    assert ok("models", "promote", "fraud", 1, "--alias", "production", "--reason", "first") == (
        "fraud@production -> version 1\n"
    )
    out = ok("models", "list")
    assert out.splitlines()[0].split() == ["name", "latest", "versions", "aliases", "updated"]
    assert out.splitlines()[1].split()[:4] == ["fraud", "2", "2", "production=1"]
    listed = json.loads(ok("models", "list", "--json"))
    assert listed[0]["aliases"] == {"production": 1}
    shown = ok("models", "show", "fraud")
    assert "version" in shown and "auc=0.85" in shown and "auc=0.9" in shown
    assert "production: - -> 1" in shown and "(first)" in shown and "(cli)" in shown
    detail = ok("models", "show", "fraud@production")
    assert "model fraud version 1  (ready)" in detail and "C = 0.5" in detail
    data = json.loads(ok("models", "show", "fraud:2", "--json"))
    assert data["metrics"] == {"auc": 0.9} and data["model"]["format"] == "model-parts"


def test_show_lineage_names_the_run_task_and_inputs(registered: Phloem) -> None:
    out = ok("models", "show", "fraud:1", "--lineage")
    assert "run " in out and "training, logical date 2026-01-01" in out
    assert "task         train try 1" in out
    assert "from task features" in out
    lin = json.loads(ok("models", "show", "fraud:1", "--lineage", "--json"))["lineage"]
    assert lin["pipeline"] == "training" and lin["run_params"] == {"c": 0.5}
    assert [i["produced_by"] for i in lin["inputs"]] == ["features"]


def test_promote_rollback_and_history(registered: Phloem) -> None:
    ok("models", "promote", "fraud", 1, "--alias", "production")
    assert ok("models", "promote", "fraud", 2, "-a", "production", "-r", "better") == (
        "fraud@production -> version 2 (was 1)\n"
    )
    assert ok("models", "rollback", "fraud", "--alias", "production") == (
        "fraud@production -> version 1 (rolled back from 2)\n"
    )
    history = json.loads(ok("models", "show", "fraud", "--json"))["history"]
    assert [(h["version"], h["previous"], h["kind"]) for h in history] == [
        (1, None, "set"), (2, 1, "set"), (1, 2, "rollback")
    ]
    assert "no earlier version" in error("models", "rollback", "fraud", "--alias", "production")


def test_compare_side_by_side(registered: Phloem) -> None:
    out = ok("models", "compare", "fraud", 1, 2)
    assert out.splitlines()[0] == "model fraud: version 1 vs version 2"
    metric = next(line.split() for line in out.splitlines() if line.startswith("metric"))
    assert metric == ["metric", "auc", "0.85", "0.9", "+0.05"]
    params = [line for line in out.splitlines() if line.split()[:2] == ["param", "C"]]
    assert params and params[0].endswith("differs")
    evals = [line.split() for line in out.splitlines() if line.startswith("eval")]
    assert evals[0][-1] == "same"
    c = json.loads(ok("models", "compare", "fraud", 1, 2, "--json"))
    assert c["metrics"]["auc"]["delta"] == pytest.approx(0.05)
    assert c["params"]["C"] == {"a": 0.5, "b": 1.0, "same": False}
    assert c["eval_data"]["same"] is True
    assert c["lineage"]["a"]["run_id"] != c["lineage"]["b"]["run_id"]


def test_errors_are_one_line_and_list_what_exists(registered: Phloem) -> None:
    assert "no model named 'nope'" in error("models", "show", "nope")
    assert "has no version 9 (versions: 1-2)" in error("models", "show", "fraud:9")
    assert "no alias 'prod'" in error("models", "show", "fraud@prod")
    assert "has no version 5" in error("models", "promote", "fraud", 5, "--alias", "production")
    assert "alias '1x' is not valid" in error("models", "promote", "fraud", 1, "--alias", "1x")
    assert "has no version 7" in error("models", "compare", "fraud", 1, 7)


def test_list_when_empty(home: Path) -> None:
    assert ok("models", "list") == "no models registered yet (phloem.models.register adds one)\n"


def test_export_writes_an_mlflow_model_that_mlflow_loads(
    registered: Phloem, tmp_path: Path
) -> None:
    pyfunc = pytest.importorskip("mlflow.pyfunc")
    out = tmp_path / "exported"
    assert ok("models", "export", "fraud:2", out, "--format", "mlflow") == (
        f"fraud:2 written as an MLflow model to {out}\n"
    )
    assert (out / "MLmodel").exists()
    loaded = pyfunc.load_model(str(out))
    expected = LogisticRegression(C=1.0).fit(X, Y).predict(X)
    assert loaded.predict(X).tolist() == expected.tolist()
    assert loaded.metadata.metadata["phloem_version"] == 2
    assert "is not an empty directory" in error("models", "export", "fraud:2", out)
    bad = error("models", "export", "fraud", tmp_path / "x", "-f", "onnx")
    assert "--format 'onnx' is not known" in bad


@task
def score() -> list[int]:
    return phloem.models.load("fraud@production").predict(X[:3]).tolist()


@pipeline
def scoring() -> None:
    score()


def test_lineage_of_a_version_up_to_its_inputs_and_down_to_its_consumers(
    registered: Phloem, home: Path
) -> None:
    ok("models", "promote", "fraud", 1, "--alias", "production")
    ph = Phloem.open(home=home)
    try:
        r = phloem.run(scoring, executor="inline", app=ph)
        assert r.state is phloem.RunState.SUCCESS
    finally:
        ph.close()
    up = json.loads(ok("lineage", "fraud:1", "--json"))
    tasks = {n["task_id"] for n in up["nodes"] if n["kind"] == "task"}
    assert tasks == {"train", "features"}
    assert {e["role"] for e in up["edges"]} >= {"model", "input"}
    down = json.loads(ok("lineage", "fraud@production", "--downstream", "--json"))
    assert {n["task_id"] for n in down["nodes"] if n["kind"] == "task"} == {"score"}
    assert "no alias 'staging'" in error("lineage", "fraud@staging")
