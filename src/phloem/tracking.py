"""``phloem.log_metric`` and friends: the numbers and settings of an experiment, logged from
inside a task and kept with the attempt that logged them.

They are attempt effects (``phloem.effects``): nothing is written while the task runs; the
values are committed with the attempt's end, in the same transaction, so a retried task never
doubles a metric. Metrics of a failed attempt are kept too (they explain the failure).
Values logged from threads the task starts are not seen: log from the task's own thread.
"""

from __future__ import annotations

import json
import numbers
import time
from collections.abc import Mapping
from typing import Any

from phloem.effects import MetricLogged, ParamLogged, record
from phloem.errors import PhloemError

MAX_KEY = 250


def _key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise PhloemError(f"{what} name must be a non-empty string, not {key!r}")
    if len(key) > MAX_KEY or any(ord(c) < 32 for c in key):
        raise PhloemError(
            f"{what} name {key[:40]!r}... must be at most {MAX_KEY} characters without control "
            "characters"
        )
    return key


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # NumPy scalars are numbers.Real; a 0-d array or tensor has .item()
        item = getattr(value, "item", None)
        if callable(item):
            return _number(key, item())
        raise PhloemError(
            f"metric '{key}' must be a number, not {type(value).__name__} ({value!r}); log "
            "text with phloem.log_param"
        )
    return float(value)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Log a metric's value (``step``: its position in a series, such as an epoch). NaN and
    infinities are kept as they are."""
    key = _key(key, "metric")
    number = _number(key, value)
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise PhloemError(f"metric '{key}': step must be an int, not {step!r}")
    record(MetricLogged(key, number, step, time.time()), what="phloem.log_metric()")


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log several metrics at once (all checked before any is logged)."""
    checked = [(_key(k, "metric"), v) for k, v in metrics.items()]
    for k, v in checked:
        _number(k, v)
    for k, v in checked:
        log_metric(k, v, step)


def log_param(key: str, value: Any) -> None:
    """Log a parameter the task used (JSON-able values as they are, others as their text)."""
    key = _key(key, "parameter")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(str(value))
    record(ParamLogged(key, text), what="phloem.log_param()")


def log_params(params: Mapping[str, Any]) -> None:
    """Log several parameters at once."""
    for k in params:
        _key(k, "parameter")
    for k, v in params.items():
        log_param(k, v)


__all__ = ["log_metric", "log_metrics", "log_param", "log_params"]
