"""Score new records every five minutes with the production model.

Pattern: the batch inference pipeline, on a schedule (``*/5 * * * *``). ``fetch_new_records``
takes the records that arrived for this run's batch, ``resolve_production_model`` finds the best
model in the registry that ``examples/train.py`` fills (a baseline is trained on a cold start),
``run_batch_predictions`` scores them, ``write_predictions_to_db`` stores the scores in SQLite
and ``send_completion_notification`` reports.

Each run scores the batch named by its logical date (the start of its data interval when the
scheduler starts it), and writing is idempotent: the batch's rows are replaced in one
transaction, so re-running or backfilling a batch never duplicates predictions.

Run it once (the scheduler runs it every five minutes):

    phloem run examples/train.py                 # register a model first (optional)
    phloem run examples/batch_inference.py
    phloem run examples/batch_inference.py --logical-date 2026-01-31T10:05:00

``registry_dir`` defaults to ``<phloem home>/examples/registry`` (shared with train.py) and
``db_path`` to ``<phloem home>/examples/predictions.db``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task


def home_path(value: str, default: str) -> Path:
    """``value``, or ``<phloem home>/examples/<default>`` when it is empty."""
    if value:
        return Path(value)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / default


@task
def fetch_new_records(batch_size: int) -> pd.DataFrame:
    """The records that arrived in this run's window (a stand-in for a warehouse query)."""
    ctx = phloem.context()
    batch_id = ctx.data_interval_start.isoformat()
    features = load_breast_cancer(as_frame=True).data
    batch = features.sample(batch_size, random_state=zlib.crc32(batch_id.encode()))
    batch.insert(0, "record_id", [f"R{i:04d}" for i in batch.index])
    batch.insert(0, "batch_id", batch_id)
    print(f"batch {batch_id}: {len(batch)} new records")
    return batch.reset_index(drop=True)


@task
def resolve_production_model(registry_dir: str) -> dict[str, Any]:
    """The registry's best model; on a cold start, a baseline trained now."""
    folder = home_path(registry_dir, "registry")
    index = folder / "registry.json"
    if index.exists():
        registry = json.loads(index.read_text())
        best = registry["best_version"]
        entry = next(v for v in registry["versions"] if v["version"] == best)
        return {"version": str(best), "path": str(folder / entry["path"])}
    phloem.context().log.warning("no registered model in %s: training a baseline", folder)
    data = load_breast_cancer(as_frame=True)
    baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    baseline.fit(data.data, data.target)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "baseline.joblib"
    joblib.dump(baseline, path)
    return {"version": "baseline", "path": str(path)}


@task
def run_batch_predictions(records: pd.DataFrame, model: dict[str, Any]) -> pd.DataFrame:
    estimator = joblib.load(model["path"])
    features = records.drop(columns=["batch_id", "record_id"])
    probability = estimator.predict_proba(features)[:, 1]
    return pd.DataFrame(
        {
            "batch_id": records["batch_id"],
            "record_id": records["record_id"],
            "model_version": model["version"],
            "p_benign": probability.round(6),
            "label": ["benign" if p >= 0.5 else "malignant" for p in probability],
        }
    )


@task(retries=3, retry_delay=1.0, retry_backoff=2.0)
def write_predictions_to_db(predictions: pd.DataFrame, db_path: str) -> dict[str, Any]:
    path = home_path(db_path, "predictions.db")
    path.parent.mkdir(parents=True, exist_ok=True)
    batch_id = str(predictions["batch_id"].iloc[0])
    with sqlite3.connect(path, timeout=30) as db:  # one transaction: all rows or none
        db.execute(
            "CREATE TABLE IF NOT EXISTS predictions (batch_id TEXT, record_id TEXT, "
            "model_version TEXT, p_benign REAL, label TEXT, scored_at REAL, "
            "PRIMARY KEY (batch_id, record_id))"
        )
        db.execute("DELETE FROM predictions WHERE batch_id = ?", (batch_id,))
        now = time.time()
        db.executemany(
            "INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
            [(*row, now) for row in predictions.itertuples(index=False)],
        )
    db.close()
    counts = predictions["label"].value_counts().to_dict()
    return {"batch_id": batch_id, "rows": len(predictions), "labels": counts, "db": str(path)}


@task
def send_completion_notification(written: dict[str, Any]) -> str:
    message = (
        f"batch {written['batch_id']}: scored {written['rows']} records "
        f"({', '.join(f'{n} {label}' for label, n in sorted(written['labels'].items()))})"
    )
    print(message)  # a chat message or an event on a queue in a real deployment
    return message


@phloem.pipeline(schedule="*/5 * * * *", catchup=False, max_active_runs=1, tags=["inference"])
def batch_inference(batch_size: int = 50, registry_dir: str = "", db_path: str = ""):
    """Score the records that arrived in the last five minutes."""
    records = fetch_new_records(batch_size)
    model = resolve_production_model(registry_dir)
    predictions = run_batch_predictions(records, model)
    written = write_predictions_to_db(predictions, db_path)
    send_completion_notification(written)
