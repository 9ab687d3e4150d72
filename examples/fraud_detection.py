"""Train a fraud detector end to end: validated data, features, gradient boosting with early
stopping, a metric gate, and a deploy that only a better model reaches.

Pattern: the production training pipeline of a fraud team. ``extract_transactions`` gives the
labelled card transactions of the training window (generated here: about 1.5% fraud, with the
patterns real fraud shows: large amounts at night, far from home, at risky merchants, in
bursts); ``validate_transactions`` checks them with ``phloem.expect`` (a validation report is
kept as an artifact, row counts and null fractions become run metrics); ``build_features``
derives the model's inputs; ``split`` holds out the latest transactions (a time split: fraud
drifts, so a random split would flatter the model); ``train_model`` fits a
``HistGradientBoostingClassifier`` with early stopping on a validation slice and logs its
learning curve; ``evaluate`` measures ROC AUC, average precision and the recall at the alert
budget (the share of fraud caught when analysts can review 1% of transactions) and holds the
model to a gate; ``promote`` registers it with ``register_if_better`` (as ``champion`` if its
average precision beats the champion's on the same held-out data); ``deploy`` then points
``production`` at it, or ``keep_current`` explains.

Run it:

    phloem run examples/fraud_detection.py
    phloem run examples/fraud_detection.py --param learning_rate=0.3   # another candidate
    phloem models show fraud
    phloem metrics fraud_training --metric average_precision

Lineage: ``phloem lineage fraud@production --upstream`` leads back to the run, its parameters,
the validated transactions and the code that made the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

import phloem
from phloem import task

MODEL = "fraud"
MERCHANTS = ["grocery", "fuel", "travel", "electronics", "gaming", "jewelry", "restaurants"]
RISKY = {"electronics", "gaming", "jewelry"}
FEATURES = [
    "amount_log",
    "amount_vs_customer",
    "night",
    "hour",
    "distance_km",
    "risky_merchant",
    "tx_last_hour",
    "foreign",
]
GATE = {"roc_auc": ">= 0.85", "average_precision": ">= 0.3", "recall_at_1pct": ">= 0.3"}


@task
def extract_transactions(n: int, seed: int) -> pd.DataFrame:
    """The labelled transactions of the training window (a stand-in for a warehouse query)."""
    rng = np.random.default_rng(seed)
    customers = rng.integers(0, n // 20, n)
    typical = rng.lognormal(3.5, 0.6, n // 20 + 1)
    fraud = rng.random(n) < 0.015
    hour = np.where(fraud & (rng.random(n) < 0.35), rng.integers(0, 6, n), rng.integers(0, 24, n))
    amount = typical[customers] * rng.lognormal(0.0, 0.5, n)
    amount = np.where(fraud, amount * rng.lognormal(0.4, 0.8, n), amount)
    distance = np.where(
        fraud & (rng.random(n) < 0.5), rng.exponential(150.0, n), rng.exponential(15.0, n)
    )
    merchant = np.where(
        fraud & (rng.random(n) < 0.3),
        rng.choice(sorted(RISKY), n),
        rng.choice(MERCHANTS, n),
    )
    burst = np.where(fraud, rng.poisson(1.2, n), rng.poisson(0.3, n))
    start = pd.Timestamp("2026-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "customer_id": customers,
            "at": start + pd.to_timedelta(np.sort(rng.uniform(0, 60 * 86400, n)), unit="s"),
            "hour": hour,
            "amount": amount.round(2),
            "merchant": merchant,
            "distance_km": distance.round(1),
            "country": np.where(rng.random(n) < 0.05 + 0.15 * fraud, "other", "home"),
            "tx_last_hour": burst,
            "is_fraud": fraud.astype(int),
        }
    )
    print(f"{len(frame)} transactions, {frame['is_fraud'].mean():.2%} fraud")
    return frame


@task
def validate_transactions(transactions: pd.DataFrame) -> pd.DataFrame:
    (
        phloem.expect(transactions, name="transactions")
        .row_count(min=5_000)
        .schema(
            {"transaction_id": "int", "amount": "float", "merchant": "str", "is_fraud": "int"},
            strict=False,
        )
        .not_null("transaction_id", "customer_id", "amount", "merchant", "is_fraud")
        .unique("transaction_id")
        .between("amount", 0, 1_000_000)
        .between("hour", 0, 23)
        .isin("merchant", set(MERCHANTS))
        .isin("is_fraud", {0, 1})
        .satisfies(lambda df: 0.001 <= df["is_fraud"].mean() <= 0.2, name="fraud rate plausible")
        .check(on_fail="fail")
    )
    return transactions


@task
def build_features(transactions: pd.DataFrame) -> pd.DataFrame:
    t = transactions
    per_customer = t.groupby("customer_id")["amount"].transform("median")
    return pd.DataFrame(
        {
            "at": t["at"],
            "amount_log": np.log1p(t["amount"]),
            "amount_vs_customer": t["amount"] / per_customer,
            "night": (t["hour"] < 6).astype(int),
            "hour": t["hour"],
            "distance_km": t["distance_km"],
            "risky_merchant": t["merchant"].isin(RISKY).astype(int),
            "tx_last_hour": t["tx_last_hour"],
            "foreign": (t["country"] != "home").astype(int),
            "is_fraud": t["is_fraud"],
        }
    )


@task
def split(features: pd.DataFrame, holdout_days: int) -> dict[str, pd.DataFrame]:
    """Hold out the latest days: the model is judged on transactions after those it saw."""
    cut = features["at"].max() - pd.Timedelta(days=holdout_days)
    train, test = features[features["at"] <= cut], features[features["at"] > cut]
    phloem.log_metrics({"train_rows": len(train), "test_rows": len(test)})
    return {"train": train.drop(columns="at"), "test": test.drop(columns="at")}


@task
def train_model(train: pd.DataFrame, learning_rate: float, max_iter: int, seed: int) -> Any:
    model = HistGradientBoostingClassifier(
        learning_rate=learning_rate,
        max_iter=max_iter,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=15,
        scoring="average_precision",
        class_weight="balanced",
        random_state=seed,
    )
    model.fit(train[FEATURES], train["is_fraud"])
    for step, score in enumerate(model.validation_score_):
        phloem.log_metric("validation_average_precision", float(score), step=step)
    phloem.log_params(
        {"learning_rate": learning_rate, "max_iter": max_iter, "iterations": model.n_iter_}
    )
    print(f"stopped early after {model.n_iter_} of {max_iter} iterations")
    return model


@task
def evaluate(model: Any, test: pd.DataFrame) -> dict[str, float]:
    y = test["is_fraud"].to_numpy()
    score = model.predict_proba(test[FEATURES])[:, 1]
    budget = max(1, int(len(test) * 0.01))  # analysts review 1% of transactions
    reviewed = np.argsort(-score)[:budget]
    metrics = {
        "roc_auc": float(roc_auc_score(y, score)),
        "average_precision": float(average_precision_score(y, score)),
        "recall_at_1pct": float(y[reviewed].sum() / max(1, y.sum())),
    }
    phloem.log_metrics(metrics)
    phloem.gate(metrics, GATE)  # a model that misses fails the run here, before any deploy
    print("held-out metrics:", metrics)
    return metrics


@task.branch
def promote(model: Any, metrics: dict[str, float], test: pd.DataFrame) -> str:
    decision = phloem.models.register_if_better(
        MODEL,
        model,
        metric="average_precision",
        metrics=metrics,
        eval_data=test,
        alias="champion",
        min_delta=0.001,
        tags={"pipeline": "fraud_training"},
    )
    print(decision.reason)
    return decision.choose("deploy", "keep_current") or "keep_current"


@task
def deploy() -> int:
    champion = phloem.models.get(f"{MODEL}@champion")
    phloem.models.set_alias(
        MODEL, champion.version, "production", reason=f"champion of {phloem.context().run_id}"
    )
    return champion.version


@task
def keep_current() -> int | None:
    return phloem.models.aliases(MODEL).get("production")


@phloem.pipeline(tags=["training", "fraud"])
def fraud_training(
    n: int = 40_000,
    seed: int = 7,
    holdout_days: int = 10,
    learning_rate: float = 0.1,
    max_iter: int = 300,
):
    """Train, gate and (if better) deploy the fraud model."""
    transactions = validate_transactions(extract_transactions(n, seed))
    parts = split(build_features(transactions), holdout_days)
    model = train_model(parts["train"], learning_rate, max_iter, seed)
    metrics = evaluate(model, parts["test"])
    promote(model, metrics, parts["test"]) >> [deploy(), keep_current()]
