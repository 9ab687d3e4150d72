"""The benchmark workloads: pipelines, and the same functions called as a plain script would.

Each pipeline is importable by name (``phloem run benchmarks/workloads.py:W1``). Sizes that
shape the graph (the length of the W2 chain) are fixed when the pipeline is defined, so the
``make_*`` factories build smaller variants for tests; W1's width and W3's data size are run
parameters.

``PLAIN[name](tick)`` runs the same task functions directly, in a topological order, calling
``tick()`` once after each task: the benchmark's floor passes a tick that does the durable
writes a minimal orchestrator cannot avoid, and W3's plain baseline passes a no-op.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import phloem
from phloem import Pipeline, task

Tick = Callable[[], None]

W1_WIDTH = 1000
W2_LENGTH = 200
W3_SAMPLES = 20_000
W3_FEATURES = 20
W3_MIN_AUC = 0.8

# -- hello: one task ------------------------------------------------------------------------------


@task
def say_hello() -> str:
    return "hello"


@phloem.pipeline(name="hello")
def hello() -> None:
    say_hello()


def plain_hello(tick: Tick) -> str:
    out = say_hello.fn()
    tick()
    return out


# -- W1: fan-out over 1000 mapped no-op tasks, then a fan-in sum ----------------------------------


@task
def make_ints(n: int) -> list[int]:
    return list(range(n))


@task
def noop(x: int) -> int:
    return x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


def make_w1(name: str = "W1", width: int = W1_WIDTH) -> Pipeline:
    def body(n: int = width) -> None:
        total(noop.expand(x=make_ints(n)))

    return phloem.pipeline(name=name)(body)


W1 = make_w1()


def plain_w1(tick: Tick, n: int = W1_WIDTH) -> int:
    xs = make_ints.fn(n)
    tick()
    ys = []
    for x in xs:
        ys.append(noop.fn(x))
        tick()
    out = total.fn(ys)
    tick()
    return out


# -- W2: a chain of 200 tasks, each adding 1 to the previous output -------------------------------


@task
def add_one(x: int) -> int:
    return x + 1


def make_w2(name: str = "W2", length: int = W2_LENGTH, *, cache: bool = False) -> Pipeline:
    def body() -> None:
        ref = add_one(0)
        for _ in range(length - 1):
            ref = add_one(ref)

    return phloem.pipeline(name=name, default_task_options={"cache": cache})(body)


W2 = make_w2()


def plain_w2(tick: Tick, length: int = W2_LENGTH) -> int:
    x = 0
    for _ in range(length):
        x = add_one.fn(x)
        tick()
    return x


# -- W3: a small ML pipeline ----------------------------------------------------------------------
# sklearn is imported inside the tasks, so the other workloads never pay for importing it.


@task
def make_data(n_samples: int, n_features: int) -> dict[str, Any]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_features // 2,
        random_state=0,
    )
    return {"X": X, "y": y}


@task
def validate(data: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    X, y = data["X"], data["y"]
    if X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    if not np.isfinite(X).all():
        raise ValueError("X has NaN or infinite values")
    classes = sorted(int(c) for c in np.unique(y))
    if classes != [0, 1]:
        raise ValueError(f"expected binary labels 0/1, got {classes}")
    return {"rows": int(X.shape[0]), "features": int(X.shape[1]), "positive": float(y.mean())}


@task
def scale(data: dict[str, Any]) -> dict[str, Any]:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test = train_test_split(
        data["X"], data["y"], test_size=0.2, random_state=0, stratify=data["y"]
    )
    scaler = StandardScaler().fit(X_train)
    return {
        "X_train": scaler.transform(X_train),
        "X_test": scaler.transform(X_test),
        "y_train": y_train,
        "y_test": y_test,
    }


@task
def train_logreg(split: dict[str, Any]) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(split["X_train"], split["y_train"])


@task
def train_forest(split: dict[str, Any]) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=50, random_state=0)
    return model.fit(split["X_train"], split["y_train"])


@task
def train_boosting(split: dict[str, Any]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=0).fit(split["X_train"], split["y_train"])


@task
def evaluate(model: Any, split: dict[str, Any], name: str) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    scores = model.predict_proba(split["X_test"])[:, 1]
    return {"model": name, "auc": float(roc_auc_score(split["y_test"], scores))}


@task
def pick_best(results: list[dict[str, Any]]) -> dict[str, Any]:
    return max(results, key=lambda r: r["auc"])


@task
def gate(best: dict[str, Any], min_auc: float) -> dict[str, Any]:
    if best["auc"] < min_auc:
        raise ValueError(f"best model {best['model']} has AUC {best['auc']:.3f} < {min_auc}")
    return best


@task
def save(best: dict[str, Any], models: dict[str, Any]) -> str:
    import joblib

    out = os.environ.get("PHLOEM_BENCH_OUT") or tempfile.mkdtemp(prefix="phloem-w3-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{best['model']}.joblib")
    joblib.dump(models[best["model"]], path)
    return path


_TRAINERS = {"logreg": train_logreg, "forest": train_forest, "boosting": train_boosting}


def make_w3(name: str = "W3", *, cache: bool = False) -> Pipeline:
    def body(
        n_samples: int = W3_SAMPLES, n_features: int = W3_FEATURES, min_auc: float = W3_MIN_AUC
    ) -> None:
        data = make_data(n_samples, n_features)
        checked = validate(data)
        split = scale(data)
        checked >> split
        models = {kind: train(split) for kind, train in _TRAINERS.items()}
        results = [
            evaluate.with_options(name=f"evaluate_{kind}")(model, split, kind)
            for kind, model in models.items()
        ]
        save(gate(pick_best(results), min_auc), models)

    return phloem.pipeline(name=name, default_task_options={"cache": cache})(body)


W3 = make_w3()


def plain_w3(
    tick: Tick,
    n_samples: int = W3_SAMPLES,
    n_features: int = W3_FEATURES,
    min_auc: float = W3_MIN_AUC,
) -> str:
    """W3 as a plain script would run it: the three trainings one after another."""
    data = make_data.fn(n_samples, n_features)
    tick()
    validate.fn(data)
    tick()
    split = scale.fn(data)
    tick()
    models = {}
    for kind, train in _TRAINERS.items():
        models[kind] = train.fn(split)
        tick()
    results = []
    for kind, model in models.items():
        results.append(evaluate.fn(model, split, kind))
        tick()
    best = pick_best.fn(results)
    tick()
    best = gate.fn(best, min_auc)
    tick()
    path = save.fn(best, models)
    tick()
    return path


#: workload name -> plain-Python version of its task functions
PLAIN: dict[str, Callable[[Tick], Any]] = {
    "W1": plain_w1,
    "W2": plain_w2,
    "W3": plain_w3,
    "hello": plain_hello,
}
#: workload name -> its pipeline
PIPELINES: dict[str, Pipeline] = {"W1": W1, "W2": W2, "W3": W3, "hello": hello}

#: W2 and W3 with ``cache=True`` on every task (benchmarks/cache.py)
W2C = make_w2("W2C", cache=True)
W3C = make_w3("W3C", cache=True)
