"""Keeping a check's report: an artifact of the attempt (recorded with its role for lineage),
its numbers as run metrics, and a readable table in the task's log.

Outside a task (a notebook, a unit test) nothing is stored: the report is only returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from phloem.artifacts.active import active_store
from phloem.artifacts.ref import ArtifactRef
from phloem.effects import ArtifactRecorded, record, recording
from phloem.tracking import log_metric

#: the roles under which tasks keep their reports (artifact uses, for lineage)
VALIDATION = "validation"
DRIFT = "drift"
ROLES = (VALIDATION, DRIFT)


def save(payload: Mapping[str, Any], role: str) -> ArtifactRef | None:
    """Store ``payload`` (JSON) as an artifact of the running attempt, used in ``role``
    (kept even if the attempt fails: a failed check's report says why)."""
    store = active_store()
    if store is None or not recording():
        return None
    ref = store.put(dict(payload))
    record(
        ArtifactRecorded(ref.digest, ref.serializer, ref.type_name, ref.size, ref.key, role),
        what="saving a report",
    )
    return ref


def metrics(values: Mapping[str, float]) -> None:
    """Log ``values`` as run metrics when a task runs (NaN is kept as NaN)."""
    if not recording():
        return
    for key, value in values.items():
        log_metric(key, value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as aligned text columns."""
    cells = [[str(c) for c in header], *[[_cell(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity."""
    return value if math.isfinite(value) else None


__all__ = ["DRIFT", "ROLES", "VALIDATION", "finite_or_none", "metrics", "save", "table"]
