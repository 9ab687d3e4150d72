"""Score new records every five minutes with the model in production.

Pattern: the batch inference pipeline, on a schedule (``*/5 * * * *``). ``fetch_new_records``
takes the records that arrived for this run's batch, ``resolve_production_model`` finds
``breast_cancer@production`` in phloem's model registry (which ``examples/train.py`` fills; on
a cold start a baseline is trained, registered and put in production), ``run_batch_predictions``
loads that version and scores the records, ``write_partition`` writes them as one Parquet
partition per logical date, and ``send_completion_notification`` reports.

Each run scores the batch named by its logical date (the start of its data interval when the
scheduler starts it), and writing is idempotent: the partition is written beside its place and
renamed into it, so re-running or backfilling a batch replaces its partition, never duplicates
it, and a reader never sees half of one. The lineage of every partition leads back to the model
version that scored it (``phloem lineage RUN write_partition --upstream``).

Run it once (the scheduler runs it every five minutes):

    phloem run examples/train.py                 # put a model in production first (optional)
    phloem run examples/batch_inference.py
    phloem run examples/batch_inference.py --logical-date 2026-01-31T10:05:00

``output_dir`` defaults to ``<phloem home>/examples/predictions``.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task

MODEL = "breast_cancer"


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
def resolve_production_model() -> str:
    """The version in production; on a cold start, a baseline trained, registered and put in
    production now (its registration lands with this task's success)."""
    if MODEL in _names() and "production" in phloem.models.aliases(MODEL):
        version = phloem.models.get(f"{MODEL}@production").version
        return f"{MODEL}:{version}"
    phloem.context().log.warning("no %s model in production: training a baseline", MODEL)
    data = load_breast_cancer(as_frame=True)
    baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    baseline.fit(data.data, data.target)
    version = phloem.models.register(MODEL, baseline, tags={"baseline": True})
    phloem.models.set_alias(MODEL, version, "production", reason="cold start baseline")
    return f"{MODEL}:{version}"


def _names() -> set[str]:
    return {m.name for m in phloem.models.list_models()}


@task
def run_batch_predictions(records: pd.DataFrame, model_ref: str) -> pd.DataFrame:
    estimator = phloem.models.load(model_ref)  # recorded as this task's input, for lineage
    features = records.drop(columns=["batch_id", "record_id"])
    probability = estimator.predict_proba(features)[:, 1]
    return pd.DataFrame(
        {
            "batch_id": records["batch_id"],
            "record_id": records["record_id"],
            "model": model_ref,
            "p_benign": probability.round(6),
            "label": ["benign" if p >= 0.5 else "malignant" for p in probability],
        }
    )


@task(retries=3, retry_delay=1.0, retry_backoff=2.0)
def write_partition(predictions: pd.DataFrame, output_dir: str) -> dict[str, Any]:
    """Write this batch's partition, replacing an earlier copy whole (never appending)."""
    ctx = phloem.context()
    stamp = ctx.logical_date.strftime("%Y-%m-%dT%H-%M-%S")
    partition = home_path(output_dir, "predictions") / f"logical_date={stamp}"
    partition.mkdir(parents=True, exist_ok=True)
    target = partition / "predictions.parquet"
    tmp = partition / f".predictions.{ctx.run_id}.{ctx.try_number}.tmp"
    predictions.to_parquet(tmp, index=False)
    os.replace(tmp, target)  # atomic: the partition holds the old file or the new one
    counts = predictions["label"].value_counts().to_dict()
    phloem.log_metrics({"rows": len(predictions), "benign": counts.get("benign", 0)})
    return {
        "batch_id": str(predictions["batch_id"].iloc[0]),
        "rows": len(predictions),
        "labels": counts,
        "partition": str(target),
    }


@task
def send_completion_notification(written: dict[str, Any], model_ref: str) -> str:
    message = (
        f"batch {written['batch_id']}: scored {written['rows']} records with {model_ref} "
        f"({', '.join(f'{n} {label}' for label, n in sorted(written['labels'].items()))})"
    )
    print(message)  # a chat message or an event on a queue in a real deployment
    return message


@phloem.pipeline(schedule="*/5 * * * *", catchup=False, max_active_runs=1, tags=["inference"])
def batch_inference(batch_size: int = 50, output_dir: str = ""):
    """Score the records that arrived in the last five minutes."""
    records = fetch_new_records(batch_size)
    model = resolve_production_model()
    predictions = run_batch_predictions(records, model)
    written = write_partition(predictions, output_dir)
    send_completion_notification(written, model)
