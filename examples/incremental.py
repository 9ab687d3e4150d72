"""Process only the events that arrived since the last run (the watermark pattern).

Pattern: incremental processing with ``phloem.watermark``. ``get_watermark`` reads how far the
pipeline got (the last processed event time, kept in phloem's store); ``get_new_records``
fetches only the events after it, up to the run's logical date; ``process_features`` turns
them into per-user features; ``write_features`` stores them as one Parquet file per window;
and ``update_watermark`` advances the watermark. The advance is committed with that task's
success, in the same transaction, so a run that fails anywhere before processes its window
again, and a finished one never does. With no new events, the run skips the rest.

The warehouse is simulated: a Parquet table of card transactions over the first three days of
January 2024, created on first use.

Run it:

    phloem run examples/incremental.py --logical-date 2024-01-01T12:00:00   # first half day
    phloem run examples/incremental.py --logical-date 2024-01-02T00:00:00   # only 12:00-24:00
    phloem run examples/incremental.py    # now: the rest of the events
    phloem run examples/incremental.py    # nothing new since: the rest is skipped
    phloem watermarks show card_transactions                                 # how it moved

``data_dir`` (default ``<phloem home>/examples/incremental``) holds ``warehouse/`` and
``features/``. ``phloem watermarks set card_transactions 2024-01-01T00:00:00+00:00 --force``
re-processes from then on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import phloem
from phloem import task


def data_path(data_dir: str) -> Path:
    """``data_dir``, or ``<phloem home>/examples/incremental`` when it is empty."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "incremental"


def query_warehouse(folder: Path, after: pd.Timestamp | None, until: pd.Timestamp) -> pd.DataFrame:
    """Stand-in for ``SELECT * FROM events WHERE event_time > :after AND event_time <= :until``."""
    table = folder / "warehouse" / "card_transactions.parquet"
    if not table.exists():
        create_demo_warehouse(table)
    events = pd.read_parquet(table)
    mask = events["event_time"] <= until
    if after is not None:
        mask &= events["event_time"] > after
    return events[mask].sort_values("event_time").reset_index(drop=True)


def create_demo_warehouse(table: Path) -> None:
    rng = np.random.default_rng(2024)
    n = 3000
    start = pd.Timestamp("2024-01-01", tz="UTC")
    seconds = np.sort(rng.uniform(0, 3 * 24 * 3600, size=n))
    events = pd.DataFrame(
        {
            "event_id": [f"E{i:05d}" for i in range(n)],
            "event_time": start + pd.to_timedelta(seconds.round(), unit="s"),
            "user_id": [f"U{u:03d}" for u in rng.integers(0, 150, size=n)],
            "amount": rng.lognormal(mean=3.2, sigma=1.0, size=n).round(2),
            "merchant_category": rng.choice(["grocery", "travel", "online", "fuel", "dining"], n),
        }
    )
    table.parent.mkdir(parents=True, exist_ok=True)
    events.to_parquet(table, index=False)


WATERMARK = "card_transactions"


@task
def get_watermark() -> str | None:
    wm = phloem.watermark(WATERMARK)
    if not wm.committed:
        print("no watermark yet: processing everything up to the logical date")
        return None
    print(f"watermark: {wm.value}")
    return pd.Timestamp(wm.value).isoformat()


@task
def get_new_records(watermark: str | None, data_dir: str) -> pd.DataFrame:
    until = pd.Timestamp(phloem.context().logical_date)
    after = None if watermark is None else pd.Timestamp(watermark)
    records = query_warehouse(data_path(data_dir), after, until)
    if records.empty:
        phloem.skip(f"no events after {watermark} up to {until.isoformat()}")
    print(
        f"{len(records)} new events from {records['event_time'].min()} "
        f"to {records['event_time'].max()}"
    )
    return records


@task
def process_features(records: pd.DataFrame) -> pd.DataFrame:
    """Per-user features of this window's transactions."""
    records = records.assign(
        night=records["event_time"].dt.hour < 6,
        travel=records["merchant_category"] == "travel",
    )
    features = (
        records.groupby("user_id")
        .agg(
            n_transactions=("event_id", "count"),
            total_amount=("amount", "sum"),
            mean_amount=("amount", "mean"),
            max_amount=("amount", "max"),
            night_share=("night", "mean"),
            travel_share=("travel", "mean"),
            first_seen=("event_time", "min"),
            last_seen=("event_time", "max"),
        )
        .reset_index()
    )
    features["window_start"] = records["event_time"].min()
    features["window_end"] = records["event_time"].max()
    return features


@task
def write_features(features: pd.DataFrame, data_dir: str) -> dict[str, Any]:
    start, end = features["window_start"].iloc[0], features["window_end"].iloc[0]
    folder = data_path(data_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"window={start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.parquet"
    tmp = folder / f".{name}.tmp"
    features.to_parquet(tmp, index=False)
    tmp.replace(folder / name)  # same window, same file: re-running cannot duplicate it
    return {
        "file": name,
        "users": len(features),
        "transactions": int(features["n_transactions"].sum()),
        "max_event_time": end.isoformat(),
    }


@task
def update_watermark(written: dict[str, Any]) -> str:
    # committed with this task's success: never before the features are written
    phloem.watermark(WATERMARK).advance(pd.Timestamp(written["max_event_time"]).to_pydatetime())
    print(f"watermark advances to {written['max_event_time']}")
    return written["max_event_time"]


@phloem.pipeline(schedule="@hourly", catchup=False, max_active_runs=1, tags=["features"])
def incremental_feature_pipeline(data_dir: str = ""):
    """Per-user transaction features, computed only for events not processed before."""
    watermark = get_watermark()
    records = get_new_records(watermark, data_dir)
    features = process_features(records)
    written = write_features(features, data_dir)
    update_watermark(written)
