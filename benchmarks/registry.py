"""The model registry against plain joblib: register + load of a ~50 MB model versus
``joblib.dump`` + ``joblib.load`` of the same model to a file.

    python benchmarks/registry.py                  # SQLite in a temporary home, median of 5
    python benchmarks/registry.py --mb 200 --repeat 3
    python benchmarks/registry.py --db-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Registering serializes the model once (joblib), hashes it, writes it to the artifact store and
allocates the version in one transaction; loading resolves the alias, reads the file, checks its
digest and deserializes. It prints figures and asserts nothing (target: ratio <= 2).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.neighbors import KNeighborsClassifier

import phloem
from phloem.app import Phloem


def make_model(mb: float) -> KNeighborsClassifier:
    """A fitted model holding ``mb`` megabytes of arrays (brute-force k-NN keeps its data)."""
    features = 16
    rows = int(mb * 1e6 / (8 * features))
    rng = np.random.default_rng(0)
    x = rng.random((rows, features))
    y = rng.integers(0, 2, rows)
    return KNeighborsClassifier(algorithm="brute").fit(x, y)


def time_joblib(model: object, where: Path) -> tuple[float, float]:
    path = where / "model.joblib"
    t0 = time.perf_counter()
    joblib.dump(model, path)
    t1 = time.perf_counter()
    joblib.load(path)
    t2 = time.perf_counter()
    path.unlink()
    return t1 - t0, t2 - t1


def time_registry(model: object, app: Phloem, i: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    version = phloem.models.register("bench", model, metrics={"i": i}, app=app)
    phloem.models.set_alias("bench", version, "production", app=app)
    t1 = time.perf_counter()
    phloem.models.load("bench@production", app=app)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="model size in MB")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db-url", default=None, help="store URL (default: SQLite in a temp home)")
    args = parser.parse_args()

    model = make_model(args.mb)
    with tempfile.TemporaryDirectory(prefix="phloem-bench-") as tmp:
        home = Path(tmp)
        app = Phloem.open(args.db_url, home) if args.db_url else Phloem.open(home=home)
        try:
            app.store  # noqa: B018 (schema created before timing)
            plain = [time_joblib(model, home) for _ in range(args.repeat)]
            # each round registers a new version of equal bytes, which the content-addressed
            # store would keep once: the artifact root is emptied before each round so every
            # round writes the model in full
            reg = []
            for i in range(args.repeat):
                shutil.rmtree(home / "artifacts", ignore_errors=True)
                reg.append(time_registry(model, app, i))
        finally:
            app.close()

    def med(xs: list[tuple[float, float]], k: int | None) -> float:
        return statistics.median(x[0] + x[1] if k is None else x[k] for x in xs)

    print(f"model: {type(model).__name__}, {args.mb:.0f} MB of arrays; median of {args.repeat}")
    print(f"{'':26}{'save s':>10}{'load s':>10}{'total s':>10}")
    for label, xs in (("joblib dump + load", plain), ("register + load (alias)", reg)):
        print(f"{label:26}{med(xs, 0):10.3f}{med(xs, 1):10.3f}{med(xs, None):10.3f}")
    ratio = med(reg, None) / med(plain, None)
    print(f"ratio registry / joblib: {ratio:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
