"""joblib for fitted models: scikit-learn estimators and pipelines, XGBoost and LightGBM.

joblib pickles, but stores the NumPy arrays inside a model efficiently; loading is as trusted
as pickle, which is why the store verifies the digest before :meth:`loads` ever sees bytes.
"""

from __future__ import annotations

import io

from .base import top_package

MODEL_PACKAGES = frozenset({"sklearn", "xgboost", "lightgbm"})


class JoblibSerializer:
    """Model objects from :data:`MODEL_PACKAGES` ↔ joblib bytes."""

    name = "joblib"
    ext = "joblib"

    def handles(self, value: object) -> bool:
        return top_package(value) in MODEL_PACKAGES

    def dumps(self, value: object) -> bytes:
        import joblib

        buf = io.BytesIO()
        joblib.dump(value, buf)
        return buf.getvalue()

    def loads(self, data: bytes) -> object:
        import joblib

        return joblib.load(io.BytesIO(data))


JOBLIB = JoblibSerializer()
