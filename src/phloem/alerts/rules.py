"""Alert rules: what to watch in a pipeline's runs, and where to say it.

``@pipeline(alerts=[on_failure(email("ml@example.org")), on_duration(webhook(URL), factor=2)])``
declares rules with the pipeline; ``phloem alerts add`` stores more for any pipeline. A rule is
a frozen value; its ``rule_id`` is a hash of what it says, so the same rule keeps its id (and
its alerts are not sent twice) however often its pipeline's file is read.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from phloem.alerts.channels import Channel
from phloem.alerts.template import check_template
from phloem.errors import AlertError

#: the kinds of rule, in the order listings show them
KINDS = ("failure", "retry", "success", "duration", "deadline", "metric")


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule. Build it with ``on_failure`` ... ``on_metric``."""

    kind: str
    channels: tuple[Channel, ...]
    message: str | None = None
    #: duration: a run longer than ``factor`` x the median of its last ``last`` successful runs
    factor: float | None = None
    last: int | None = None
    #: deadline: a run not succeeded ``after`` seconds past its logical date
    after: float | None = None
    #: metric: the metric's name, and its floor or largest drop (percent of the median)
    metric: str | None = None
    below: float | None = None
    drop_pct: float | None = None
    #: set for rules kept in the store (``phloem alerts add``)
    stored_id: int | None = field(default=None, compare=False)

    def options(self) -> dict[str, Any]:
        """What the rule watches, as JSON-able values (without its channels)."""
        keys = ("message", "factor", "last", "after", "metric", "below", "drop_pct")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    @property
    def rule_id(self) -> str:
        if self.stored_id is not None:
            return f"cli-{self.stored_id}"
        body = json.dumps(
            [self.kind, self.options(), [(c.kind, c.target) for c in self.channels]],
            sort_keys=True,
        )
        return self.kind + "-" + hashlib.sha256(body.encode()).hexdigest()[:10]

    def describe(self) -> str:
        """The rule in words, for messages and listings."""
        if self.kind == "failure":
            return "run failed"
        if self.kind == "retry":
            return "task retried"
        if self.kind == "success":
            return "run succeeded"
        if self.kind == "duration":
            return f"run longer than {self.factor:g} x the median of its last {self.last} " + (
                "successful runs"
            )
        if self.kind == "deadline":
            return f"run not succeeded {_span(self.after or 0)} after its logical date"
        if self.below is not None:
            return f"metric {self.metric} below {self.below:g}"
        return f"metric {self.metric} dropped more than {self.drop_pct:g}% from the median " + (
            f"of the last {self.last} runs"
        )


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"


def _channels(channels: Sequence[Any], where: str) -> tuple[Channel, ...]:
    if not channels:
        raise AlertError(f"{where}: say where the alert goes, e.g. {where}(email('ml@x.org'))")
    for c in channels:
        if not isinstance(c, Channel):
            raise AlertError(
                f"{where}: {c!r} is not a channel; use webhook(URL), email(ADDRESS) or call(fn)"
            )
    return tuple(channels)


def _message(message: str | None, where: str) -> str | None:
    return None if message is None else check_template(message, where)


def _positive(value: Any, name: str, where: str, *, whole: bool = False) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if ok and whole and not isinstance(value, int):
        ok = False
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        kind = "a whole number >= 1" if whole else "a number > 0"
        raise AlertError(f"{where}: {name} must be {kind}, got {value!r}")
    return value


def on_failure(*channels: Channel, message: str | None = None) -> Rule:
    """Alert when a run fails."""
    return Rule("failure", _channels(channels, "on_failure"), _message(message, "on_failure"))


def on_retry(*channels: Channel, message: str | None = None) -> Rule:
    """Alert when a task's attempt failed and will be retried."""
    return Rule("retry", _channels(channels, "on_retry"), _message(message, "on_retry"))


def on_success(*channels: Channel, message: str | None = None) -> Rule:
    """Tell of a run that succeeded; ``message`` may name its values: ``"AUC {metrics.auc}"``."""
    return Rule("success", _channels(channels, "on_success"), _message(message, "on_success"))


def on_duration(
    *channels: Channel, factor: float = 2.0, last: int = 20, message: str | None = None
) -> Rule:
    """Alert when a run lasts longer than ``factor`` x the median duration of its pipeline's
    last ``last`` successful runs (told while it runs, not only when it ends)."""
    w = "on_duration"
    _positive(factor, "factor", w)
    _positive(last, "last", w, whole=True)
    return Rule(
        "duration", _channels(channels, w), _message(message, w), factor=float(factor), last=last
    )


def on_deadline(
    *channels: Channel, after: timedelta | float, message: str | None = None
) -> Rule:
    """Alert when a run has not succeeded ``after`` (a timedelta or seconds) past its logical
    date: a service-level deadline."""
    w = "on_deadline"
    seconds = after.total_seconds() if isinstance(after, timedelta) else after
    _positive(seconds, "after", w)
    return Rule("deadline", _channels(channels, w), _message(message, w), after=float(seconds))


def on_metric(
    metric: str,
    *channels: Channel,
    below: float | None = None,
    drop_pct: float | None = None,
    last: int = 10,
    message: str | None = None,
) -> Rule:
    """Alert when a run's metric (``phloem.log_metric``) is below ``below``, or dropped by
    more than ``drop_pct`` percent from its median over the pipeline's last ``last`` runs."""
    w = "on_metric"
    if not isinstance(metric, str) or not metric.strip():
        raise AlertError(
            f"{w}: name the metric first, e.g. on_metric('auc', email(...), below=0.8)"
        )
    if (below is None) == (drop_pct is None):
        raise AlertError(f"{w}('{metric}'): give exactly one of below=VALUE or drop_pct=PERCENT")
    if below is not None and (
        isinstance(below, bool) or not isinstance(below, (int, float)) or not math.isfinite(below)
    ):
        raise AlertError(f"{w}('{metric}'): below must be a number, got {below!r}")
    if drop_pct is not None:
        _positive(drop_pct, "drop_pct", w)
        if drop_pct > 100:
            raise AlertError(f"{w}('{metric}'): drop_pct is a percentage in (0, 100]")
    _positive(last, "last", w, whole=True)
    return Rule(
        "metric",
        _channels(channels, w),
        _message(message, w),
        last=last if drop_pct is not None else None,
        metric=metric,
        below=None if below is None else float(below),
        drop_pct=None if drop_pct is None else float(drop_pct),
    )


def check_rules(value: Any, where: str) -> tuple[Rule, ...]:
    """The ``alerts=`` option of ``@pipeline``: a list of rules."""
    if value is None:
        return ()
    if isinstance(value, Rule):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise AlertError(f"{where}: alerts must be a list of rules like [on_failure(email(...))]")
    for r in value:
        if not isinstance(r, Rule):
            hint = " (a channel alone says where, not when: wrap it, e.g. on_failure(...))" if (
                isinstance(r, Channel)
            ) else ""
            raise AlertError(f"{where}: {r!r} in alerts is not a rule{hint}")
    return tuple(value)




#: the options each kind of rule takes besides ``message``
OPTIONS: dict[str, tuple[str, ...]] = {
    "failure": (),
    "retry": (),
    "success": (),
    "duration": ("factor", "last"),
    "deadline": ("after",),
    "metric": ("metric", "below", "drop_pct", "last"),
}


def make_rule(
    kind: str, channels: Sequence[Channel], options: dict[str, Any], stored_id: int | None = None
) -> Rule:
    """The rule ``on_<kind>(*channels, **options)`` (the command line and the store build
    rules through the same checks as pipeline code)."""
    if kind not in OPTIONS:
        raise AlertError(f"unknown kind of alert rule {kind!r}; use one of {', '.join(KINDS)}")
    given = {k: v for k, v in options.items() if v is not None}
    extra = sorted(set(given) - {"message", *OPTIONS[kind]})
    if extra:
        takes = ", ".join(OPTIONS[kind]) or "no options but message"
        raise AlertError(f"a {kind} rule does not take {', '.join(extra)} (it takes {takes})")
    makers: dict[str, Callable[..., Rule]] = {
        "failure": on_failure,
        "retry": on_retry,
        "success": on_success,
        "duration": on_duration,
        "deadline": on_deadline,
    }
    if kind == "metric":
        if "metric" not in given:
            raise AlertError("a metric rule needs the metric's name (--metric NAME)")
        rule = on_metric(given.pop("metric"), *channels, **given)
    elif kind == "deadline" and "after" not in given:
        raise AlertError("a deadline rule needs --after, e.g. --after 3h")
    else:
        rule = makers[kind](*channels, **given)
    return replace(rule, stored_id=stored_id)


@dataclass(frozen=True, slots=True)
class Alert:
    """What a ``call`` channel's function receives: the alert, as every channel tells it."""

    pipeline: str
    run_id: str
    rule: str  # the rule in words
    title: str
    text: str
    state: str | None = None  # the run's state (the task's, for a retry)
    see: str = ""  # the command or link that shows the run
    task: str | None = None
    value: Any = None  # the duration or metric that broke the rule
    fields: dict[str, Any] = field(default_factory=dict)


__all__ = [
    "KINDS",
    "Alert",
    "Rule",
    "OPTIONS",
    "check_rules",
    "make_rule",
    "on_deadline",
    "on_duration",
    "on_failure",
    "on_metric",
    "on_retry",
    "on_success",
]
