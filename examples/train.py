"""Train a classifier and register it only if it beats the current best model.

Pattern: the training pipeline. fetch data -> split -> train -> evaluate -> a ``@task.branch``
that compares the new model with the best one in the model registry: ``register_model`` runs
when the new model is better, and is skipped otherwise.

The registry is deliberately tiny: ``registry.json`` (every version with its metrics and
parameters, and which one is best) next to one ``model-v<N>.joblib`` per version, in
``registry_dir`` (default: ``<phloem home>/examples/registry``).

Run it:

    phloem run examples/train.py                  # first run: registers v1
    phloem run examples/train.py                  # same model, not better: skips registering
    phloem run examples/train.py --param C=0.001  # a weaker model: skips registering

or from Python: ``phloem.run("examples/train.py", params={"C": 0.001})``.
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
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task

TARGET = "target"


def registry_path(registry_dir: str) -> Path:
    """``registry_dir``, or ``<phloem home>/examples/registry`` when it is empty."""
    if registry_dir:
        return Path(registry_dir)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "registry"


def read_registry(folder: Path) -> dict[str, Any]:
    index = folder / "registry.json"
    if not index.exists():
        return {"best_version": None, "versions": []}
    return json.loads(index.read_text())


@task
def fetch_training_data() -> pd.DataFrame:
    """The breast-cancer diagnostic data: 569 tumours, 30 measurements, target 1 = benign."""
    frame = load_breast_cancer(as_frame=True).frame
    print(f"fetched {len(frame)} rows, {frame.shape[1] - 1} features")
    return frame


@task
def split_data(data: pd.DataFrame, test_size: float, seed: int) -> dict[str, pd.DataFrame]:
    train, test = train_test_split(
        data, test_size=test_size, random_state=seed, stratify=data[TARGET]
    )
    return {"train": train, "test": test}


@task
def train_model(train: pd.DataFrame, C: float) -> Pipeline:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    model.fit(train.drop(columns=TARGET), train[TARGET])
    return model


@task
def evaluate_model(model: Pipeline, test: pd.DataFrame) -> dict[str, float]:
    X, y = test.drop(columns=TARGET), test[TARGET]
    predicted = model.predict(X)
    metrics = {
        "accuracy": accuracy_score(y, predicted),
        "f1": f1_score(y, predicted),
        "roc_auc": roc_auc_score(y, model.predict_proba(X)[:, 1]),
        "n_test": len(test),
    }
    print("test metrics:", metrics)
    return metrics


@task.branch
def compare_to_best(metrics: dict[str, float], registry_dir: str) -> str | None:
    """Follow ``register_model`` only if the new model beats the registered best."""
    registry = read_registry(registry_path(registry_dir))
    best = next((v for v in registry["versions"] if v["version"] == registry["best_version"]), None)
    if best is None:
        print("registry is empty: registering the first model")
        return "register_model"
    if metrics["accuracy"] > best["metrics"]["accuracy"]:
        print(
            f"accuracy {metrics['accuracy']:.4f} beats v{best['version']} "
            f"({best['metrics']['accuracy']:.4f})"
        )
        return "register_model"
    print(
        f"accuracy {metrics['accuracy']:.4f} does not beat v{best['version']} "
        f"({best['metrics']['accuracy']:.4f}): keeping the current model"
    )
    return None


@task
def register_model(
    model: Pipeline, metrics: dict[str, float], registry_dir: str, C: float
) -> dict[str, Any]:
    folder = registry_path(registry_dir)
    folder.mkdir(parents=True, exist_ok=True)
    registry = read_registry(folder)
    version = 1 + max((v["version"] for v in registry["versions"]), default=0)
    model_file = folder / f"model-v{version}.joblib"
    joblib.dump(model, model_file)
    entry = {
        "version": version,
        "path": model_file.name,
        "metrics": metrics,
        "params": {"C": C},
        "run_id": phloem.context().run_id,
        "registered_at": time.time(),
    }
    registry["versions"].append(entry)
    registry["best_version"] = version
    tmp = folder / "registry.json.tmp"
    tmp.write_text(json.dumps(registry, indent=2))
    tmp.replace(folder / "registry.json")  # readers never see a half-written index
    print(f"registered model v{version} at {model_file}")
    return entry


@phloem.pipeline(tags=["training", "quickstart"])
def training_pipeline(
    registry_dir: str = "", C: float = 1.0, test_size: float = 0.25, seed: int = 42
):
    """Train a breast-cancer classifier; register it if it beats the best model so far."""
    data = fetch_training_data()
    split = split_data(data, test_size, seed)
    model = train_model(split["train"], C)
    metrics = evaluate_model(model, split["test"])
    compare_to_best(metrics, registry_dir) >> register_model(model, metrics, registry_dir, C)
