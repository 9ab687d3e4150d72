"""Survive a flaky external API with retries and exponential backoff.

Pattern: retry with exponential backoff. ``fetch_field_measurements`` calls a lab API that
fails transiently: here it answers "503 Service Unavailable" to the first ``fail_times`` calls
of each run (counted in a file under ``state_dir``, so the count survives across attempts and
worker processes). phloem retries it up to 5 times, waiting 0.2 s, 0.4 s, 0.8 s, ... (doubling,
capped at 2 s) between attempts; the engine persists the retry schedule, so the delays hold even
if the driver restarts. Meanwhile ``train_species_classifier`` runs in parallel, and
``classify_measurements`` uses the fetched records once the call has succeeded.

Run it:

    phloem run examples/flaky_api.py                         # fails 3 times, then succeeds
    phloem run examples/flaky_api.py --param fail_times=0    # healthy API
    phloem run examples/flaky_api.py --param fail_times=9    # outlasts the retries: fails

Each attempt's log is kept: ``<phloem home>/logs/<run id>/fetch_field_measurements.<try>.log``.
``state_dir`` defaults to ``<phloem home>/examples/flaky_api``.
"""

from __future__ import annotations

import fcntl
import json
import os
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task


class ServiceUnavailable(ConnectionError):
    """What the HTTP client raises on a 503."""


def count_call(state_dir: str, key: str) -> int:
    """Record one API call under ``key``; return how many calls ``key`` has made so far."""
    folder = (
        Path(state_dir)
        if state_dir
        else (Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "flaky_api")
    )
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "calls.json", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # attempts may run in different worker processes
        fh.seek(0)
        calls = json.loads(fh.read() or "{}")
        calls[key] = calls.get(key, 0) + 1
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(calls))
        return int(calls[key])


def call_lab_api(batch_size: int, fail_times: int, state_dir: str) -> list[dict[str, Any]]:
    """Stand-in for ``requests.get(LAB_API).json()``: flowers measured by the field team."""
    ctx = phloem.context()
    call = count_call(state_dir, ctx.run_id)
    if call <= fail_times:
        raise ServiceUnavailable(f"503 Service Unavailable from the lab API (call {call})")
    iris = load_iris()
    rng = np.random.default_rng(zlib.crc32(ctx.run_id.encode()))
    rows = rng.choice(len(iris.data), size=batch_size, replace=False)
    noise = rng.normal(0.0, 0.1, size=(batch_size, 4))
    return [
        {"sample_id": f"S{int(i):03d}", **dict(zip(iris.feature_names, map(float, x), strict=True))}
        for i, x in zip(rows, (iris.data[rows] + noise).round(2), strict=True)
    ]


@task(retries=5, retry_delay=0.2, retry_backoff=2.0, max_retry_delay=2)
def fetch_field_measurements(
    batch_size: int, fail_times: int, state_dir: str
) -> list[dict[str, Any]]:
    ctx = phloem.context()
    ctx.log.info("calling the lab API (attempt %d)", ctx.try_number)
    records = call_lab_api(batch_size, fail_times, state_dir)
    ctx.log.info("received %d records", len(records))
    return records


@task
def train_species_classifier() -> Pipeline:
    iris = load_iris()
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=7)).fit(
        iris.data, iris.target
    )


@task
def classify_measurements(records: list[dict[str, Any]], model: Pipeline) -> dict[str, Any]:
    iris = load_iris()
    features = np.array([[r[f] for f in iris.feature_names] for r in records])
    species = [str(iris.target_names[i]) for i in model.predict(features)]
    counts = Counter(species)
    print(f"classified {len(records)} samples: {dict(counts)}")
    return {
        "n_samples": len(records),
        "species_counts": dict(counts),
        "predictions": dict(zip((r["sample_id"] for r in records), species, strict=True)),
    }


@phloem.pipeline(tags=["ingestion", "retries"])
def field_samples(batch_size: int = 40, fail_times: int = 3, state_dir: str = ""):
    """Fetch today's field measurements from a flaky API and classify them."""
    records = fetch_field_measurements(batch_size, fail_times, state_dir)
    classify_measurements(records, train_species_classifier())
