"""Model approval workflow: deploy automatically, ask a human, or reject, by accuracy.

Pattern: conditional branching. ``check_quality`` is a ``@task.branch`` that follows exactly
one of three paths from the candidate's held-out accuracy:

- accuracy >= ``auto_deploy_at``: ``auto_deploy`` copies the model to production;
- accuracy >= ``accuracy_floor``: ``request_human_review`` opens a review ticket (a JSON file),
  the ``wait_for_approval`` sensor waits (in reschedule mode, holding no worker) until a
  reviewer sets the ticket's ``"status"`` to ``"approved"`` (or ``"rejected"``, which skips
  the deployment), then ``deploy_after_approval`` deploys;
- otherwise ``reject_model`` records the rejection.

The tasks on the paths not taken are skipped, and ``notify_team`` (trigger rule
``none_failed``: it runs after skipped upstream tasks too, and reads None from them) reports
whichever path ran.

Run it (the thresholds are parameters so every path can be tried):

    phloem run examples/approval.py                                # auto_deploy
    phloem run examples/approval.py -p auto_deploy_at=0.999        # human review
    phloem run examples/approval.py -p auto_deploy_at=0.999 -p accuracy_floor=0.99   # reject

On the review path, approve by editing ``<deploy_dir>/reviews/<run id>.json``. ``deploy_dir``
defaults to ``<phloem home>/examples/deployments``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

import phloem
from phloem import task


def deploy_path(deploy_dir: str) -> Path:
    """``deploy_dir``, or ``<phloem home>/examples/deployments`` when it is empty."""
    if deploy_dir:
        return Path(deploy_dir)
    return Path(os.environ.get("PHLOEM_HOME", ".phloem")) / "examples" / "deployments"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


@task
def load_labelled_data(seed: int) -> dict[str, pd.DataFrame]:
    """Breast-cancer diagnostic data (569 tumours, 30 measurements), split train / holdout."""
    frame = load_breast_cancer(as_frame=True).frame
    train, holdout = train_test_split(
        frame, test_size=0.3, random_state=seed, stratify=frame["target"]
    )
    return {"train": train, "holdout": holdout}


@task
def train_candidate(train: pd.DataFrame, n_estimators: int, seed: int) -> RandomForestClassifier:
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=4, random_state=seed)
    model.fit(train.drop(columns="target"), train["target"])
    return model


@task
def evaluate_model(model: RandomForestClassifier, holdout: pd.DataFrame) -> dict[str, float]:
    predicted = model.predict(holdout.drop(columns="target"))
    metrics = {
        "accuracy": accuracy_score(holdout["target"], predicted),
        "f1": f1_score(holdout["target"], predicted),
    }
    print("holdout metrics:", metrics)
    return metrics


@task.branch
def check_quality(metrics: dict[str, float], auto_deploy_at: float, accuracy_floor: float) -> str:
    accuracy = metrics["accuracy"]
    if accuracy >= auto_deploy_at:
        return "auto_deploy"
    if accuracy >= accuracy_floor:
        return "request_human_review"
    return "reject_model"


@task
def auto_deploy(model: Any, metrics: dict[str, float], deploy_dir: str) -> str:
    return deploy_to_production(model, metrics, deploy_dir, approved_by="quality gate")


@task
def request_human_review(metrics: dict[str, float], deploy_dir: str) -> str:
    """Open a review ticket; a reviewer approves it by setting its status."""
    ctx = phloem.context()
    ticket = deploy_path(deploy_dir) / "reviews" / f"{ctx.run_id}.json"
    write_json(
        ticket,
        {
            "run_id": ctx.run_id,
            "pipeline": ctx.pipeline,
            "metrics": metrics,
            "status": "pending",
            "opened_at": time.time(),
        },
    )
    print(f'review requested: set "status" to "approved" in {ticket}')
    return str(ticket)


@phloem.sensor(poke_interval=0.5, timeout=24 * 3600, mode="reschedule")
def wait_for_approval(ticket: str) -> dict[str, Any] | None:
    review = json.loads(Path(ticket).read_text())
    if review["status"] == "rejected":
        phloem.skip(f"reviewer {review.get('reviewer', '?')} rejected the model")
    return review if review["status"] == "approved" else None


@task
def deploy_after_approval(
    model: Any, metrics: dict[str, float], review: dict[str, Any], deploy_dir: str
) -> str:
    return deploy_to_production(
        model, metrics, deploy_dir, approved_by=review.get("reviewer", "reviewer")
    )


def deploy_to_production(
    model: Any, metrics: dict[str, float], deploy_dir: str, approved_by: str
) -> str:
    production = deploy_path(deploy_dir) / "production"
    staging = production.with_name("production.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    joblib.dump(model, staging / "model.joblib")
    write_json(
        staging / "metadata.json",
        {
            "run_id": phloem.context().run_id,
            "metrics": metrics,
            "approved_by": approved_by,
            "deployed_at": time.time(),
        },
    )
    shutil.rmtree(production, ignore_errors=True)
    staging.rename(production)
    print(f"deployed to {production} (approved by {approved_by})")
    return str(production)


@task
def reject_model(metrics: dict[str, float], deploy_dir: str) -> str:
    ctx = phloem.context()
    record = deploy_path(deploy_dir) / "rejected" / f"{ctx.run_id}.json"
    write_json(record, {"run_id": ctx.run_id, "metrics": metrics, "rejected_at": time.time()})
    ctx.log.warning("model failed the quality gates: %s", metrics)
    return str(record)


@task(trigger_rule="none_failed")
def notify_team(
    deployed: str | None,
    deployed_after_review: str | None,
    rejected: str | None,
    metrics: dict[str, float],
) -> str:
    """Report the outcome. Tasks on the paths not taken were skipped: their values are None."""
    if deployed:
        outcome = f"deployed automatically to {deployed}"
    elif deployed_after_review:
        outcome = f"deployed after review to {deployed_after_review}"
    elif rejected:
        outcome = f"rejected (see {rejected})"
    else:
        outcome = "not deployed: the reviewer rejected it"
    message = f"candidate accuracy {metrics['accuracy']:.3f}: {outcome}"
    print(message)  # a chat or e-mail notification in a real deployment
    return message


@phloem.pipeline(tags=["deployment", "approval"])
def model_approval(
    auto_deploy_at: float = 0.95,
    accuracy_floor: float = 0.90,
    n_estimators: int = 100,
    seed: int = 2,
    deploy_dir: str = "",
):
    """Evaluate a candidate model and deploy it, send it for review, or reject it."""
    data = load_labelled_data(seed)
    model = train_candidate(data["train"], n_estimators, seed)
    metrics = evaluate_model(model, data["holdout"])
    decision = check_quality(metrics, auto_deploy_at, accuracy_floor)

    deployed = auto_deploy(model, metrics, deploy_dir)
    ticket = request_human_review(metrics, deploy_dir)
    approved = deploy_after_approval(model, metrics, wait_for_approval(ticket), deploy_dir)
    rejected = reject_model(metrics, deploy_dir)
    decision >> [deployed, ticket, rejected]

    # not notify_team(decision, ...): a task that takes the branch's output is one of the
    # branch's direct downstream tasks, so it would be skipped whenever it is not chosen
    notify_team(deployed, approved, rejected, metrics)
