"""Train three model families in parallel, ensemble them, and deploy the best candidate.

Pattern: static fan-out / fan-in with a quality gate. After ``data_quality_check`` and
``engineer_features``, one task definition, ``train_model``, is added three times with explicit
names (``train_ridge``, ``train_random_forest``, ``train_gradient_boosting``) and runs in
parallel; ``build_ensemble`` joins them (an average of their predictions);
``evaluate_and_select_best`` compares all four on held-out data and fails the run if even the
best is below ``r2_floor``; ``deploy_best_model`` then ships it and ``send_success_report``
says so.

The task is regression: disease progression one year after baseline (the diabetes data).

Run it:

    phloem run examples/model_selection.py
    phloem run examples/model_selection.py --param r2_floor=0.9   # the gate fails the run

``deploy_dir`` defaults to ``<phloem home>/examples/model_selection``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task

TARGET = "progression"


class AveragingEnsemble:
    """The mean of several fitted regressors' predictions."""

    def __init__(self, members: dict[str, Any]) -> None:
        self.members = members

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.mean([m.predict(X) for m in self.members.values()], axis=0)


def make_estimator(family: str) -> Any:
    if family == "ridge":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 2, 20)))
    if family == "random_forest":
        return RandomForestRegressor(n_estimators=100, min_samples_leaf=5, random_state=0)
    if family == "gradient_boosting":
        return GradientBoostingRegressor(
            n_estimators=100, max_depth=2, learning_rate=0.05, random_state=0
        )
    raise ValueError(f"unknown model family {family!r}")


@task
def data_quality_check(min_rows: int) -> pd.DataFrame:
    data = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": TARGET})
    if len(data) < min_rows:
        raise ValueError(f"insufficient data: {len(data)} rows < {min_rows}")
    if data[TARGET].isna().any():
        raise ValueError("missing labels")
    print(f"{len(data)} rows passed the quality check")
    return data


@task
def engineer_features(data: pd.DataFrame) -> dict[str, pd.DataFrame]:
    df = data.assign(
        bmi_x_bp=data["bmi"] * data["bp"],
        ldl_hdl_ratio=data["s2"] / data["s3"],
        age_over_50=(data["age"] > 50).astype(int),
    )
    train, test = train_test_split(df, test_size=0.25, random_state=0)
    return {"train": train, "test": test}


@task
def train_model(train: pd.DataFrame, family: str) -> Any:
    return make_estimator(family).fit(train.drop(columns=TARGET), train[TARGET])


@task
def build_ensemble(ridge: Any, random_forest: Any, gradient_boosting: Any) -> AveragingEnsemble:
    return AveragingEnsemble(
        {"ridge": ridge, "random_forest": random_forest, "gradient_boosting": gradient_boosting}
    )


@task
def evaluate_and_select_best(
    candidates: dict[str, Any], test: pd.DataFrame, r2_floor: float
) -> dict[str, Any]:
    X, y = test.drop(columns=TARGET), test[TARGET]
    scores = {
        name: {"r2": r2_score(y, m.predict(X)), "mae": mean_absolute_error(y, m.predict(X))}
        for name, m in candidates.items()
    }
    best = max(scores, key=lambda name: scores[name]["r2"])
    for name, s in sorted(scores.items(), key=lambda kv: -kv[1]["r2"]):
        print(f"{name:>18}: R2 {s['r2']:.3f}  MAE {s['mae']:.1f}")
    if scores[best]["r2"] < r2_floor:
        raise ValueError(f"best model {best} has R2 {scores[best]['r2']:.3f} < {r2_floor}")
    return {"best": best, "scores": scores}


@task
def deploy_best_model(
    selection: dict[str, Any], candidates: dict[str, Any], deploy_dir: str
) -> str:
    folder = (
        Path(deploy_dir)
        if deploy_dir
        else (Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "model_selection")
    )
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(candidates[selection["best"]], folder / "model.joblib")
    (folder / "model.json").write_text(
        json.dumps(
            {
                "model": selection["best"],
                "scores": selection["scores"],
                "run_id": phloem.context().run_id,
            },
            indent=2,
        )
    )
    return str(folder / "model.joblib")


@task
def send_success_report(selection: dict[str, Any], path: str) -> str:
    best = selection["best"]
    message = f"deployed {best} (R2 {selection['scores'][best]['r2']:.3f}) to {path}"
    print(message)  # an e-mail or chat message in a real deployment
    return message


@phloem.pipeline(schedule="0 2 * * *", catchup=False, max_active_runs=1, tags=["training"])
def complete_ml_pipeline(min_rows: int = 400, r2_floor: float = 0.3, deploy_dir: str = ""):
    """Nightly: check data, featurize, train three families and an ensemble, deploy the best."""
    split = engineer_features(data_quality_check(min_rows))
    models = {
        family: train_model.with_options(name=f"train_{family}")(split["train"], family)
        for family in ("ridge", "random_forest", "gradient_boosting")
    }
    candidates = {**models, "ensemble": build_ensemble(**models)}
    selection = evaluate_and_select_best(candidates, split["test"], r2_floor)
    send_success_report(selection, deploy_best_model(selection, candidates, deploy_dir))
