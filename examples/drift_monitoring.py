"""Watch the model's input data for drift, and raise an alert that triggers retraining.

Pattern: model monitoring (the upstream half of the retraining trigger). Every hour
``check_drift`` compares the latest production inputs with the training data, feature by
feature, with ``phloem.drift.report`` (population stability index and Kolmogorov-Smirnov; the
report is kept as an artifact of the run and its PSI values as run metrics);
``decide_on_alert`` (a ``@task.branch``) follows ``raise_drift_alert`` only when some feature
drifted. That task writes ``drift_alert.json`` into ``alerts_dir`` (for people and other
tools) and emits an event of ``Asset("drift:breast_cancer")``, which starts any pipeline
scheduled on that asset once, when the task succeeds: ``examples/retraining.py`` is one
(``schedule=[Asset("drift:breast_cancer")]``).

The production traffic is simulated: a hospital replaced a scanner whose size measurements
(radius, perimeter, area) read ``scanner_gain`` times larger. With ``scanner_gain=1.0`` nothing
drifts and no alert is raised.

Run it:

    phloem run examples/drift_monitoring.py                          # drift: alert raised
    phloem run examples/drift_monitoring.py --param scanner_gain=1.0 # no drift

``alerts_dir`` defaults to ``<phloem home>/examples/alerts``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer

import phloem
from phloem import Asset, task

SIZE_FEATURES = ("radius", "perimeter", "area")


def alerts_path(alerts_dir: str) -> Path:
    """``alerts_dir``, or ``<phloem home>/examples/alerts`` when it is empty."""
    if alerts_dir:
        return Path(alerts_dir)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "alerts"


@task
def load_reference_data() -> pd.DataFrame:
    """The inputs the production model was trained on."""
    return load_breast_cancer(as_frame=True).data


@task
def fetch_recent_inputs(sample_size: int, scanner_gain: float, seed: int) -> pd.DataFrame:
    """The last hour of production inputs (simulated: resampled scans from the new scanner)."""
    data = load_breast_cancer(as_frame=True).data
    recent = data.sample(sample_size, replace=True, random_state=seed).reset_index(drop=True)
    size_columns = [c for c in recent.columns if any(k in c for k in SIZE_FEATURES)]
    recent[size_columns] *= scanner_gain
    return recent


@task
def check_drift(
    reference: pd.DataFrame, recent: pd.DataFrame, psi_threshold: float
) -> dict[str, Any]:
    report = phloem.drift.report(reference, recent, threshold=psi_threshold)
    psi = {f.feature: round(f.psi, 4) for f in report.features}
    drifted = sorted(report.drifted_features, key=psi.__getitem__, reverse=True)
    print(report.summary())
    return {"drifted": drifted, "psi": psi, "threshold": psi_threshold, "n_recent": len(recent)}


@task.branch
def decide_on_alert(report: dict[str, Any]) -> str | None:
    return "raise_drift_alert" if report["drifted"] else None


@task
def raise_drift_alert(report: dict[str, Any], alerts_dir: str) -> str:
    ctx = phloem.context()
    folder = alerts_path(alerts_dir)
    folder.mkdir(parents=True, exist_ok=True)
    alert = {
        "raised_by": ctx.run_id,
        "raised_at": time.time(),
        "drifted_features": report["drifted"],
        "max_psi": max(report["psi"][c] for c in report["drifted"]),
    }
    tmp = folder / "drift_alert.json.tmp"
    tmp.write_text(json.dumps(alert, indent=2))
    tmp.replace(folder / "drift_alert.json")  # readers never see half a file
    phloem.emit(Asset("drift:breast_cancer"), metadata=alert)  # lands with this task's success
    ctx.log.warning("drift alert raised: %s", ", ".join(report["drifted"]))
    return str(folder / "drift_alert.json")


@phloem.pipeline(schedule="@hourly", catchup=False, tags=["monitoring"])
def model_monitoring(
    scanner_gain: float = 1.3,
    sample_size: int = 500,
    psi_threshold: float = 0.2,
    seed: int = 0,
    alerts_dir: str = "",
):
    """Compare recent inputs with the training data; raise a drift alert if they differ."""
    report = check_drift(
        load_reference_data(), fetch_recent_inputs(sample_size, scanner_gain, seed), psi_threshold
    )
    decide_on_alert(report) >> raise_drift_alert(report, alerts_dir)
