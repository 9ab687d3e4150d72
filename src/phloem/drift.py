"""``phloem.drift``: has the data moved away from what a model was trained on?

- :func:`psi`: the population stability index of one feature. Numeric features are cut into
  ``bins`` buckets at the reference's quantiles (outer buckets open-ended, so new extremes
  count); categorical ones (text, booleans, categories) compare category frequencies, a
  category unseen in the reference being a bucket of its own. An empty bucket's share is
  taken as ``eps`` (1e-4) so the logarithm stays finite. A constant reference gets three
  buckets (below, at, above its value), so a shift of the current data still shows.
  ``PSI = sum((cur - ref) * ln(cur / ref))``; by custom under 0.1 is stable, 0.1 to 0.2 a
  moderate shift, above 0.2 a significant one.
- :func:`ks`: the two-sample Kolmogorov-Smirnov statistic (the largest distance between the
  two empirical distribution functions, computed exactly) and its asymptotic p-value.
- :func:`report`: both for every shared column of two frames (pandas or polars), kept as a
  drift report artifact and as run metrics (``drift.psi.<feature>``, ``drift.ks.<feature>``,
  ``drift.max_psi``) when called in a task.

Missing values (None, NaN) are left out of both samples; their share is a data-quality
question for ``phloem.expect``.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from phloem.artifacts.ref import ArtifactRef
from phloem.context import current
from phloem.errors import ConditionError
from phloem.quality import reports
from phloem.quality.frames import Frame, frame

EPS = 1e-4


# -- the statistics ------------------------------------------------------------------------------


def psi(ref: Any, cur: Any, bins: int = 10, *, categorical: bool | None = None,
        eps: float = EPS) -> float:
    """The population stability index of ``cur`` against ``ref`` (1-D: lists, NumPy arrays,
    pandas or polars series). ``categorical`` defaults to "not numbers"."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConditionError(f"psi(bins=...) must be an int >= 1, not {bins!r}")
    if not 0 < eps < 1:
        raise ConditionError(f"psi(eps=...) must be between 0 and 1, not {eps!r}")
    r, c = _values(ref, "ref"), _values(cur, "cur")
    if categorical is None:
        categorical = not (_numeric(r) and _numeric(c))
    if categorical:
        p, q = _category_shares(r, c)
    else:
        p, q = _bin_shares(_floats(r), _floats(c), bins)
    return _psi(p, q, eps)


def _psi(p: Sequence[float], q: Sequence[float], eps: float) -> float:
    total = 0.0
    for a, b in zip(p, q, strict=True):
        a, b = max(a, eps), max(b, eps)
        total += (b - a) * math.log(b / a)
    return total


def _bin_shares(r: Any, c: Any, bins: int) -> tuple[list[float], list[float]]:
    import numpy as np

    edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)))
    inner = edges[1:-1]
    if len(edges) == 1:  # a constant reference: below, at, above its value
        v = edges[0]
        inner = np.array([v, np.nextafter(v, math.inf)])
    rc = np.bincount(np.searchsorted(inner, r, side="right"), minlength=len(inner) + 1)
    cc = np.bincount(np.searchsorted(inner, c, side="right"), minlength=len(inner) + 1)
    return list(rc / len(r)), list(cc / len(c))


def _category_shares(r: list[Any], c: list[Any]) -> tuple[list[float], list[float]]:
    rc, cc = Counter(map(_key, r)), Counter(map(_key, c))
    cats = sorted(set(rc) | set(cc))
    return [rc[k] / len(r) for k in cats], [cc[k] / len(c) for k in cats]


def _key(v: Any) -> str:
    return f"{type(v).__name__}:{v}"


@dataclass(frozen=True, slots=True)
class KS:
    """A two-sample Kolmogorov-Smirnov test: the statistic and its p-value."""

    statistic: float
    pvalue: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.statistic, self.pvalue))


def ks(ref: Any, cur: Any) -> KS:
    """The two-sample Kolmogorov-Smirnov test of numeric ``cur`` against ``ref``."""
    import numpy as np

    r, c = _floats(_values(ref, "ref")), _floats(_values(cur, "cur"))
    r, c = np.sort(r), np.sort(c)
    both = np.concatenate([r, c])
    cdf_r = np.searchsorted(r, both, side="right") / len(r)
    cdf_c = np.searchsorted(c, both, side="right") / len(c)
    d = float(np.max(np.abs(cdf_r - cdf_c)))
    en = len(r) * len(c) / (len(r) + len(c))
    return KS(d, _kolmogorov_sf((math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en)) * d))


def _kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution: 2 sum (-1)^(k-1) exp(-2 k^2 lam^2)."""
    if lam < 1e-3:
        return 1.0
    total, sign = 0.0, 1.0
    for k in range(1, 101):
        term = sign * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
        sign = -sign
    return min(1.0, max(0.0, 2.0 * total))


# -- inputs ---------------------------------------------------------------------------------------


def _values(x: Any, what: str) -> list[Any]:
    """The non-missing values of a 1-D input, as Python objects."""
    if isinstance(x, (str, bytes)) or x is None:
        raise ConditionError(f"drift: {what} must be a sequence of values, not {x!r}")
    to_list = getattr(x, "to_list", None) or getattr(x, "tolist", None)
    values = to_list() if callable(to_list) else list(x)
    if values and isinstance(values[0], list):
        raise ConditionError(f"drift: {what} must be one-dimensional (one feature at a time)")
    out = [v for v in values if not _missing(v)]
    if not out:
        raise ConditionError(f"drift: {what} has no values (empty, or only missing values)")
    return out


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, NaT
    except (TypeError, ValueError):
        return False


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)


def _floats(values: list[Any]) -> Any:
    import numpy as np

    if not _numeric(values):
        bad = next(v for v in values if not isinstance(v, numbers.Real) or isinstance(v, bool))
        raise ConditionError(
            f"drift: ks needs numbers, and {bad!r} is not one (use psi for categories)"
        )
    arr = np.asarray(values, dtype="float64")
    if not np.all(np.isfinite(arr)):
        raise ConditionError("drift: infinite values cannot be binned; drop or clip them first")
    return arr


# -- the report of two frames --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    psi: float
    ks: float | None
    pvalue: float | None
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "psi": reports.finite_or_none(self.psi),
            "ks": self.ks,
            "pvalue": self.pvalue,
            "drifted": self.drifted,
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Drift of every feature; truthy when any feature drifted (PSI at or over the
    threshold)."""

    features: tuple[FeatureDrift, ...]
    threshold: float
    ref_rows: int
    cur_rows: int
    artifact: ArtifactRef | None = None

    @property
    def drifted(self) -> bool:
        return any(f.drifted for f in self.features)

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.drifted)

    @property
    def max_psi(self) -> float:
        return max((f.psi for f in self.features), default=0.0)

    def __bool__(self) -> bool:
        return self.drifted

    def __getitem__(self, feature: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == feature:
                return f
        raise KeyError(feature)

    def summary(self) -> str:
        n = len(self.features)
        if not self.drifted:
            return f"no drift: {n} features under PSI {self.threshold:g} (max {self.max_psi:.3f})"
        return (
            f"drift in {len(self.drifted_features)} of {n} features (PSI >= "
            f"{self.threshold:g}): {', '.join(self.drifted_features)}"
        )

    def table(self) -> str:
        rows = [
            (
                "DRIFT" if f.drifted else "ok",
                f.feature,
                f.kind,
                f.psi,
                f.ks,
                f.pvalue,
            )
            for f in self.features
        ]
        body = reports.table(("", "FEATURE", "KIND", "PSI", "KS", "P-VALUE"), rows)
        return f"{self.summary()} ({self.ref_rows} reference rows, {self.cur_rows} current)\n{body}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "drift",
            "drifted": self.drifted,
            "threshold": self.threshold,
            "max_psi": reports.finite_or_none(self.max_psi),
            "ref_rows": self.ref_rows,
            "cur_rows": self.cur_rows,
            "features": [f.to_dict() for f in self.features],
            "table": self.table(),
        }

    def __str__(self) -> str:
        return self.table()


def report(
    ref: Any,
    cur: Any,
    *,
    columns: Sequence[str] | None = None,
    bins: int = 10,
    threshold: float = 0.2,
) -> DriftReport:
    """PSI (and KS for numeric features) of every column both frames share (or
    ``columns``); in a task, kept as an artifact (role ``drift``) and as run metrics."""
    rf, cf = frame(ref, what="phloem.drift.report()"), frame(cur, what="phloem.drift.report()")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or threshold <= 0:
        raise ConditionError(f"drift report: threshold must be a number > 0, not {threshold!r}")
    names = list(columns) if columns is not None else [c for c in rf.columns if c in cf.columns]
    missing = [c for c in names if c not in rf.columns or c not in cf.columns]
    if missing:
        raise ConditionError(
            f"drift report: column {', '.join(map(repr, missing))} is not in both frames "
            f"(reference: {', '.join(rf.columns)}; current: {', '.join(cf.columns)})"
        )
    if not names:
        raise ConditionError("drift report: the two frames share no column")
    features = tuple(_feature(rf, cf, name, bins, float(threshold)) for name in names)
    result = DriftReport(features, float(threshold), rf.rows, cf.rows)
    metrics: dict[str, float] = {"drift.max_psi": result.max_psi}
    for f in features:
        metrics[f"drift.psi.{f.feature}"] = f.psi
        if f.ks is not None:
            metrics[f"drift.ks.{f.feature}"] = f.ks
    reports.metrics(metrics)
    ref_ = reports.save(result.to_dict(), reports.DRIFT)
    if ref_ is not None:
        result = DriftReport(features, result.threshold, rf.rows, cf.rows, ref_)
    ctx = current()
    if ctx is not None:
        ctx.log.info("%s", result.table())
    return result


def _feature(rf: Frame, cf: Frame, name: str, bins: int, threshold: float) -> FeatureDrift:
    numeric = rf.family(name) in ("int", "float") and cf.family(name) in ("int", "float")
    if numeric:
        r, c = rf.numeric(name), cf.numeric(name)
        for arr, what in ((r, "reference"), (c, "current")):
            if len(arr) == 0:
                raise ConditionError(f"drift report: column '{name}' has no values in the {what}")
        value = psi(r, c, bins, categorical=False)
        test = ks(r, c)
        return FeatureDrift(name, "numeric", value, test.statistic, test.pvalue, value >= threshold)
    value = psi(rf.values(name), cf.values(name), categorical=True)
    return FeatureDrift(name, "categorical", value, None, None, value >= threshold)


__all__ = ["EPS", "KS", "DriftReport", "FeatureDrift", "ks", "psi", "report"]
