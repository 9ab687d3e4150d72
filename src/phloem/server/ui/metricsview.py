"""What the metrics pages show: a metric's trend across a pipeline's runs, and selected runs
side by side (their parameters and final metric values), each as an inline SVG chart and as a
table of the same numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from phloem.errors import PhloemError
from phloem.records import RunRecord
from phloem.server.ui.charts import BarChart, LineChart, bar_chart, line_chart
from phloem.store.port import Store
from phloem.store.tracking import TrendPoint

#: how many recent runs the trend page looks at
TREND_RUNS = 50
#: the most runs one comparison takes
MAX_COMPARE = 12


@dataclass(frozen=True, slots=True)
class Trend:
    pipeline: str
    keys: list[str]  # every metric the recent runs logged
    key: str | None
    points: list[TrendPoint]
    chart: LineChart | None


def trend(store: Store, pipeline: str, key: str | None) -> Trend:
    store.catalog.pipeline(pipeline)  # an unknown pipeline is a 404 naming it
    recent = [r.run_id for r in store.list_runs(pipeline, limit=TREND_RUNS)]
    keys = sorted({m.key for m in store.tracking.metrics(recent)}) if recent else []
    if key is None:
        key = keys[0] if keys else None
    elif key not in keys:
        raise PhloemError(
            f"the last {TREND_RUNS} runs of '{pipeline}' logged no metric '{key}' (they "
            f"logged: {', '.join(keys) or 'none'})",
            pipeline=pipeline,
        )
    points = store.tracking.trend(pipeline, key, last=TREND_RUNS) if key else []
    chart = (
        line_chart(
            [
                (
                    p.value,
                    f"{p.logical_date[:19].replace('T', ' ')} ({p.run_id})",
                    p.run_state,
                    f"/runs/{p.run_id}",
                )
                for p in points
            ]
        )
        if points
        else None
    )
    return Trend(pipeline, keys, key, points, chart)


@dataclass(frozen=True, slots=True)
class Comparison:
    runs: list[RunRecord]
    params: list[tuple[str, list[Any], bool]]  # name, value per run, whether they differ
    metrics: list[tuple[str, list[float | None], bool]]
    charts: list[BarChart]


_MISSING = object()


def compare(store: Store, run_ids: list[str]) -> Comparison:
    ids = list(dict.fromkeys(i for i in run_ids if i))
    if len(ids) < 2:
        raise PhloemError("select two or more runs to compare (tick them in a pipeline's grid)")
    if len(ids) > MAX_COMPARE:
        raise PhloemError(f"compare at most {MAX_COMPARE} runs at once ({len(ids)} selected)")
    runs = [store.get_run(i) for i in ids]  # an unknown id is a 404 naming it
    logged = store.tracking.params(ids)
    finals = store.tracking.final(ids)
    # run parameters first, then what tasks logged with log_param
    param_rows: dict[str, list[Any]] = {}
    for col, r in enumerate(runs):
        merged = {**r.params, **logged.get(r.run_id, {})}
        for k, v in merged.items():
            param_rows.setdefault(k, [_MISSING] * len(runs))[col] = v
    params = [
        (k, [None if v is _MISSING else v for v in vals], len({repr(v) for v in vals}) > 1)
        for k, vals in sorted(param_rows.items())
    ]
    keys = sorted({k for f in finals.values() for k in f})
    metrics = []
    charts = []
    for k in keys:
        vals = [finals.get(r.run_id, {}).get(k) for r in runs]
        differ = len({v for v in vals if v is not None and not math.isnan(v)}) > 1
        metrics.append((k, vals, differ))
        charts.append(
            bar_chart(
                k,
                [
                    (math.nan if v is None else v, r.run_id[-8:])
                    for v, r in zip(vals, runs, strict=True)
                ],
            )
        )
    return Comparison(runs, params, metrics, charts)


__all__ = ["MAX_COMPARE", "TREND_RUNS", "Comparison", "Trend", "compare", "trend"]
