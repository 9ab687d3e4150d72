"""Train 100 small models in parallel and keep the best one per region.

Pattern: fan-out / fan-in with dynamic task mapping. ``get_model_configs`` returns one config
per (region, model family, hyperparameters); ``train_single_model.expand(config=configs)``
becomes one task instance per config, run in parallel by the workers; ``aggregate_results``
receives the list of all results (in config order) and picks the best model per region;
``update_model_registry`` publishes the winners.

Each region has its own data (a synthetic churn-like classification problem whose difficulty
varies by region), so different families win in different regions.

Run it:

    phloem run examples/fan_out_training.py                       # 10 regions x 10 configs
    phloem run examples/fan_out_training.py --param n_regions=3   # 30 models

The winners are written to ``registry_dir`` (default ``<phloem home>/examples/regional_models``)
as ``best_models.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import phloem
from phloem import task

REGIONS = [
    "us-west-1",
    "us-west-2",
    "us-east-1",
    "us-east-2",
    "ca-central-1",
    "eu-west-1",
    "eu-central-1",
    "ap-south-1",
    "ap-northeast-1",
    "sa-east-1",
]
#: Ten model configurations tried in every region.
SEARCH_SPACE: list[tuple[str, dict[str, Any]]] = [
    *[("logistic_regression", {"C": c}) for c in (0.01, 0.1, 1.0, 10.0)],
    *[("decision_tree", {"max_depth": d}) for d in (2, 4, 8)],
    *[("knn", {"n_neighbors": k}) for k in (5, 15, 45)],
]


def build_model(family: str, hyperparameters: dict[str, Any]) -> Any:
    if family == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **hyperparameters))
    if family == "decision_tree":
        return DecisionTreeClassifier(random_state=0, **hyperparameters)
    if family == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(**hyperparameters))
    raise ValueError(f"unknown model family {family!r}")


def load_region_data(region_index: int) -> tuple[Any, ...]:
    """The region's labelled data; later regions have more non-linear structure."""
    X, y = make_classification(
        n_samples=600,
        n_features=12,
        n_informative=6,
        n_redundant=2,
        n_clusters_per_class=1 + region_index % 4,
        flip_y=0.03,
        class_sep=0.8 + 0.1 * region_index,
        random_state=region_index,
    )
    return tuple(train_test_split(X, y, test_size=0.3, random_state=0, stratify=y))


@task
def get_model_configs(n_regions: int) -> list[dict[str, Any]]:
    if not 1 <= n_regions <= len(REGIONS):
        raise ValueError(f"n_regions must be between 1 and {len(REGIONS)}, got {n_regions}")
    configs = [
        {
            "model_id": f"{region}/{family}/{'-'.join(f'{k}={v}' for k, v in hp.items())}",
            "region": region,
            "region_index": i,
            "family": family,
            "hyperparameters": hp,
        }
        for i, region in enumerate(REGIONS[:n_regions])
        for family, hp in SEARCH_SPACE
    ]
    print(f"{len(configs)} model configurations")
    return configs


@task(retries=1)
def train_single_model(config: dict[str, Any]) -> dict[str, Any]:
    X_train, X_val, y_train, y_val = load_region_data(config["region_index"])
    model = build_model(config["family"], config["hyperparameters"])
    model.fit(X_train, y_train)
    auc = roc_auc_score(y_val, model.predict_proba(X_val)[:, 1])
    print(f"{config['model_id']}: validation AUC {auc:.4f}")
    return {**config, "val_auc": round(float(auc), 6), "n_train": len(y_train)}


@task
def aggregate_results(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fan-in: the best model of each region by validation AUC."""
    best: dict[str, dict[str, Any]] = {}
    for result in results:
        current = best.get(result["region"])
        if current is None or result["val_auc"] > current["val_auc"]:
            best[result["region"]] = result
    for region, winner in best.items():
        print(
            f"{region}: {winner['family']} {winner['hyperparameters']} AUC {winner['val_auc']:.4f}"
        )
    return best


@task
def update_model_registry(best_models: dict[str, dict[str, Any]], registry_dir: str) -> str:
    folder = (
        Path(registry_dir)
        if registry_dir
        else Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "regional_models"
    )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "best_models.json"
    payload = {"run_id": phloem.context().run_id, "models": best_models}
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(target)
    return str(target)


@phloem.pipeline(schedule="@weekly", tags=["training", "fan-out"])
def multi_model_training(n_regions: int = 10, registry_dir: str = ""):
    """One model per region: try ten configurations everywhere, keep each region's best."""
    configs = get_model_configs(n_regions)
    results = train_single_model.expand(config=configs)
    best = aggregate_results(results)
    update_model_registry(best, registry_dir)
