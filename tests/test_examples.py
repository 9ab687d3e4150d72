"""Every example in examples/ runs end to end on a fresh home and produces real results.

These are the pipelines users copy, so each test checks what the pipeline is for (the Parquet
written, the model registered, the path taken, the delays between retries), not only that the
run succeeded.
"""

from __future__ import annotations

import ast
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest

import phloem
from phloem import task
from phloem.app import Phloem
from phloem.loading import load_module_pipelines

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> str:
    return str(EXAMPLES / name)


def run(name: str, **kwargs: Any) -> phloem.RunResult:
    return phloem.run(example(name), **kwargs)


@pytest.fixture
def store(home: Path) -> Iterator[Any]:
    """The store of the test's phloem home (where the runs above were recorded)."""
    env = Phloem.open()
    yield env.store
    env.store.close()


def in_background(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def wait_for(path_glob: Callable[[], list[Path]], timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path_glob()
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("timed out waiting for a file")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".test-tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


# -- every file ----------------------------------------------------------------------------------


EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_defines_one_pipeline_and_says_how_to_run_it(name: str) -> None:
    source = (EXAMPLES / name).read_text()
    doc = ast.get_docstring(ast.parse(source))
    assert doc, f"{name} needs a module docstring"
    assert "Pattern" in doc or "pattern" in doc
    assert f"phloem run examples/{name}" in doc
    assert len(load_module_pipelines(EXAMPLES / name)) == 1


def test_every_example_has_a_test() -> None:
    text = Path(__file__).read_text()
    untested = [n for n in EXAMPLE_FILES if f'run("{n}"' not in text]
    assert not untested, f"examples without a test here: {untested}"


# -- etl.py --------------------------------------------------------------------------------------


def test_etl_cleans_validates_and_writes_one_parquet_per_logical_date(home: Path) -> None:
    r = run("etl.py", logical_date="2026-03-04T02:00:00")
    assert r.succeeded, r.states()
    loaded = r.output("load_to_feature_store")
    target = home / "examples" / "feature_store" / "diabetes_features" / "date=2026-03-04.parquet"
    assert Path(loaded["path"]) == target

    table = pd.read_parquet(target)
    raw = r.output("extract_patient_records")
    assert len(raw) == 442 + 15  # the duplicated export is in the raw data...
    assert len(table) == loaded["rows"] == 442  # ...and gone from the table
    assert table["patient_id"].is_unique
    assert not table.isna().any().any()
    assert table["bp"].between(50, 160).all()  # the kPa readings were converted
    assert {"bmi_class", "chol_hdl_ratio", "ldl_hdl_ratio", "glucose_z"} <= set(table.columns)
    assert set(table["sex"]) == {"F", "M"}


def test_etl_validation_failure_loads_nothing(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    r = run("etl.py", params={"min_rows": 10_000, "output_dir": str(out)})
    assert r.state is phloem.RunState.FAILED
    assert r.task_state("validate_data_quality") is phloem.TaskState.FAILED
    assert r.task_state("load_to_feature_store") is phloem.TaskState.UPSTREAM_FAILED
    assert "at least 10000 rows" in (r.tasks[("validate_data_quality", -1)].error or "")
    assert not out.exists()


# -- train.py ------------------------------------------------------------------------------------


def test_train_registers_only_models_that_beat_the_champion(home: Path) -> None:
    weak = run("train.py", params={"C": 0.001})
    assert weak.succeeded, weak.states()
    assert weak.task_state("deploy") is phloem.TaskState.SUCCESS  # no champion yet
    assert weak.task_state("keep_current") is phloem.TaskState.SKIPPED
    assert phloem.models.aliases("breast_cancer") == {"champion": 1, "production": 1}

    again = run("train.py", params={"C": 0.001})
    assert again.succeeded
    assert again.task_state("deploy") is phloem.TaskState.SKIPPED
    assert again.task_state("keep_current") is phloem.TaskState.SUCCESS
    assert [v.version for v in phloem.models.versions("breast_cancer")] == [1]

    strong = run("train.py")
    assert strong.succeeded
    assert strong.task_state("deploy") is phloem.TaskState.SUCCESS
    metrics = strong.output("evaluate_model")
    assert metrics["accuracy"] > weak.output("evaluate_model")["accuracy"]
    assert metrics["accuracy"] > 0.95 and metrics["roc_auc"] > 0.98
    assert phloem.models.aliases("breast_cancer") == {"champion": 2, "production": 2}
    v2 = phloem.models.get("breast_cancer@production")
    assert v2.params == {"C": 1.0} and v2.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    moves = [(m.alias, m.version) for m in phloem.models.history("breast_cancer")]
    assert ("production", 1) in moves and ("production", 2) in moves

    # the registered model is the one that was evaluated
    model = phloem.models.load("breast_cancer@production")
    test = strong.output("split_data")["test"]
    accuracy = (model.predict(test.drop(columns="target")) == test["target"]).mean()
    assert accuracy == pytest.approx(metrics["accuracy"])


def test_train_keeps_metrics_and_a_validation_report(home: Path, store: Any) -> None:
    r = run("train.py")
    final = store.tracking.final([r.run_id])[r.run_id]
    assert final["accuracy"] > 0.95 and final["training_data.rows"] == 569
    roles = {u.role for u in store.artifact_uses(r.run_id)}
    assert "validation" in roles


# -- fan_out_training.py -------------------------------------------------------------------------


def test_fan_out_trains_100_models_and_keeps_the_best_per_region(home: Path) -> None:
    r = run("fan_out_training.py")
    assert r.succeeded
    states = r.states()
    trained = [k for k in states if k.startswith("train_single_model[")]
    assert len(trained) == 100
    assert all(states[k] == "success" for k in trained)

    configs = r.output("get_model_configs")
    results = r.output("train_single_model")
    assert [x["model_id"] for x in results] == [c["model_id"] for c in configs]  # in order
    best = r.output("aggregate_results")
    assert len(best) == 10
    for region, winner in best.items():
        in_region = [x["val_auc"] for x in results if x["region"] == region]
        assert len(in_region) == 10
        assert winner["val_auc"] == max(in_region)
    assert len({w["family"] for w in best.values()}) > 1  # regions really differ
    published = json.loads(Path(r.output("update_model_registry")).read_text())
    assert published["models"] == best


def test_fan_out_width_follows_the_parameter(home: Path) -> None:
    r = run("fan_out_training.py", params={"n_regions": 2})
    assert r.succeeded
    assert len(r.output("train_single_model")) == 20
    assert set(r.output("aggregate_results")) == {"us-west-1", "us-west-2"}


# -- approval.py ---------------------------------------------------------------------------------

APPROVAL_PATHS = ["auto_deploy", "request_human_review", "reject_model"]


def approve_ticket(deploy_dir: Path, status: str, reviewer: str = "dana") -> None:
    ticket = wait_for(lambda: sorted((deploy_dir / "reviews").glob("*.json")))
    time.sleep(0.3)  # let the sensor see the pending ticket at least once
    review = json.loads(ticket.read_text())
    write_json(ticket, {**review, "status": status, "reviewer": reviewer})


@pytest.mark.parametrize(
    ("thresholds", "path"),
    [
        ({"auto_deploy_at": 0.5, "accuracy_floor": 0.4}, "auto_deploy"),
        ({"auto_deploy_at": 1.0, "accuracy_floor": 0.5}, "request_human_review"),
        ({"auto_deploy_at": 1.0, "accuracy_floor": 1.0}, "reject_model"),
    ],
)
def test_approval_follows_one_path_per_threshold(
    home: Path, tmp_path: Path, thresholds: dict[str, float], path: str
) -> None:
    deploy_dir = tmp_path / "deploy"
    reviewer = None
    if path == "request_human_review":
        reviewer = in_background(lambda: approve_ticket(deploy_dir, "approved"))
    r = run("approval.py", params={**thresholds, "deploy_dir": str(deploy_dir)})
    if reviewer is not None:
        reviewer.join(5)
    assert r.succeeded, r.states()
    assert r.output("check_quality") == path
    for other in set(APPROVAL_PATHS) - {path}:
        assert r.task_state(other) is phloem.TaskState.SKIPPED
    accuracy = r.output("evaluate_model")["accuracy"]
    assert 0.9 < accuracy < 1.0

    production = deploy_dir / "production"
    notice = r.output("notify_team")
    if path == "auto_deploy":
        assert json.loads((production / "metadata.json").read_text())["approved_by"] == (
            "quality gate"
        )
        assert "deployed automatically" in notice
        assert r.task_state("wait_for_approval") is phloem.TaskState.SKIPPED
    elif path == "request_human_review":
        assert r.output("wait_for_approval")["status"] == "approved"
        assert json.loads((production / "metadata.json").read_text())["approved_by"] == "dana"
        assert "deployed after review" in notice
        assert r.tasks[("wait_for_approval", -1)].try_number >= 2  # it waited, then saw it
    else:
        assert not production.exists()
        assert json.loads(Path(r.output("reject_model")).read_text())["metrics"]["accuracy"] == (
            accuracy
        )
        assert "rejected" in notice
    if production.exists():
        model = joblib.load(production / "model.joblib")
        assert hasattr(model, "predict_proba")


def test_approval_reviewer_rejection_skips_deployment(home: Path, tmp_path: Path) -> None:
    deploy_dir = tmp_path / "deploy"
    reviewer = in_background(lambda: approve_ticket(deploy_dir, "rejected"))
    r = run("approval.py", params={"auto_deploy_at": 1.0, "deploy_dir": str(deploy_dir)})
    reviewer.join(5)
    assert r.succeeded
    assert r.task_state("wait_for_approval") is phloem.TaskState.SKIPPED
    assert r.task_state("deploy_after_approval") is phloem.TaskState.SKIPPED
    assert not (deploy_dir / "production").exists()
    assert r.output("notify_team").endswith("the reviewer rejected it")


# -- flaky_api.py --------------------------------------------------------------------------------


def retry_gaps(store: Any, run_id: str, task_id: str) -> list[float]:
    """How long each retry waited, as observed (never less than planned; more on a busy
    machine)."""
    attempts = store.attempts(run_id, task_id)
    return [b.started_at - a.ended_at for a, b in itertools.pairwise(attempts)]


def planned_delays(store: Any, run_id: str, task_id: str) -> list[str]:
    """The delay the engine chose for each retry, from its events ("retry 1 of 5 in 0.2s")."""
    return [
        e.reason.rsplit(" in ", 1)[1]
        for e in store.events(run_id)
        if e.task_id == task_id and e.new_state == "up_for_retry"
    ]


def test_flaky_api_retries_with_growing_delays_then_succeeds(home: Path, store: Any) -> None:
    r = run("flaky_api.py", params={"fail_times": 3})
    assert r.succeeded, r.states()
    fetch = r.tasks[("fetch_field_measurements", -1)]
    assert fetch.try_number == 4

    attempts = store.attempts(r.run_id, "fetch_field_measurements")
    assert [a.state for a in attempts] == ["up_for_retry"] * 3 + ["success"]
    assert all("503" in (a.error or "") for a in attempts[:3])
    assert planned_delays(store, r.run_id, "fetch_field_measurements") == ["0.2s", "0.4s", "0.8s"]
    gaps = retry_gaps(store, r.run_id, "fetch_field_measurements")
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert delay * 0.95 <= gap  # the planned delay was kept

    logs = sorted((home / "logs" / r.run_id).glob("fetch_field_measurements.*.log"))
    assert len(logs) == 4
    assert "calling the lab API (attempt 4)" in logs[-1].read_text()

    classified = r.output("classify_measurements")
    assert classified["n_samples"] == 40
    assert sum(classified["species_counts"].values()) == 40
    assert set(classified["species_counts"]) <= {"setosa", "versicolor", "virginica"}


def test_flaky_api_gives_up_after_five_retries_with_capped_delay(home: Path, store: Any) -> None:
    r = run("flaky_api.py", params={"fail_times": 9})
    assert r.state is phloem.RunState.FAILED
    assert r.task_state("fetch_field_measurements") is phloem.TaskState.FAILED
    assert r.task_state("classify_measurements") is phloem.TaskState.UPSTREAM_FAILED
    assert r.task_state("train_species_classifier") is phloem.TaskState.SUCCESS
    assert r.tasks[("fetch_field_measurements", -1)].try_number == 6
    delays = planned_delays(store, r.run_id, "fetch_field_measurements")
    assert delays == ["0.2s", "0.4s", "0.8s", "1.6s", "2s"]  # 3.2, capped at 2
    gaps = retry_gaps(store, r.run_id, "fetch_field_measurements")
    assert len(gaps) == 5
    assert gaps[3] >= 1.6 * 0.95
    assert gaps[4] >= 2.0 * 0.95


# -- diamond.py ----------------------------------------------------------------------------------


def test_diamond_joins_both_feature_families(home: Path, store: Any) -> None:
    r = run("diamond.py")
    assert r.succeeded
    shape, texture = r.output("extract_shape_features"), r.output("extract_texture_features")
    assert all(c.startswith("shape_") for c in shape.columns)
    assert all(c.startswith("texture_") for c in texture.columns)
    assert shape.index.equals(texture.index)

    result = r.output("train_classifier")
    assert result["n_features"] == shape.shape[1] + texture.shape[1]
    assert result["n_samples"] == 569
    cv = result["cv_accuracy"]
    assert cv["combined"] > 0.95
    assert cv["combined"] >= max(cv["shape_only"], cv["texture_only"])

    ended = {a.task_id: a.ended_at for a in store.attempts(r.run_id)}
    started = store.attempts(r.run_id, "train_classifier")[0].started_at
    assert started >= ended["extract_shape_features"]
    assert started >= ended["extract_texture_features"]


# -- batch_inference.py --------------------------------------------------------------------------


def partitions(root: Path) -> dict[str, tuple[str, int]]:
    """Each partition's logical date -> (the model that scored it, rows)."""
    out = {}
    for f in sorted(root.glob("logical_date=*/predictions.parquet")):
        frame = pd.read_parquet(f)
        out[f.parent.name.removeprefix("logical_date=")] = (str(frame["model"].iloc[0]), len(frame))
    return out


def test_batch_inference_scores_each_batch_once(home: Path) -> None:
    root = home / "examples" / "predictions"

    cold = run("batch_inference.py", logical_date="2026-01-31T10:05:00")
    assert cold.succeeded, cold.states()
    assert cold.output("resolve_production_model") == "breast_cancer:1"  # a baseline
    assert phloem.models.get("breast_cancer@production").tags == {"baseline": True}
    assert partitions(root) == {"2026-01-31T10-05-00": ("breast_cancer:1", 50)}
    assert "scored 50 records with breast_cancer:1" in cold.output("send_completion_notification")

    # re-running the batch from its first task replaces its partition, never duplicates it
    again = phloem.retry(cold.run_id, task="fetch_new_records", downstream=True)
    assert again.succeeded
    assert partitions(root) == {"2026-01-31T10-05-00": ("breast_cancer:1", 50)}
    assert [v.version for v in phloem.models.versions("breast_cancer")] == [1]  # no new baseline

    assert run("train.py").succeeded  # better than nothing: version 2 goes to production
    later = run("batch_inference.py", logical_date="2026-01-31T10:10:00")
    assert later.succeeded
    assert later.output("resolve_production_model") == "breast_cancer:2"
    assert partitions(root) == {
        "2026-01-31T10-05-00": ("breast_cancer:1", 50),
        "2026-01-31T10-10-00": ("breast_cancer:2", 50),
    }
    predictions = later.output("run_batch_predictions")
    assert set(predictions["label"]) <= {"benign", "malignant"}
    assert predictions["p_benign"].between(0, 1).all()
    # a different window holds different records
    assert set(predictions["record_id"]) != set(cold.output("run_batch_predictions")["record_id"])


def test_batch_inference_is_scheduled_every_five_minutes() -> None:
    p = load_module_pipelines(EXAMPLES / "batch_inference.py")["batch_inference"]
    assert p.spec.schedule_text == "*/5 * * * *"
    assert p.spec.max_active_runs == 1


# -- drift_monitoring.py and retraining.py -------------------------------------------------------


def test_drift_monitoring_alerts_only_on_drift(home: Path) -> None:
    alerts = home / "examples" / "alerts"
    calm = run("drift_monitoring.py", params={"scanner_gain": 1.0})
    assert calm.succeeded
    assert calm.output("check_drift")["drifted"] == []
    assert calm.task_state("raise_drift_alert") is phloem.TaskState.SKIPPED
    assert not (alerts / "drift_alert.json").exists()

    drift = run("drift_monitoring.py")
    assert drift.succeeded
    alert = json.loads((alerts / "drift_alert.json").read_text())
    assert alert["raised_by"] == drift.run_id
    assert set(alert["drifted_features"]) == {
        f"{kind} {m}" if kind != "error" else f"{m} error"
        for m in ("radius", "perimeter", "area")
        for kind in ("mean", "worst", "error")
    }
    assert alert["max_psi"] > 0.2


def test_retraining_runs_on_drift_events_and_deploys_a_better_model(
    home: Path, store: Any
) -> None:
    assert run("train.py").succeeded  # production model v1, trained before the drift
    drift = run("drift_monitoring.py")
    assert drift.succeeded
    events = store.listing.asset_events("drift:breast_cancer").items
    assert [e.run_id for e in events] == [drift.run_id]  # one event, for the scheduler

    r = run("retraining.py")
    assert r.succeeded, r.states()
    evaluation = r.output("evaluate_on_recent_data")
    assert evaluation["current"]["version"] == 1
    assert evaluation["new"]["accuracy"] > evaluation["current"]["accuracy"] + 0.03
    assert r.task_state("deploy_model") is phloem.TaskState.SUCCESS
    assert r.task_state("keep_current_model") is phloem.TaskState.SKIPPED
    production = phloem.models.get("breast_cancer@production")
    assert production.version == 2 and production.tags == {"trigger": "drift"}
    assert phloem.models.aliases("breast_cancer")["champion"] == 1  # train.py's, untouched

    # retrained on the same drifted data: no better than v2, so v2 stays
    again = run("retraining.py")
    assert again.succeeded
    assert again.task_state("deploy_model") is phloem.TaskState.SKIPPED
    assert again.output("keep_current_model") == 2
    assert len(phloem.models.versions("breast_cancer")) == 2


def test_retraining_is_scheduled_on_the_drift_asset() -> None:
    p = load_module_pipelines(EXAMPLES / "retraining.py")["retraining_pipeline"]
    assert p.spec.assets == ("drift:breast_cancer",)


# -- fraud_detection.py --------------------------------------------------------------------------


def test_fraud_training_gates_registers_and_deploys(home: Path, store: Any) -> None:
    first = run("fraud_detection.py")
    assert first.succeeded, first.states()
    metrics = first.output("evaluate")
    assert metrics["roc_auc"] >= 0.85 and metrics["average_precision"] >= 0.3
    assert first.task_state("deploy") is phloem.TaskState.SUCCESS
    assert phloem.models.aliases("fraud") == {"champion": 1, "production": 1}
    v1 = phloem.models.get("fraud:1")
    assert v1.metrics["average_precision"] == pytest.approx(metrics["average_precision"])
    assert v1.eval_digest  # compared on the held-out transactions by their content

    # early stopping cut training short, and its learning curve is kept with the run
    curve = [m for m in store.tracking.metrics([first.run_id]) if m.key.startswith("validation_")]
    iterations = store.tracking.params([first.run_id])[first.run_id]["iterations"]
    assert len(curve) == iterations + 1 and iterations < 300
    roles = {u.role for u in store.artifact_uses(first.run_id)}
    assert {"validation", "model", "input"} <= roles  # the eval data is an input

    # the same candidate again is not better: nothing registered, production unchanged
    same = run("fraud_detection.py")
    assert same.task_state("deploy") is phloem.TaskState.SKIPPED
    assert same.output("keep_current") == 1
    assert len(phloem.models.versions("fraud")) == 1

    # a weak model stops at the gate, before the registry
    weak = run("fraud_detection.py", params={"max_iter": 2, "learning_rate": 0.01})
    assert weak.state is phloem.RunState.FAILED
    assert "gate failed" in (weak.tasks[("evaluate", -1)].error or "")
    assert weak.task_state("promote") is phloem.TaskState.UPSTREAM_FAILED
    assert len(phloem.models.versions("fraud")) == 1


# -- incremental.py ------------------------------------------------------------------------------


def test_incremental_processes_each_event_exactly_once(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "incremental"
    params = {"data_dir": str(data)}

    first = run("incremental.py", params=params, logical_date="2024-01-01T12:00:00")
    assert first.succeeded
    assert first.output("get_watermark") is None
    second = run("incremental.py", params=params, logical_date="2024-01-02T00:00:00")
    assert second.succeeded
    watermark = second.output("get_watermark")
    assert watermark == first.output("update_watermark")

    events = pd.read_parquet(data / "warehouse" / "card_transactions.parquet")
    noon = pd.Timestamp("2024-01-01T12:00:00Z")
    midnight = pd.Timestamp("2024-01-02T00:00:00Z")
    new = second.output("get_new_records")
    assert len(new) == ((events["event_time"] > noon) & (events["event_time"] <= midnight)).sum()
    assert new["event_time"].min() > pd.Timestamp(watermark)
    assert second.output("write_features")["transactions"] == len(new)

    # everything after: processed once; then nothing new, so the rest is skipped
    rest = run("incremental.py", params=params, logical_date="2024-02-01T00:00:00")
    assert rest.succeeded
    idle = run("incremental.py", params=params, logical_date="2024-02-01T01:00:00")
    assert idle.succeeded
    assert idle.task_state("get_new_records") is phloem.TaskState.SKIPPED
    assert idle.task_state("update_watermark") is phloem.TaskState.SKIPPED

    env = Phloem.open()
    try:
        wm = env.store.watermarks.get("card_transactions")
    finally:
        env.close()
    assert wm is not None and pd.Timestamp(wm.value) == events["event_time"].max()
    assert wm.run_id == rest.run_id and wm.task_id == "update_watermark"
    parts = sorted((data / "features").glob("window=*.parquet"))
    assert len(parts) == 3
    processed = sum(int(pd.read_parquet(p)["n_transactions"].sum()) for p in parts)
    assert processed == len(events)  # no event twice, none missed


# -- production_training.py ----------------------------------------------------------------------


def test_production_training_deploys_through_groups_and_cleans_up(home: Path) -> None:
    workdir = home / "examples" / "production_training"
    r = run("production_training.py")
    assert r.succeeded, r.states()
    assert list(r.states())[:2] == [
        "data_preparation.data_ingestion",
        "data_preparation.data_validation",
    ]
    metrics = r.output("model_training.evaluate_model")
    assert metrics["auc_roc"] > 0.9
    assert r.task_state("deploy_model") is phloem.TaskState.SUCCESS
    assert r.task_state("notify_failure") is phloem.TaskState.SKIPPED
    deployed = joblib.load(workdir / "production" / "model.joblib")
    assert deployed["run_id"] == r.run_id and deployed["metrics"] == metrics
    assert r.output("cleanup_scratch") > 0
    assert not (workdir / "scratch" / r.run_id).exists()

    tasks = r.spec.tasks
    assert tasks["model_training.train_model"].options.retries == 2  # pipeline default
    assert tasks["model_training.train_model"].options.timeout == 7200
    assert tasks["data_preparation.data_validation"].options.retries == 0  # its own
    assert tasks["cleanup_scratch"].options.retries == 0


def test_production_training_gate_notifies_instead_of_deploying(home: Path) -> None:
    r = run("production_training.py", params={"auc_floor": 0.999})
    assert r.succeeded
    assert r.task_state("deploy_model") is phloem.TaskState.SKIPPED
    assert "not deployed" in r.output("notify_failure")
    assert not (home / "examples" / "production_training" / "production").exists()


def test_production_training_cleans_up_after_a_failure(home: Path) -> None:
    r = run("production_training.py", params={"min_rows": 10_000})
    assert r.task_state("data_preparation.data_validation") is phloem.TaskState.FAILED
    assert r.tasks[("data_preparation.data_validation", -1)].try_number == 1  # not retried
    assert r.task_state("model_training.train_model") is phloem.TaskState.UPSTREAM_FAILED
    assert r.task_state("cleanup_scratch") is phloem.TaskState.SUCCESS
    assert not (home / "examples" / "production_training" / "scratch" / r.run_id).exists()


def test_production_training_run_fails_when_validation_fails(home: Path) -> None:
    # the clean-up is a teardown task: it still runs, but does not decide the run's state
    r = run("production_training.py", params={"min_rows": 10_000})
    assert r.task_state("cleanup_scratch") is phloem.TaskState.SUCCESS
    assert r.state is phloem.RunState.FAILED


# -- model_selection.py --------------------------------------------------------------------------


def test_model_selection_trains_three_families_and_deploys_the_best(
    home: Path, tmp_path: Path
) -> None:
    r = run("model_selection.py", params={"deploy_dir": str(tmp_path)})
    assert r.succeeded
    assert r.spec.tasks["build_ensemble"].upstream == (
        "train_ridge",
        "train_random_forest",
        "train_gradient_boosting",
    )
    selection = r.output("evaluate_and_select_best")
    scores = selection["scores"]
    assert set(scores) == {"ridge", "random_forest", "gradient_boosting", "ensemble"}
    assert selection["best"] == max(scores, key=lambda n: scores[n]["r2"])
    assert scores[selection["best"]]["r2"] > 0.3
    assert json.loads((tmp_path / "model.json").read_text())["model"] == selection["best"]
    assert (tmp_path / "model.joblib").exists()
    assert selection["best"] in r.output("send_success_report")


def test_model_selection_quality_gate_fails_the_run(home: Path, tmp_path: Path) -> None:
    r = run("model_selection.py", params={"r2_floor": 0.9, "deploy_dir": str(tmp_path)})
    assert r.state is phloem.RunState.FAILED
    assert "< 0.9" in (r.tasks[("evaluate_and_select_best", -1)].error or "")
    assert r.task_state("deploy_best_model") is phloem.TaskState.UPSTREAM_FAILED
    assert not (tmp_path / "model.joblib").exists()


# -- fallback.py ---------------------------------------------------------------------------------


def test_fallback_not_used_while_the_service_is_up(home: Path) -> None:
    r = run("fallback.py")
    assert r.succeeded
    assert r.task_state("score_with_cached_model") is phloem.TaskState.SKIPPED
    published = r.output("publish_scores")
    assert published["source"] == "model_service"
    assert published["n_scores"] == 25
    assert set(published["scores"].values()) <= {0, 1, 2}


def test_fallback_scores_with_the_cached_model_when_the_service_is_down(
    home: Path, store: Any
) -> None:
    r = run("fallback.py", params={"service_healthy": False})
    assert r.succeeded  # degraded, not failed
    assert r.task_state("score_with_model_service") is phloem.TaskState.FAILED
    assert len(store.attempts(r.run_id, "score_with_model_service")) == 3
    published = r.output("publish_scores")
    assert published["source"] == "cached_model"
    requests = r.output("fetch_scoring_requests")
    assert set(published["scores"]) == set(requests["request_id"])


# -- core behaviour the examples rely on ---------------------------------------------------------


def test_explicit_task_option_wins_over_pipeline_default_even_if_equal_to_builtin() -> None:
    @task(retries=0)
    def validate() -> None: ...

    @task
    def ingest() -> None: ...

    @phloem.pipeline(default_task_options={"retries": 2, "trigger_rule": "all_done"})
    def p():  # type: ignore[no-untyped-def]
        ingest() >> validate.with_options(trigger_rule="all_success")()

    assert p.spec.tasks["ingest"].options.retries == 2
    assert p.spec.tasks["ingest"].options.trigger_rule == "all_done"
    assert p.spec.tasks["validate"].options.retries == 0
    assert p.spec.tasks["validate"].options.trigger_rule == "all_success"


def test_file_pipeline_reruns_only_changed_stages(home: Path, tmp_path: Path) -> None:
    import sys

    from phloem.loading import module_name

    path = Path(example("file_pipeline.py"))
    load_module_pipelines(path)
    write_inputs = sys.modules[module_name(path.resolve())].write_inputs
    data = tmp_path / "data"
    write_inputs(str(data))
    params = {
        "raw": str(data / "raw.csv"),
        "params": str(data / "params.json"),
        "data_dir": str(data),
    }
    stamp = itertools.count()

    def go() -> phloem.RunResult:
        r = run("file_pipeline.py", params=params, logical_date=f"2026-01-0{next(stamp) + 1}")
        assert r.state is phloem.RunState.SUCCESS, r.states()
        return r

    first = go()
    assert set(first.states().values()) == {"success"}
    metrics = first.output("evaluate")
    assert metrics["auc"] > 0.95 and metrics["accuracy"] > 0.9
    assert isinstance(first.output("train"), phloem.File)
    assert set(go().states().values()) == {"cached"}

    (data / "params.json").write_text(json.dumps({"max_iter": 50, "max_depth": 2}))
    assert go().states() == {
        "prepare": "cached",
        "featurize": "cached",
        "train": "success",
        "evaluate": "success",
    }
    (data / "features.csv").unlink()  # an output deleted: its stage and those after it run
    r = go()
    assert r.states()["featurize"] == "success" and r.states()["prepare"] == "cached"
    assert r.output("evaluate") == go().output("evaluate")
