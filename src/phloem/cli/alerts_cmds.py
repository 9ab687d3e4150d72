"""``phloem alerts add | list | remove | history``: alert rules kept in the store for any
pipeline, and what alerts were sent. Rules are built by the same functions as
``@pipeline(alerts=[...])``, so the command line accepts exactly what code does."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from phloem.cli.common import application, errors, print_json

alerts_app = typer.Typer(
    help="Alert rules for any pipeline (webhook, e-mail) and the alerts sent.",
    no_args_is_help=True,
)

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNIT = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_span(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``3h``, ``1d`` as seconds."""
    from phloem.errors import AlertError

    m = _SPAN.match(text)
    if m is None:
        raise AlertError(f"--after {text!r}: write a duration such as 90s, 30m, 3h or 1d")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@alerts_app.command("add")
def alerts_add(
    pipeline: Annotated[str, typer.Argument(help="The pipeline's name.")],
    on: Annotated[
        str,
        typer.Option("--on", help="failure | retry | success | duration | deadline | metric"),
    ],
    webhook: Annotated[
        list[str] | None, typer.Option("--webhook", help="POST the alert to this URL.")
    ] = None,
    email: Annotated[
        list[str] | None, typer.Option("--email", help="E-mail the alert to this address.")
    ] = None,
    factor: Annotated[
        float | None, typer.Option(help="duration: times the median of past runs.")
    ] = None,
    last: Annotated[int | None, typer.Option(help="duration, metric: how many past runs.")] = None,
    after: Annotated[
        str | None, typer.Option(help="deadline: time after the logical date (3h, 30m).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="metric: the metric's name.")] = None,
    below: Annotated[float | None, typer.Option(help="metric: alert below this value.")] = None,
    drop_pct: Annotated[
        float | None, typer.Option("--drop-pct", help="metric: alert on a drop of this %.")
    ] = None,
    message: Annotated[
        str | None, typer.Option(help="Text with values, e.g. 'AUC {metrics.auc}'.")
    ] = None,
) -> None:
    """Add an alert rule for PIPELINE (kept in the store; every scheduler and `phloem run`
    applies it)."""
    from phloem.alerting.service import add_rule
    from phloem.alerts import channels as ch
    from phloem.alerts.rules import make_rule
    from phloem.errors import AlertError

    with errors():
        channels = [ch.webhook(u) for u in webhook or []] + [ch.email(a) for a in email or []]
        if not channels:
            raise AlertError("say where alerts go: --webhook URL and/or --email ADDRESS")
        options = {
            "factor": factor,
            "last": last,
            "after": parse_span(after) if after is not None else None,
            "metric": metric,
            "below": below,
            "drop_pct": drop_pct,
            "message": message,
        }
        rule = make_rule(on.strip().lower(), channels, options)
        app = application()
        known = {p.info.name for p in app.store.catalog.pipelines()}
        rule_id = add_rule(app.store, pipeline, rule, time.time())
    typer.echo(f"alert rule {rule_id} added: {pipeline}: {rule.describe()}")
    if known and pipeline not in known:
        typer.echo(
            f"note: no scheduler has seen a pipeline '{pipeline}' yet; the rule applies once "
            "one is run under that name",
            err=True,
        )


@alerts_app.command("list")
def alerts_list(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's rules.")] = None,
    as_json: JsonOut = False,
) -> None:
    """The alert rules kept in the store (rules declared in a pipeline's code apply too)."""
    from phloem.alerting.service import stored_rule

    with errors():
        rows = application().store.alerts.rules(pipeline)
        rules = [(row, stored_rule(row)) for row in rows]
    if as_json:
        print_json([
            {"id": row.id, "pipeline": row.pipeline, "kind": row.kind, "options": row.options,
             "rule": r.describe(), "channels": [c.shown() for c in r.channels]}
            for row, r in rules
        ])  # fmt: skip
        return
    if not rules:
        typer.echo("no alert rules in the store (`phloem alerts add PIPELINE --on failure ...`)")
        return
    for row, r in rules:
        where = ", ".join(f"{c.kind} {c.shown()}" for c in r.channels)
        typer.echo(f"{row.id:>4}  {row.pipeline}  {r.describe()}  -> {where}")


@alerts_app.command("remove")
def alerts_remove(rule_id: Annotated[int, typer.Argument(help="The rule's id.")]) -> None:
    """Remove a rule added with `phloem alerts add`."""
    from phloem.errors import AlertError

    with errors():
        if not application().store.alerts.remove_rule(rule_id):
            raise AlertError(
                f"no alert rule {rule_id} in the store; `phloem alerts list` shows their ids"
            )
    typer.echo(f"alert rule {rule_id} removed")


@alerts_app.command("history")
def alerts_history(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's alerts.")] = None,
    run: Annotated[str | None, typer.Option(help="Only this run's alerts.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOut = False,
) -> None:
    """The alerts raised, newest first: when, which run and rule, where to, and whether they
    were sent (pending ones are being retried)."""
    from phloem.alerts.channels import Channel

    with errors():
        rows = application().store.alerts.history(pipeline, max(1, limit), run)
    shown: list[dict[str, Any]] = [
        {
            "id": d.id,
            "at": _when(d.created_at),
            "pipeline": d.pipeline,
            "run_id": d.run_id,
            "rule": d.rule,
            "subject": d.subject or None,
            "channel": f"{d.kind} {Channel(d.kind, d.target).shown()}",
            "state": d.state,
            "tries": d.tries,
            "sent_at": _when(d.sent_at) if d.sent_at else None,
            "error": d.last_error,
        }
        for d in rows
    ]
    if as_json:
        print_json(shown)
        return
    if not shown:
        typer.echo("no alerts yet")
        return
    for x in shown:
        what = x["rule"] + (f" ({x['subject']})" if x["subject"] else "")
        line = f"{x['at']}  {x['pipeline']}  {x['run_id']}  {what}  -> {x['channel']}  "
        line += f"{x['state']} after {x['tries']} tr{'y' if x['tries'] == 1 else 'ies'}"
        if x["state"] != "sent" and x["error"]:
            line += f": {x['error']}"
        typer.echo(line)
