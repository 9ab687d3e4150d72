"""Two feature extractors feeding one training task (a diamond-shaped graph).

Pattern: diamond dependencies. ``load_scans`` fans out to ``extract_shape_features`` and
``extract_texture_features``, which run in parallel; ``train_classifier`` joins them and only
starts once both have finished. Like extracting image and text features separately and
combining them for training.

The data are the breast-cancer scans (30 measurements of cell nuclei per tumour): shape features
come from radius, perimeter, area, compactness and concavity, texture features from texture,
smoothness, symmetry and fractal dimension. The training task reports cross-validated accuracy
for each feature family alone and for both together, which is why the join is worth it.

Run it:

    phloem run examples/diamond.py
    phloem run examples/diamond.py --param folds=10
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task

SHAPE = ["radius", "perimeter", "area", "compactness", "concavity", "concave points"]
TEXTURE = ["texture", "smoothness", "symmetry", "fractal dimension"]


def measurement_features(scans: pd.DataFrame, measurement: str) -> pd.DataFrame:
    """Mean, worst and spread of one measurement, plus how far the worst cell is from the mean."""
    mean, worst, error = (
        scans[f"mean {measurement}"],
        scans[f"worst {measurement}"],
        scans[f"{measurement} error"],
    )
    name = measurement.replace(" ", "_")
    return pd.DataFrame(
        {
            f"{name}_mean": mean,
            f"{name}_worst": worst,
            f"{name}_error": error,
            f"{name}_worst_to_mean": worst / mean.replace(0, np.nan),
        }
    ).fillna(0.0)


@task
def load_scans() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    frame.index = pd.Index([f"scan-{i:03d}" for i in range(len(frame))], name="scan_id")
    return frame


@task
def extract_shape_features(scans: pd.DataFrame) -> pd.DataFrame:
    features = pd.concat([measurement_features(scans, m) for m in SHAPE], axis=1)
    # how round the nucleus is: 1 for a circle, smaller for irregular outlines
    features["circularity"] = 4 * np.pi * scans["mean area"] / scans["mean perimeter"] ** 2
    print(f"{features.shape[1]} shape features")
    return features.add_prefix("shape_")


@task
def extract_texture_features(scans: pd.DataFrame) -> pd.DataFrame:
    features = pd.concat([measurement_features(scans, m) for m in TEXTURE], axis=1)
    features["texture_x_smoothness"] = scans["mean texture"] * scans["mean smoothness"]
    print(f"{features.shape[1]} texture features")
    return features.add_prefix("texture_")


@task
def train_classifier(
    shape: pd.DataFrame, texture: pd.DataFrame, labels: pd.Series, folds: int
) -> dict[str, Any]:
    if not shape.index.equals(texture.index):
        raise ValueError("shape and texture features are not aligned on scan_id")
    combined = shape.join(texture)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    scores = {
        name: float(cross_val_score(model, X, labels, cv=cv).mean())
        for name, X in (("shape_only", shape), ("texture_only", texture), ("combined", combined))
    }
    for name, score in scores.items():
        print(f"{name:>12}: {score:.4f} accuracy ({folds}-fold CV)")
    return {"cv_accuracy": scores, "n_features": combined.shape[1], "n_samples": len(combined)}


@phloem.pipeline(tags=["training", "features"])
def diamond_features(folds: int = 5):
    """Shape and texture features extracted in parallel, joined for training."""
    scans = load_scans()
    shape = extract_shape_features(scans)
    texture = extract_texture_features(scans)
    train_classifier(shape, texture, scans["target"], folds)
