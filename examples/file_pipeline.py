"""A pipeline over files that re-runs only the stages whose files or code changed.

Pattern: ``dvc repro``. ``prepare`` cleans the raw CSV, ``featurize`` standardizes it,
``train`` fits a gradient-boosting classifier with the hyperparameters of ``params.json``,
``evaluate`` scores it on held-out rows. Each stage reads and writes files, passed as
``phloem.File``: a stage's cache key holds the content hash of every file it reads (and its
code), and the file it returns is recorded with its content hash. Edit ``params.json`` and only
``train`` and ``evaluate`` run again; edit the raw data and everything downstream of it does,
except a stage whose input files come out the same; delete or edit an output file and its
stage runs again.

Run it (the first command writes the raw data, scikit-learn's bundled breast-cancer table,
and the hyperparameters into ``data/``):

    python examples/file_pipeline.py data
    phloem run examples/file_pipeline.py
    phloem run examples/file_pipeline.py            # every task: cached
    phloem cache explain RUN_ID train               # what its key holds, what changed

The files are run parameters (``--param raw=other.csv --param data_dir=out``): given as paths,
they arrive in the tasks as ``phloem.File``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import phloem
from phloem import File, task

SEED = 0


@task(cache=True)
def prepare(raw: File, data_dir: str) -> File:
    """Drop incomplete and duplicated rows; keep a fixed, shuffled order."""
    import pandas as pd

    df = pd.read_csv(raw).dropna().drop_duplicates()
    df = df.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    out = File(Path(data_dir) / "prepared.csv")
    df.to_csv(out, index=False)
    return out


@task(cache=True)
def featurize(prepared: File, data_dir: str) -> File:
    """Standardize every feature column (the label stays as it is)."""
    import pandas as pd

    df = pd.read_csv(prepared)
    features = [c for c in df.columns if c != "target"]
    df[features] = (df[features] - df[features].mean()) / df[features].std()
    out = File(Path(data_dir) / "features.csv")
    df.to_csv(out, index=False, float_format="%.8g")
    return out


@task(cache=True)
def train(features: File, params: File, data_dir: str) -> File:
    """Fit on the first 80% of the rows with the hyperparameters in ``params``."""
    import joblib
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    df = pd.read_csv(features)
    rows = int(len(df) * 0.8)
    hp = json.loads(params.read_text())
    model = HistGradientBoostingClassifier(random_state=SEED, **hp)
    model.fit(df.drop(columns="target")[:rows], df["target"][:rows])
    out = File(Path(data_dir) / "model.joblib")
    joblib.dump(model, out)
    return out


@task(cache=True)
def evaluate(model: File, features: File) -> dict[str, float]:
    """Accuracy and AUC on the last 20% of the rows."""
    import joblib
    import pandas as pd
    from sklearn.metrics import accuracy_score, roc_auc_score

    df = pd.read_csv(features)
    test = df[int(len(df) * 0.8) :]
    clf = joblib.load(model)
    X, y = test.drop(columns="target"), test["target"]
    return {
        "accuracy": float(accuracy_score(y, clf.predict(X))),
        "auc": float(roc_auc_score(y, clf.predict_proba(X)[:, 1])),
    }


@phloem.pipeline
def file_pipeline(
    raw: File = File("data/raw.csv"),
    params: File = File("data/params.json"),
    data_dir: str = "data",
) -> None:
    """prepare -> featurize -> train -> evaluate; outputs are written to ``data_dir``."""
    prepared = prepare(raw, data_dir)
    features = featurize(prepared, data_dir)
    model = train(features, params, data_dir)
    evaluate(model, features)


def write_inputs(data_dir: str) -> None:
    """The raw table and the hyperparameters the pipeline starts from."""
    from sklearn.datasets import load_breast_cancer

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(Path(data_dir) / "raw.csv", index=False)
    (Path(data_dir) / "params.json").write_text(json.dumps({"max_iter": 100, "max_depth": 3}))


if __name__ == "__main__":
    write_inputs(sys.argv[1] if len(sys.argv) > 1 else "data")
