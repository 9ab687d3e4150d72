"""Retrain when the input data drift, and deploy only a model that passes its gate and beats
production on the recent data.

Pattern: the retraining trigger. The pipeline is scheduled on ``Asset("drift:breast_cancer")``,
which ``examples/drift_monitoring.py`` emits (with ``phloem.emit``) only when a feature drifted:
a scheduler starts exactly one run per drift event, and none while the data are stable. Then:
fetch recent labelled data -> retrain -> score the new model and the production model on the
same recent data -> ``decide``, a branch: the new model must pass its quality gate and beat
production by ``min_gain``; ``deploy_model`` registers it in ``breast_cancer`` and points
``production`` at it (what ``examples/batch_inference.py`` serves), otherwise
``keep_current_model`` says why.

Run it:

    phloem run examples/train.py               # a production model (optional)
    phloem run examples/drift_monitoring.py    # emits the drift event
    phloem scheduler                           # with both files in ./pipelines: one retraining
    phloem run examples/retraining.py          # or by hand

``scanner_gain`` simulates the drift in the recent data, as in drift_monitoring.py.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import Asset, task

MODEL = "breast_cancer"
SIZE_FEATURES = ("radius", "perimeter", "area")
GATE = {"accuracy": ">= 0.9", "roc_auc": ">= 0.95"}


@task
def fetch_recent_training_data(scanner_gain: float) -> dict[str, pd.DataFrame]:
    """Labelled scans since the drift began (simulated: size features read ``scanner_gain``
    times larger), split into training and validation sets."""
    data = load_breast_cancer(as_frame=True).frame
    size_columns = [c for c in data.columns if any(k in c for k in SIZE_FEATURES)]
    data[size_columns] *= scanner_gain
    train, validation = train_test_split(
        data, test_size=0.3, random_state=1, stratify=data["target"]
    )
    print(f"{len(train)} training and {len(validation)} validation scans")
    return {"train": train, "validation": validation}


@task
def retrain_model(train: pd.DataFrame) -> Pipeline:
    phloem.log_params({"model": "logistic_regression", "rows": len(train)})
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(train.drop(columns="target"), train["target"])


def _score(model: Any, validation: pd.DataFrame) -> dict[str, float]:
    X, y = validation.drop(columns="target"), validation["target"]
    return {
        "accuracy": float(accuracy_score(y, model.predict(X))),
        "roc_auc": float(roc_auc_score(y, model.predict_proba(X)[:, 1])),
    }


@task
def evaluate_on_recent_data(model: Pipeline, validation: pd.DataFrame) -> dict[str, Any]:
    """The new model and the production model, scored on the same recent data."""
    new = _score(model, validation)
    phloem.log_metrics(new)
    current = None
    names = {m.name for m in phloem.models.list_models()}
    if MODEL in names and "production" in phloem.models.aliases(MODEL):
        version = phloem.models.get(f"{MODEL}@production").version
        production = phloem.models.load(f"{MODEL}:{version}")
        current = {"version": version, **_score(production, validation)}
    result = {"new": new, "current": current}
    print("on recent data:", result)
    return result


@task.branch
def decide(evaluation: dict[str, Any], min_gain: float) -> str:
    """Deploy only a model that passes the gate and beats production by ``min_gain``."""
    verdict = phloem.gate(evaluation["new"], GATE, raise_on_fail=False)
    current = evaluation["current"]
    if not verdict:
        print(f"the new model misses its gate: {verdict}")
        return "keep_current_model"
    if current is None or evaluation["new"]["accuracy"] >= current["accuracy"] + min_gain:
        return "deploy_model"
    return "keep_current_model"


@task
def deploy_model(model: Pipeline, evaluation: dict[str, Any], validation: pd.DataFrame) -> int:
    """Register the new model and put it in production (both land with this task's success)."""
    version = phloem.models.register(
        MODEL,
        model,
        metrics=evaluation["new"],
        params={"reason": "drift retraining"},
        eval_data=validation,
        tags={"trigger": "drift"},
    )
    phloem.models.set_alias(
        MODEL, version, "production", reason=f"retrained after drift, run {phloem.context().run_id}"
    )
    print(f"deployed {MODEL}:{version}")
    return version


@task
def keep_current_model(evaluation: dict[str, Any]) -> int | None:
    current = evaluation["current"]
    if current is None:
        print("no model in production, and the new one missed its gate")
        return None
    print(
        f"new model is not better ({evaluation['new']['accuracy']:.4f} vs "
        f"{current['accuracy']:.4f}): keeping {MODEL}:{current['version']}"
    )
    return int(current["version"])


@phloem.pipeline(schedule=[Asset("drift:breast_cancer")], tags=["training", "monitoring"])
def retraining_pipeline(scanner_gain: float = 1.3, min_gain: float = 0.005):
    """Retrain after a drift event; deploy the new model if it is better on recent data."""
    data = fetch_recent_training_data(scanner_gain)
    model = retrain_model(data["train"])
    evaluation = evaluate_on_recent_data(model, data["validation"])
    deployed = deploy_model(model, evaluation, data["validation"])
    kept = keep_current_model(evaluation)
    decide(evaluation, min_gain) >> [deployed, kept]
