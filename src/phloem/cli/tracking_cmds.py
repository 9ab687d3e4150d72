"""``phloem runs compare`` and ``phloem metrics``: the experiment view over logged metrics and
parameters (``phloem.log_metric``, ``phloem.log_param``)."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

from phloem.cli.common import application, errors, fail, print_json

_BLOCKS = "▁▂▃▄▅▆▇█"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.6g}"


def sparkline(values: list[float]) -> str:
    """One character per value, its height scaled between the smallest and largest."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "?" * len(values)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("?")
        else:
            level = 0 if span == 0 else round((v - lo) / span * (len(_BLOCKS) - 1))
            out.append(_BLOCKS[level])
    return "".join(out)


def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or unique prefixes).")],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Only this metric (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Params and metrics of several runs side by side (each metric's final value)."""
    if len(run_ids) < 2:
        fail("runs compare needs at least two runs")
    with errors():
        store = application().store
        runs = [store.get_run(r) for r in run_ids]
        ids = [r.run_id for r in runs]
        finals = store.tracking.final(ids, metric or ())
        params = store.tracking.params(ids)
    metric_keys = sorted({k for f in finals.values() for k in f})
    param_keys = sorted({k for p in params.values() for k in p})
    if metric and not metric_keys:
        fail(f"none of these runs logged {', '.join(metric)}")
    if as_json:
        print_json(
            [
                {
                    "run_id": r.run_id,
                    "pipeline": r.pipeline,
                    "logical_date": r.logical_date,
                    "state": str(r.state),
                    "run_params": r.params,
                    "params": params.get(r.run_id, {}),
                    "metrics": finals.get(r.run_id, {}),
                }
                for r in runs
            ]
        )
        return
    from rich.table import Table

    from phloem.cli.tables import console

    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    for r in runs:
        table.add_column(f"{r.run_id[:12]}\n{r.pipeline}\n{r.logical_date[:19]}", justify="right")
    table.add_row("state", *(str(r.state) for r in runs))
    run_param_keys = sorted({k for r in runs for k in r.params})
    for k in run_param_keys:
        table.add_row(f"run param {k}", *(_text(r.params.get(k)) for r in runs))
    for k in param_keys:
        table.add_row(f"param {k}", *(_text(params.get(i, {}).get(k)) for i in ids))
    for k in metric_keys:
        values = [finals.get(i, {}).get(k) for i in ids]
        table.add_row(f"[bold]{k}[/bold]", *(_number(v) for v in values))
    console().print(table)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def metrics(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    metric: Annotated[str, typer.Option("--metric", "-m", help="The metric to follow.")],
    last: Annotated[int, typer.Option("--last", "-n", min=1, help="This many latest runs.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print the points as JSON.")] = False,
) -> None:
    """A metric's trend across a pipeline's runs (its final value in each), oldest first."""
    with errors():
        points = application().store.tracking.trend(pipeline, metric, last)
    if as_json:
        print_json(
            [
                {
                    "run_id": p.run_id,
                    "logical_date": p.logical_date,
                    "state": p.run_state,
                    "value": p.value,
                }
                for p in points
            ]
        )
        return
    if not points:
        fail(f"no run of pipeline '{pipeline}' logged metric '{metric}'", code=1)
    from rich.table import Table

    from phloem.cli.tables import console

    values = [p.value for p in points]
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    out = console()
    out.print(f"[bold]{metric}[/bold] over {len(points)} runs of {pipeline}: {sparkline(values)}")
    if finite:
        out.print(f"min {_number(lo)}  max {_number(hi)}  last {_number(values[-1])}")
    table = Table(show_header=True, header_style="bold", box=None)
    for col in ("logical date", "run", "state", metric, ""):
        table.add_column(col, justify="right" if col == metric else "left")
    width = 30
    for p in points:
        filled = 0
        if math.isfinite(p.value):
            filled = width if hi == lo else round((p.value - lo) / (hi - lo) * width)
        bar = "█" * max(filled, 1) if math.isfinite(p.value) else "?"
        table.add_row(p.logical_date[:19], p.run_id[:12], p.run_state, _number(p.value), bar)
    out.print(table)


__all__ = ["metrics", "runs_compare", "sparkline"]
