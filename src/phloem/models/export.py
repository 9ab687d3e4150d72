"""Registered versions written out for other tools: an MLflow model directory (``MLmodel``
and the flavor's files), so a model trained and promoted in phloem can be served by anything
that reads MLflow models. Needs ``mlflow-skinny`` (``pip install phloem[mlflow]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phloem.artifacts.serializers.base import top_package
from phloem.errors import PhloemError
from phloem.store.models import ModelVersion

#: model package -> the MLflow flavor that saves it
FLAVORS = {"sklearn": "sklearn", "lightgbm": "lightgbm", "xgboost": "xgboost"}


def to_mlflow(model: Any, version: ModelVersion, path: str | Path) -> Path:
    """Write ``model`` (registered as ``version``) as an MLflow model directory at ``path``,
    which must not exist yet or be empty. Its metadata names the version, its metrics, params
    and the run that made it."""
    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PhloemError(f"{target} exists and is not an empty directory; export to a new one")
    package = top_package(model)
    flavor = FLAVORS.get(package)
    if flavor is None:
        raise PhloemError(
            f"MLflow export supports scikit-learn, LightGBM and XGBoost models; "
            f"{version.ref} is a {version.artifact.type_name}: load it with "
            f"phloem.models.load('{version.ref}')"
        )
    try:
        import importlib

        module = importlib.import_module(f"mlflow.{flavor}")
    except ImportError:
        raise PhloemError(
            "exporting to MLflow needs mlflow-skinny: pip install 'phloem[mlflow]'"
        ) from None
    if target.exists():
        target.rmdir()  # MLflow creates the directory itself
    metadata = {
        "phloem_model": version.name,
        "phloem_version": version.version,
        "phloem_run_id": version.run_id,
        "phloem_task_id": version.task_id,
        "metrics": version.metrics,
        "params": version.params,
        "tags": version.tags,
        "eval_digest": version.eval_digest,
    }
    module.save_model(
        model,
        str(target),
        pip_requirements=module.get_default_pip_requirements(),
        metadata=metadata,
    )
    return target


__all__ = ["FLAVORS", "to_mlflow"]
