"""``phloem.gate``: check a model's metrics against conditions, before it goes anywhere.

Every condition is checked (a gate never stops at the first miss), so the failure lists all
that missed. By default a miss fails the task with :class:`~phloem.errors.GateFailed`, which
is not retried; ``raise_on_fail=False`` returns the :class:`Verdict` instead, truthy when all
passed, for a branch (promote or not).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from phloem.context import current
from phloem.errors import ConditionError, GateFailed
from phloem.quality.conditions import Condition, as_number, parse


@dataclass(frozen=True, slots=True)
class Check:
    """One metric against one condition."""

    metric: str
    condition: Condition
    value: float
    passed: bool

    def __str__(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        shown = "NaN" if math.isnan(self.value) else f"{self.value:g}"
        verb = "is" if self.passed else "is not"
        return f"{mark} {self.metric} = {shown} {verb} {self.condition}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a gate: truthy when every check passed."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def __bool__(self) -> bool:
        return self.passed

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def __getitem__(self, metric: str) -> Check:
        for c in self.checks:
            if c.metric == metric:
                return c
        raise KeyError(metric)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (a NaN value becomes None)."""
        return {
            "passed": self.passed,
            "checks": [
                {
                    "metric": c.metric,
                    "condition": str(c.condition),
                    "value": None if math.isnan(c.value) else c.value,
                    "passed": c.passed,
                }
                for c in self.checks
            ],
        }

    def summary(self) -> str:
        """One line: how many checks passed, and the ones that did not."""
        n, bad = len(self.checks), self.failed
        if not bad:
            return f"gate passed: {n} of {n} checks"
        return f"gate failed: {len(bad)} of {n} checks missed: " + "; ".join(
            str(c)[5:] for c in bad
        )

    def __str__(self) -> str:
        return "\n".join([self.summary(), *(f"  {c}" for c in self.checks)])


def gate(
    metrics: Mapping[str, Any],
    conditions: Mapping[str, str],
    *,
    raise_on_fail: bool = True,
) -> Verdict:
    """Check ``metrics`` against ``conditions`` (``{"auc": ">= 0.85"}``).

    A condition that cannot be parsed, a metric that is missing or not a number is a
    :class:`~phloem.errors.ConditionError` (all of them listed), whatever ``raise_on_fail``
    says: a gate that cannot be evaluated must not pass. Inside a task the verdict is written
    to the task's log.
    """
    if not isinstance(metrics, Mapping):
        raise ConditionError(
            f"phloem.gate() takes the metrics as a mapping of name to number, not "
            f"{type(metrics).__name__}"
        )
    if not isinstance(conditions, Mapping) or not conditions:
        raise ConditionError(
            "phloem.gate() needs at least one condition, as {'auc': '>= 0.85'}"
        )
    problems: list[str] = []
    checks: list[Check] = []
    for name, text in conditions.items():
        try:
            cond = parse(text, what=f"condition for '{name}'")
            if name not in metrics:
                raise ConditionError(_missing(name, metrics))
            value = as_number(metrics[name], what=f"metric '{name}'")
        except ConditionError as exc:
            problems.append(exc.message)
            continue
        checks.append(Check(name, cond, value, cond.holds(value)))
    if problems:
        raise ConditionError("phloem.gate() cannot check: " + "; ".join(problems))
    verdict = Verdict(tuple(checks))
    ctx = current()
    if ctx is not None:
        (ctx.log.info if verdict.passed else ctx.log.warning)("%s", verdict)
    if raise_on_fail and not verdict.passed:
        raise GateFailed(verdict.summary(), verdict)
    return verdict


def _missing(name: str, metrics: Mapping[str, Any]) -> str:
    known = [str(k) for k in metrics]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(sorted(known)) or "none"
    return f"metric '{name}' is not among the metrics given ({listed}){hint}"


__all__ = ["Check", "Verdict", "gate"]
