"""A production training pipeline: task groups, pipeline-wide retries, a deploy gate, cleanup.

Pattern: the full daily training DAG. Tasks are organised in groups (``data_preparation``,
``feature_engineering``, ``model_training``; their ids read ``data_preparation.data_ingestion``
and so on); every task gets two retries and a two-hour timeout from ``default_task_options``;
``max_active_runs=1`` keeps daily runs from overlapping; ``deploy_decision`` branches to
``deploy_model`` or ``notify_failure`` on AUC, precision and recall floors; and
``cleanup_scratch`` is a teardown task: it deletes the run's scratch files whatever happened
before it, and does not decide the run's state (a failed validation still fails the run).

Large data do not travel through phloem here: each step writes Parquet into the run's scratch
folder and passes the path on, the way a team shares data through object storage.

The data: a card-fraud-like classification problem (5,000 transactions, 20% fraud).

Run it:

    phloem run examples/production_training.py
    phloem run examples/production_training.py --param auc_floor=0.999   # gate says no
    phloem run examples/production_training.py --param min_rows=10000    # validation fails

``workdir`` defaults to ``<phloem home>/examples/production_training`` (``scratch/<run id>``
and ``production/`` inside).
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import precision_score, recall_score, roc_auc_score

import phloem
from phloem import task

LABEL = "is_fraud"


def work_path(workdir: str) -> Path:
    if workdir:
        return Path(workdir)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "production_training"


def scratch_path(workdir: str) -> Path:
    """This run's scratch folder."""
    return work_path(workdir) / "scratch" / phloem.context().run_id


# -- data preparation --------------------------------------------------------------------------


@task
def data_ingestion(workdir: str) -> str:
    X, y = make_classification(
        n_samples=5000,
        n_features=12,
        n_informative=8,
        weights=[0.8, 0.2],
        flip_y=0.01,
        class_sep=1.2,
        random_state=3,
    )
    raw = pd.DataFrame(X, columns=[f"signal_{i}" for i in range(X.shape[1])])
    rng = np.random.default_rng(3)
    raw.insert(0, "user_id", rng.integers(0, 800, size=len(raw)))
    raw.insert(
        1, "amount", np.round(np.exp(3 + raw["signal_0"] * 0.3 + rng.normal(0, 0.5, len(raw))), 2)
    )
    raw[LABEL] = y
    folder = scratch_path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    raw.to_parquet(folder / "raw.parquet", index=False)
    return str(folder / "raw.parquet")


@task(retries=0)  # bad data does not get better by waiting: fail at once
def data_validation(raw_path: str, min_rows: int) -> dict[str, Any]:
    df = pd.read_parquet(raw_path)
    checks = {
        "no null user ids": df["user_id"].notna().all(),
        "amount between 0 and 100000": df["amount"].between(0, 100_000).all(),
        f"at least {min_rows} rows": len(df) >= min_rows,
        "both classes present": df[LABEL].nunique() == 2,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise ValueError(f"data validation failed: {', '.join(failed)}")
    return {"path": raw_path, "rows": len(df), "fraud_rate": float(df[LABEL].mean())}


# -- feature engineering -----------------------------------------------------------------------


@task
def feature_computation(validated: dict[str, Any], workdir: str) -> str:
    df = pd.read_parquet(validated["path"])
    df["log_amount"] = np.log1p(df["amount"])
    df["amount_squared"] = df["amount"] ** 2
    per_user = df.groupby("user_id")["amount"]
    df["user_mean_amount"] = per_user.transform("mean")
    df["amount_vs_user_mean"] = df["amount"] / df["user_mean_amount"]
    df["user_transactions"] = per_user.transform("count")
    target = scratch_path(workdir) / "features.parquet"
    df.to_parquet(target, index=False)
    return str(target)


@task
def feature_validation(features_path: str) -> dict[str, Any]:
    df = pd.read_parquet(features_path)
    stats = {
        "total_rows": len(df),
        "unique_users": int(df["user_id"].nunique()),
        "avg_amount": float(df["amount"].mean()),
        "n_features": df.shape[1] - 2,
    }
    if df.drop(columns=[LABEL]).isna().any().any():
        raise ValueError("features contain missing values")
    print("feature stats:", stats)
    return stats


# -- model training ----------------------------------------------------------------------------


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A deterministic 75/25 split by user, so no user is in both halves."""
    test = df["user_id"] % 4 == 0
    return df[~test], df[test]


@task
def train_model(features_path: str, stats: dict[str, Any]) -> RandomForestClassifier:
    train, _ = split(pd.read_parquet(features_path))
    model = RandomForestClassifier(
        n_estimators=60, min_samples_leaf=3, class_weight="balanced_subsample", random_state=0
    )
    model.fit(train.drop(columns=["user_id", LABEL]), train[LABEL])
    print(f"trained on {len(train)} of {stats['total_rows']} transactions")
    return model


@task
def evaluate_model(model: RandomForestClassifier, features_path: str) -> dict[str, float]:
    _, test = split(pd.read_parquet(features_path))
    p = model.predict_proba(test.drop(columns=["user_id", LABEL]))[:, 1]
    y = test[LABEL]
    metrics = {
        "auc_roc": roc_auc_score(y, p),
        "precision": precision_score(y, p >= 0.5),
        "recall": recall_score(y, p >= 0.5),
    }
    print("test metrics:", metrics)
    return metrics


# -- deployment --------------------------------------------------------------------------------


@task.branch
def deploy_decision(
    metrics: dict[str, float], auc_floor: float, precision_floor: float, recall_floor: float
) -> str:
    floors = {"auc_roc": auc_floor, "precision": precision_floor, "recall": recall_floor}
    below = [name for name, floor in floors.items() if metrics[name] < floor]
    if below:
        print(f"below the floor: {', '.join(below)}")
        return "notify_failure"
    return "deploy_model"


@task
def deploy_model(model: RandomForestClassifier, metrics: dict[str, float], workdir: str) -> str:
    production = work_path(workdir) / "production"
    production.mkdir(parents=True, exist_ok=True)
    target = production / "model.joblib"
    tmp = production / "model.joblib.tmp"
    joblib.dump({"model": model, "metrics": metrics, "run_id": phloem.context().run_id}, tmp)
    tmp.replace(target)
    return str(target)


@task
def notify_failure(metrics: dict[str, float]) -> str:
    message = f"model below its quality floors, not deployed: {metrics}"
    phloem.context().log.error(message)  # a pager or chat alert in a real deployment
    return message


@task(teardown=True, retries=0)
def cleanup_scratch(workdir: str) -> int:
    """Delete this run's scratch files, whether the run succeeded or not."""
    folder = scratch_path(workdir)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
    shutil.rmtree(folder, ignore_errors=True)
    print(f"removed {size} bytes of scratch data at {time.strftime('%H:%M:%S')}")
    return size


@phloem.pipeline(
    schedule="@daily",
    catchup=False,
    max_active_runs=1,
    tags=["ml", "production"],
    default_task_options={
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "timeout": timedelta(hours=2),
    },
)
def ml_training_pipeline(
    workdir: str = "",
    min_rows: int = 1000,
    auc_floor: float = 0.90,
    precision_floor: float = 0.85,
    recall_floor: float = 0.80,
):
    """Daily fraud-model training: prepare, featurize, train, gate, deploy, clean up."""
    with phloem.group("data_preparation"):
        validated = data_validation(data_ingestion(workdir), min_rows)
    with phloem.group("feature_engineering"):
        features = feature_computation(validated, workdir)
        stats = feature_validation(features)
    with phloem.group("model_training"):
        model = train_model(features, stats)
        metrics = evaluate_model(model, features)
    decision = deploy_decision(metrics, auc_floor, precision_floor, recall_floor)
    deployed = deploy_model(model, metrics, workdir)
    failed = notify_failure(metrics)
    decision >> [deployed, failed]
    [deployed, failed] >> cleanup_scratch(workdir)
