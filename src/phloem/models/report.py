"""What people read about registered versions: where one came from (lineage summary) and how
two differ (compare), as plain JSON-able dicts the CLI prints or dumps."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from phloem.errors import RunNotFound
from phloem.store import Store
from phloem.store.models import ModelVersion


def when(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat("T", "seconds")


def version_dict(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "status": v.status,
        "aliases": list(v.aliases),
        "metrics": v.metrics,
        "params": v.params,
        "tags": v.tags,
        "description": v.description,
        "eval_digest": v.eval_digest,
        "model": {
            "digest": v.artifact.digest,
            "format": v.artifact.serializer,
            "type": v.artifact.type_name,
            "size": v.artifact.size,
        },
        "registered_by": v.registered_by,
        "created_at": when(v.created_at),
        "ready_at": when(v.ready_at),
        "run_id": v.run_id,
        "task_id": v.task_id,
    }


def lineage(store: Store, v: ModelVersion) -> dict[str, Any]:
    """The run, code and inputs that made ``v`` (one level: the task's direct inputs and the
    tasks of its run that produced them)."""
    out: dict[str, Any] = {
        "model_digest": v.artifact.digest,
        "eval_digest": v.eval_digest,
        "registered_by": v.registered_by,
        "run_id": v.run_id,
    }
    if v.run_id is None:
        out["origin"] = "registered outside a task"
        return out
    try:
        run = store.get_run(v.run_id)
    except RunNotFound:
        out["origin"] = "its run is no longer in the store"
        return out
    uses = store.artifact_uses(v.run_id)
    producers = {u.digest: u.task_id for u in uses if u.role == "output"}
    inputs = []
    for u in uses:
        if u.role == "input" and u.task_id == v.task_id and u.map_index == v.map_index:
            record = store.artifact(u.digest)
            inputs.append(
                {
                    "digest": u.digest,
                    "type": record.type_name if record else None,
                    "produced_by": producers.get(u.digest),
                }
            )
    out.update(
        pipeline=run.pipeline,
        task_id=v.task_id,
        map_index=v.map_index,
        try_number=v.try_number,
        logical_date=run.logical_date,
        code_hash=run.code_hash,
        run_params=run.params,
        inputs=inputs,
    )
    return out


def _delta(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        d = float(b) - float(a)
        return None if math.isnan(d) else d
    return None


def compare(store: Store, a: ModelVersion, b: ModelVersion) -> dict[str, Any]:
    """``a`` and ``b`` side by side: metrics with deltas (b - a), params and tags with what
    differs, evaluation data, and where each came from."""
    metrics = {
        k: {
            "a": a.metrics.get(k),
            "b": b.metrics.get(k),
            "delta": _delta(a.metrics.get(k), b.metrics.get(k)),
        }
        for k in sorted({*a.metrics, *b.metrics})
    }

    def side(x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any]:
        return {
            k: {"a": x.get(k), "b": y.get(k), "same": x.get(k) == y.get(k)}
            for k in sorted({*x, *y})
        }

    def origin(v: ModelVersion) -> dict[str, Any]:
        lin = lineage(store, v)
        keep = ("run_id", "pipeline", "task_id", "code_hash", "logical_date", "origin")
        summary = {k: lin[k] for k in keep if k in lin}
        summary["inputs"] = [i["digest"][:12] for i in lin.get("inputs", [])]
        return summary

    return {
        "name": a.name,
        "a": a.version,
        "b": b.version,
        "metrics": metrics,
        "params": side(a.params, b.params),
        "tags": side(a.tags, b.tags),
        "eval_data": {
            "a": a.eval_digest,
            "b": b.eval_digest,
            "same": a.eval_digest is not None and a.eval_digest == b.eval_digest,
        },
        "lineage": {"a": origin(a), "b": origin(b)},
        "aliases": {"a": list(a.aliases), "b": list(b.aliases)},
    }


__all__ = ["compare", "lineage", "version_dict", "when"]
