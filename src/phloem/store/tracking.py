"""Metrics and parameters that tasks logged (``phloem.log_metric``, ``log_param``), read
back for comparing runs and following a metric across a pipeline's runs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from phloem.store import schema as s
from phloem.store.engine import Database
from phloem.store.resilience import resilient


@dataclass(frozen=True, slots=True)
class MetricRow:
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    key: str
    value: float
    step: int | None
    at: float


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """A metric's final value in one run of a pipeline."""

    run_id: str
    logical_date: str
    run_state: str
    value: float


def _value(v: float | None) -> float:
    return math.nan if v is None else float(v)


def final_values(rows: Sequence[MetricRow]) -> dict[str, dict[str, float]]:
    """Each run's final value of each metric: the value logged last (by time, then step) by
    the latest try of the task that logged it."""
    best: dict[tuple[str, str], tuple[tuple[Any, ...], float]] = {}
    for r in rows:
        rank = (r.try_number, r.at, -1 if r.step is None else r.step)
        k = (r.run_id, r.key)
        if k not in best or rank >= best[k][0]:
            best[k] = (rank, r.value)
    out: dict[str, dict[str, float]] = {}
    for (run_id, key), (_, value) in best.items():
        out.setdefault(run_id, {})[key] = value
    return out


@resilient
class Tracking:
    """Read side of logged metrics and parameters, over one store."""

    def __init__(self, store: Database) -> None:
        self.store = store

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    def metrics(self, run_ids: Sequence[str], keys: Sequence[str] = ()) -> list[MetricRow]:
        """Every value logged in these runs (only ``keys`` if given), in logging order."""
        m = s.metrics
        q = select(m).where(m.c.run_id.in_(list(run_ids))).order_by(m.c.id)
        if keys:
            q = q.where(m.c.key.in_(list(keys)))
        with self.store.engine.connect() as conn:
            return [
                MetricRow(
                    r.run_id, r.task_id, r.map_index, r.try_number, r.key, _value(r.value),
                    r.step, r.at,
                )
                for r in conn.execute(q)
            ]

    def params(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each run's logged parameters (the latest try's value when several tasks or tries
        logged one key)."""
        p = s.logged_params
        q = (
            select(p.c.run_id, p.c.key, p.c.value)
            .where(p.c.run_id.in_(list(run_ids)))
            .order_by(p.c.try_number)
        )
        out: dict[str, dict[str, Any]] = {}
        with self.store.engine.connect() as conn:
            for run_id, key, value in conn.execute(q):
                out.setdefault(run_id, {})[key] = json.loads(value)
        return out

    def final(
        self, run_ids: Sequence[str], keys: Sequence[str] = ()
    ) -> dict[str, dict[str, float]]:
        """Each run's final value of each metric (see :func:`final_values`)."""
        return final_values(self.metrics(run_ids, keys))

    def trend(self, pipeline: str, key: str, last: int = 30) -> list[TrendPoint]:
        """``key``'s final value in each of the pipeline's last ``last`` runs that logged it,
        oldest first (by logical date)."""
        r, m = s.runs, s.metrics
        runs_q = (
            select(r.c.run_id, r.c.logical_date, r.c.state)
            .where(
                r.c.pipeline == pipeline,
                r.c.run_id.in_(select(m.c.run_id).where(m.c.key == key).distinct()),
            )
            .order_by(r.c.logical_date.desc())
            .limit(last)
        )
        with self.store.engine.connect() as conn:
            runs = list(conn.execute(runs_q))
        finals = self.final([x.run_id for x in runs], [key])
        return [
            TrendPoint(x.run_id, x.logical_date, x.state, finals[x.run_id][key])
            for x in reversed(runs)
            if key in finals.get(x.run_id, {})
        ]


__all__ = ["MetricRow", "Tracking", "TrendPoint", "final_values"]
