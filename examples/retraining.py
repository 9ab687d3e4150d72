"""Retrain automatically when the input data drift, and deploy only if the model improved.

Pattern: a retraining trigger. The pipeline starts with ``wait_for_drift_alert``, a sensor that
waits for the alert file ``examples/drift_monitoring.py`` writes. In reschedule mode it holds no
worker between checks, and with ``soft_fail`` a run that sees no alert within the hour ends
quietly, its tasks skipped. Once an alert arrives: fetch recent labelled data -> retrain ->
validate the new model against the production model on recent data -> a branch deploys it
(a new version in the registry shared with ``examples/train.py``) only if it is better, else
keeps the current one -> ``acknowledge_alert`` archives the alert, so the next run waits for a
new one.

Run it:

    phloem run examples/train.py               # a production model (optional)
    phloem run examples/drift_monitoring.py    # raises a drift alert
    phloem run examples/retraining.py          # sees the alert, retrains, deploys

Started before any alert exists, it waits (checking every second) until one appears.
``scanner_gain`` simulates the drift in the recent data, as in drift_monitoring.py. Folders
default to ``<phloem home>/examples/alerts`` and ``<phloem home>/examples/registry``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task

SIZE_FEATURES = ("radius", "perimeter", "area")


def home_path(value: str, default: str) -> Path:
    """``value``, or ``<phloem home>/examples/<default>`` when it is empty."""
    if value:
        return Path(value)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / default


def read_registry(folder: Path) -> dict[str, Any]:
    index = folder / "registry.json"
    if not index.exists():
        return {"best_version": None, "versions": []}
    return json.loads(index.read_text())


@phloem.sensor(poke_interval=1.0, timeout=3600, mode="reschedule", soft_fail=True)
def wait_for_drift_alert(alerts_dir: str) -> dict[str, Any] | None:
    alert_file = home_path(alerts_dir, "alerts") / "drift_alert.json"
    if not alert_file.exists():
        return None
    alert = json.loads(alert_file.read_text())
    print(f"drift alert from run {alert['raised_by']}: {', '.join(alert['drifted_features'])}")
    return alert


@task
def fetch_recent_training_data(alert: dict[str, Any], scanner_gain: float) -> dict[str, Any]:
    """Labelled scans since the drift began (simulated: size features read ``scanner_gain``
    times larger), split into training and validation sets."""
    data = load_breast_cancer(as_frame=True).frame
    size_columns = [c for c in data.columns if any(k in c for k in SIZE_FEATURES)]
    data[size_columns] *= scanner_gain
    train, validation = train_test_split(
        data, test_size=0.3, random_state=1, stratify=data["target"]
    )
    print(
        f"{len(train)} training and {len(validation)} validation scans; "
        f"drifted features: {len(alert['drifted_features'])}"
    )
    return {"train": train, "validation": validation}


@task
def retrain_model(train: pd.DataFrame) -> Pipeline:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(train.drop(columns="target"), train["target"])


@task
def validate_new_model(
    model: Pipeline, validation: pd.DataFrame, registry_dir: str
) -> dict[str, Any]:
    """Score the new model and the production model on the same recent data."""
    X, y = validation.drop(columns="target"), validation["target"]

    def score(m: Any) -> dict[str, float]:
        return {
            "accuracy": accuracy_score(y, m.predict(X)),
            "roc_auc": roc_auc_score(y, m.predict_proba(X)[:, 1]),
        }

    folder = home_path(registry_dir, "registry")
    registry = read_registry(folder)
    current = None
    if registry["best_version"] is not None:
        entry = next(v for v in registry["versions"] if v["version"] == registry["best_version"])
        current = {"version": entry["version"], **score(joblib.load(folder / entry["path"]))}
    result = {"new": score(model), "current": current}
    print("validation on recent data:", result)
    return result


@task.branch
def deploy_if_improved(validation: dict[str, Any], min_gain: float) -> str:
    current = validation["current"]
    if current is None or validation["new"]["accuracy"] >= current["accuracy"] + min_gain:
        return "deploy_model"
    return "keep_current_model"


@task
def deploy_model(model: Pipeline, validation: dict[str, Any], registry_dir: str) -> int:
    """Register the model as the new best version (what batch_inference.py serves)."""
    folder = home_path(registry_dir, "registry")
    folder.mkdir(parents=True, exist_ok=True)
    registry = read_registry(folder)
    version = 1 + max((v["version"] for v in registry["versions"]), default=0)
    joblib.dump(model, folder / f"model-v{version}.joblib")
    registry["versions"].append(
        {
            "version": version,
            "path": f"model-v{version}.joblib",
            "metrics": validation["new"],
            "params": {"reason": "drift retraining"},
            "run_id": phloem.context().run_id,
            "registered_at": time.time(),
        }
    )
    registry["best_version"] = version
    tmp = folder / "registry.json.tmp"
    tmp.write_text(json.dumps(registry, indent=2))
    tmp.replace(folder / "registry.json")
    print(f"deployed model v{version}")
    return version


@task
def keep_current_model(validation: dict[str, Any]) -> int:
    print(
        f"new model is not better ({validation['new']['accuracy']:.4f} vs "
        f"{validation['current']['accuracy']:.4f}): keeping v{validation['current']['version']}"
    )
    return int(validation["current"]["version"])


@task(trigger_rule="none_failed_min_one_success")
def acknowledge_alert(alert: dict[str, Any], alerts_dir: str) -> str:
    """Archive the handled alert so the next run waits for a new one."""
    folder = home_path(alerts_dir, "alerts")
    handled = folder / "handled"
    handled.mkdir(exist_ok=True)
    target = handled / f"{alert['raised_by']}.json"
    (folder / "drift_alert.json").replace(target)
    return str(target)


@phloem.pipeline(tags=["training", "monitoring"])
def retraining_pipeline(
    scanner_gain: float = 1.3,
    min_gain: float = 0.005,
    alerts_dir: str = "",
    registry_dir: str = "",
):
    """Wait for a drift alert, retrain, and deploy the new model if it is better."""
    alert = wait_for_drift_alert(alerts_dir)
    data = fetch_recent_training_data(alert, scanner_gain)
    model = retrain_model(data["train"])
    validation = validate_new_model(model, data["validation"], registry_dir)
    deployed = deploy_model(model, validation, registry_dir)
    kept = keep_current_model(validation)
    deploy_if_improved(validation, min_gain) >> [deployed, kept]
    [deployed, kept] >> acknowledge_alert(alert, alerts_dir)
