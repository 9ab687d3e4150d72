"""Train a classifier and deploy it only if it beats the champion in phloem's model registry.

Pattern: the training pipeline. fetch data -> validate it (a report artifact) -> split ->
train -> evaluate (metrics logged with the run, a quality gate) -> ``promote``, a
``@task.branch`` around ``phloem.models.register_if_better``: the new model is registered as
a version of ``breast_cancer`` and becomes ``champion`` only if its accuracy beats the
champion's on the same test data; then ``deploy`` points ``production`` at it, otherwise
``keep_current`` says why not. The registry remembers which run, code, parameters and data
made each version (``phloem models show breast_cancer:1 --lineage``).

Run it:

    phloem run examples/train.py                  # first run: version 1, champion and production
    phloem run examples/train.py                  # same model, not better: nothing registered
    phloem run examples/train.py --param C=0.001  # a weaker model: nothing registered
    phloem models show breast_cancer              # versions, aliases and their history
    phloem runs compare RUN_A RUN_B               # params and metrics side by side

or from Python: ``phloem.run("examples/train.py", params={"C": 0.001})``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task

MODEL = "breast_cancer"
TARGET = "target"


@task
def fetch_training_data() -> pd.DataFrame:
    """The breast-cancer diagnostic data: 569 tumours, 30 measurements, target 1 = benign."""
    frame = load_breast_cancer(as_frame=True).frame
    print(f"fetched {len(frame)} rows, {frame.shape[1] - 1} features")
    return frame


@task
def validate_data(data: pd.DataFrame) -> pd.DataFrame:
    """Fail before training on data that cannot be right (the report is kept as an artifact)."""
    features = [c for c in data.columns if c != TARGET]
    (
        phloem.expect(data, name="training_data")
        .row_count(min=200)
        .not_null(*data.columns)
        .isin(TARGET, {0, 1})
        .satisfies(lambda df: (df[features] >= 0).all(axis=1), name="measurements >= 0")
        .check(on_fail="fail")
    )
    return data


@task
def split_data(data: pd.DataFrame, test_size: float, seed: int) -> dict[str, pd.DataFrame]:
    train, test = train_test_split(
        data, test_size=test_size, random_state=seed, stratify=data[TARGET]
    )
    return {"train": train, "test": test}  # each part stored on its own, as Parquet


@task
def train_model(train: pd.DataFrame, C: float) -> Pipeline:
    phloem.log_params({"C": C, "model": "logistic_regression", "rows": len(train)})
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    model.fit(train.drop(columns=TARGET), train[TARGET])
    return model


@task
def evaluate_model(model: Pipeline, test: pd.DataFrame) -> dict[str, float]:
    X, y = test.drop(columns=TARGET), test[TARGET]
    predicted = model.predict(X)
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted)),
        "roc_auc": float(roc_auc_score(y, model.predict_proba(X)[:, 1])),
    }
    phloem.log_metrics(metrics)
    phloem.gate(metrics, {"roc_auc": ">= 0.9", "accuracy": ">= 0.85"})  # else the run fails
    print("test metrics:", metrics)
    return metrics


@task.branch
def promote(
    model: Pipeline, metrics: dict[str, float], test: pd.DataFrame, C: float
) -> str | None:
    """Register the model and make it champion only if it beats the champion on this test
    data; follow ``deploy`` if it did, ``keep_current`` if not."""
    decision = phloem.models.register_if_better(
        MODEL,
        model,
        metric="accuracy",
        metrics=metrics,
        params={"C": C},
        eval_data=test,
        alias="champion",
        tags={"pipeline": "training_pipeline"},
    )
    print(decision.reason)
    return decision.choose("deploy", "keep_current")


@task
def deploy() -> dict[str, Any]:
    """Point ``production`` at the new champion (its registration landed with ``promote``)."""
    champion = phloem.models.get(f"{MODEL}@champion")
    phloem.models.set_alias(
        MODEL, champion.version, "production", reason=f"champion of run {phloem.context().run_id}"
    )
    print(f"deployed {MODEL}:{champion.version}")
    return {"version": champion.version, "metrics": champion.metrics}


@task
def keep_current() -> str:
    current = phloem.models.aliases(MODEL).get("production")
    print(f"keeping {MODEL}:{current} in production")
    return f"{MODEL}:{current}"


@phloem.pipeline(tags=["training", "quickstart"])
def training_pipeline(C: float = 1.0, test_size: float = 0.25, seed: int = 42):
    """Train a breast-cancer classifier; deploy it if it beats the champion."""
    data = validate_data(fetch_training_data())
    split = split_data(data, test_size, seed)
    model = train_model(split["train"], C)
    metrics = evaluate_model(model, split["test"])
    promote(model, metrics, split["test"], C) >> [deploy(), keep_current()]
