"""What an alert says: the same facts on every channel (a title and a text for people, fields
for programs), naming the pipeline, the run, the rule and how to see the run, with every
known secret masked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phloem.alerts.rules import Rule
from phloem.alerts.template import render
from phloem.records import RunRecord
from phloem.secrets import Masker
from phloem.store.deliveries import NewDelivery

#: the longest error an alert quotes
MAX_ERROR = 600


@dataclass(frozen=True, slots=True)
class Facts:
    """What a rule saw in a run."""

    state: str  # the run's state (the task's for a retry)
    subject: str = ""  # "" for the run, "task[map]#try" for one attempt
    task: str | None = None
    error: str | None = None
    failed: Mapping[str, str | None] = field(default_factory=dict)
    value: float | None = None
    detail: str | None = None  # how the value compares ("median 12.0s over 20 runs")
    duration: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


def see(run_id: str, server_url: str | None) -> str:
    if server_url:
        return f"{server_url.rstrip('/')}/api/v1/runs/{run_id}"
    return f"phloem runs show {run_id}"


def deliveries(
    rule: Rule,
    pipeline: str,
    run: RunRecord,
    facts: Facts,
    *,
    server_url: str | None,
    masker: Masker,
) -> list[NewDelivery]:
    """One delivery per channel of ``rule``."""
    where = see(run.run_id, server_url)
    what = rule.describe()
    custom = None
    if rule.message:
        custom = render(
            rule.message,
            {
                "pipeline": pipeline,
                "run": {
                    "id": run.run_id,
                    "state": facts.state,
                    "logical_date": run.logical_date,
                    "duration": facts.duration,
                },
                "metrics": dict(facts.metrics),
                "params": dict(run.params),
                "rule": what,
                "task": facts.task,
                "error": facts.error,
                "value": facts.value,
                "see": where,
            },
        )
    headline = {
        "failure": "run failed",
        "retry": f"task {facts.task} will be retried",
        "success": "run succeeded",
        "duration": "run is taking long",
        "deadline": "run missed its deadline",
        "metric": f"metric {rule.metric} is off",
    }[rule.kind]
    title = f"phloem: {pipeline}: {headline} (run {run.run_id})"
    lines = [custom] if custom else []
    lines += [
        f"Pipeline: {pipeline}",
        f"Run: {run.run_id} (logical date {run.logical_date})",
        f"Rule: {what}",
        f"State: {facts.state}",
    ]
    if facts.task:
        lines.append(f"Task: {facts.task}")
    if facts.error:
        lines.append(f"Error: {_short(facts.error)}")
    if facts.failed:
        lines.append(
            "Failed tasks: "
            + "; ".join(f"{t}: {_short(e, 200)}" if e else t for t, e in facts.failed.items())
        )
    if facts.value is not None:
        lines.append(f"Value: {facts.value:g}" + (f" ({facts.detail})" if facts.detail else ""))
    lines.append(f"See: {where}")
    body = masker.mask("\n".join(lines))
    title = masker.mask(title)
    payload: dict[str, Any] = {
        "pipeline": pipeline,
        "run_id": run.run_id,
        "logical_date": run.logical_date,
        "rule": what,
        "rule_id": rule.rule_id,
        "kind": rule.kind,
        "state": facts.state,
        "see": where,
    }
    if facts.task:
        payload["task"] = facts.task
    if facts.error:
        payload["error"] = masker.mask(_short(facts.error))
    if facts.value is not None:
        payload["value"] = facts.value
    if custom:
        payload["message"] = masker.mask(custom)
    return [
        NewDelivery(
            rule_id=rule.rule_id,
            pipeline=pipeline,
            run_id=run.run_id,
            subject=facts.subject,
            channel=i,
            kind=c.kind,
            target=c.target,
            rule=what,
            title=title,
            body=body,
            payload=payload,
        )
        for i, c in enumerate(rule.channels)
    ]


def _short(text: str, limit: int = MAX_ERROR) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["Facts", "deliveries", "see"]
