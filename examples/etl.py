"""Extract, transform, validate and load a feature table for a diabetes-progression model.

Pattern: ETL for ML data preparation. ``extract`` pulls raw patient records (with the usual
defects: duplicated rows, missing lab values, a unit mix-up), ``transform`` cleans them and
engineers features with pandas, ``validate`` runs data-quality checks that raise on failure
(so nothing bad is loaded), and ``load`` writes the table as Parquet, one file per logical date
(re-running a date overwrites its file: the load is idempotent).

Data frames pass between the tasks as Parquet artifacts; only the paths and counts are small
enough to live in the store.

Run it:

    phloem run examples/etl.py
    phloem run examples/etl.py --param output_dir=/tmp/features --param min_rows=400
    phloem run examples/etl.py --param min_rows=10000   # validation fails; nothing is loaded

``output_dir`` defaults to ``<phloem home>/examples/feature_store``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes

import phloem
from phloem import task

FEATURES = ["age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"]


def feature_store_path(output_dir: str) -> Path:
    """``output_dir``, or ``<phloem home>/examples/feature_store`` when it is empty."""
    if output_dir:
        return Path(output_dir)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "feature_store"


@task(retries=2, retry_delay=1.0)
def extract_patient_records(seed: int) -> pd.DataFrame:
    """Raw records as a clinic system exports them, defects included."""
    raw = load_diabetes(as_frame=True, scaled=False).frame
    raw.columns = [*FEATURES, "progression"]
    raw.insert(0, "patient_id", [f"P{i:04d}" for i in range(len(raw))])
    rng = np.random.default_rng(seed)
    # missing lab values
    for column in ("bmi", "hdl", "glu"):
        raw.loc[rng.choice(len(raw), size=12, replace=False), column] = np.nan
    # one clinic reports blood pressure in kPa instead of mmHg
    kpa = rng.choice(len(raw), size=8, replace=False)
    raw.loc[kpa, "bp"] = (raw.loc[kpa, "bp"] / 7.50062).round(1)
    # an export that ran twice
    raw = pd.concat([raw, raw.sample(15, random_state=seed)], ignore_index=True)
    print(f"extracted {len(raw)} raw records")
    return raw


@task
def clean_and_engineer_features(raw: pd.DataFrame) -> pd.DataFrame:
    df = raw.drop_duplicates(subset="patient_id").copy()
    print(f"dropped {len(raw) - len(df)} duplicate records")
    # blood pressure below 30 can only be kPa: convert to mmHg
    in_kpa = df["bp"] < 30
    df.loc[in_kpa, "bp"] = df.loc[in_kpa, "bp"] * 7.50062
    print(f"converted {int(in_kpa.sum())} blood pressures from kPa")
    # impute missing labs with the median of the same sex
    for column in ("bmi", "hdl", "glu"):
        missing = int(df[column].isna().sum())
        df[column] = df[column].fillna(df.groupby("sex")[column].transform("median"))
        print(f"imputed {missing} missing {column}")
    df["sex"] = df["sex"].map({1: "F", 2: "M"}).astype("category")
    df["bmi_class"] = pd.cut(
        df["bmi"],
        bins=[0, 18.5, 25, 30, np.inf],
        labels=["underweight", "normal", "overweight", "obese"],
        right=False,
    )
    df["age_decade"] = (df["age"] // 10 * 10).astype(int)
    df["chol_hdl_ratio"] = df["tc"] / df["hdl"]
    df["ldl_hdl_ratio"] = df["ldl"] / df["hdl"]
    df["high_blood_pressure"] = df["bp"] >= 100
    df["glucose_z"] = (df["glu"] - df["glu"].mean()) / df["glu"].std()
    return df.reset_index(drop=True)


@task
def validate_data_quality(features: pd.DataFrame, min_rows: int) -> pd.DataFrame:
    """Fail the run (before anything is loaded) if the table is not fit for training."""
    checks = {
        f"at least {min_rows} rows": len(features) >= min_rows,
        "no missing values": not features.isna().any().any(),
        "unique patient ids": features["patient_id"].is_unique,
        "age between 18 and 100": features["age"].between(18, 100).all(),
        "bmi between 12 and 60": features["bmi"].between(12, 60).all(),
        "blood pressure between 50 and 160 mmHg": features["bp"].between(50, 160).all(),
        "progression between 0 and 400": features["progression"].between(0, 400).all(),
        "cholesterol/HDL ratio positive": (features["chol_hdl_ratio"] > 0).all(),
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if failed:
        raise ValueError(f"data quality checks failed: {', '.join(failed)}")
    return features


@task
def load_to_feature_store(features: pd.DataFrame, output_dir: str) -> dict[str, Any]:
    ctx = phloem.context()
    day = ctx.ds
    folder = feature_store_path(output_dir) / "diabetes_features"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"date={day}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    features.to_parquet(tmp, index=False)
    tmp.replace(target)  # overwrite the date's partition atomically
    print(f"wrote {len(features)} rows to {target}")
    return {"path": str(target), "rows": len(features), "columns": list(features.columns)}


@phloem.pipeline(schedule="@daily", catchup=False, tags=["etl", "features"])
def ml_data_pipeline(output_dir: str = "", min_rows: int = 400, seed: int = 7):
    """Daily feature table for the diabetes-progression model."""
    raw = extract_patient_records(seed)
    features = clean_and_engineer_features(raw)
    validated = validate_data_quality(features, min_rows)
    load_to_feature_store(validated, output_dir)
