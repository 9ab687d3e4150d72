"""Checking a run against its pipeline's alert rules, as its driver commits its changes.

A driver (``phloem run``, the scheduler, the server) gives each run it drives a
:class:`RunWatch`. The session calls ``changed`` with what the store just applied (a task to
retry, the run's end) and ``tick`` once a turn (a run taking long, a deadline passed); both
are in-memory comparisons, and reading history (past durations, metrics) happens only when a
rule needs it, once. What fires becomes delivery records (one insert); the sender sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from phloem.alerting.messages import Facts
from phloem.alerts.rules import Rule
from phloem.records import TI, RunRecord, Transition
from phloem.states import RunState, RunType, TaskState

if TYPE_CHECKING:
    from phloem.dsl.spec import PipelineSpec

log = logging.getLogger("phloem.alerts")

#: a duration rule needs at least this many successful runs to compare with
MIN_HISTORY = 3


def label(ti: TI) -> str:
    return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"


def logical_ts(run: RunRecord) -> float | None:
    try:
        d = datetime.fromisoformat(run.logical_date)
    except ValueError:
        return None
    return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()


class Rules(Protocol):
    """What a watch asks of the application's alerting (alerting/service.py)."""

    def rules(self, spec: PipelineSpec) -> tuple[Rule, ...]: ...
    def past_durations(self, pipeline: str, last: int, exclude: str) -> list[float]: ...
    def metrics(self, run_id: str) -> dict[str, float]: ...
    def metric_breach(
        self, rule: Rule, pipeline: str, run_id: str, metrics: dict[str, float]
    ) -> Facts | None: ...
    def fire(
        self, pipeline: str, run: RunRecord, fired: Sequence[tuple[Rule, Facts]]
    ) -> None: ...
    def pump(self) -> float | None: ...


class RunWatch:
    """The alert rules of one run being driven."""

    def __init__(self, alerting: Rules, spec: PipelineSpec, run: RunRecord) -> None:
        self.alerting = alerting
        self.spec = spec
        self.run = run
        self.fired: set[str] = set()  # run-wide rules that fired
        self._seen: set[tuple[str, str]] = set()  # (rule, subject) fired
        self._threshold: dict[str, tuple[float, float] | None] = {}  # rule -> (limit, median)

    def _rules(self, kind: str) -> list[Rule]:
        return [r for r in self.alerting.rules(self.spec) if r.kind == kind]

    def changed(
        self,
        transitions: Sequence[Transition],
        run_state: RunState | None,
        failed: dict[str, str | None],
        started_at: float | None,
        now: float,
    ) -> None:
        """The store applied these changes (``failed``: the run's failed tasks if it ended)."""
        try:
            self._changed(transitions, run_state, failed, started_at, now)
        except Exception:  # an alert must never break the run it watches
            log.exception("checking the alert rules of run %s failed", self.run.run_id)

    def _changed(
        self,
        transitions: Sequence[Transition],
        run_state: RunState | None,
        failed: dict[str, str | None],
        started_at: float | None,
        now: float,
    ) -> None:
        fire: list[tuple[Rule, Facts]] = []
        retries = self._rules("retry")
        if retries:
            for t in transitions:
                if t.new.state is TaskState.UP_FOR_RETRY and t.old.state is not t.new.state:
                    who = label(t.new)
                    facts = Facts(
                        state=t.new.state.value,
                        subject=f"{who}#{t.new.try_number}",
                        task=f"{who} (try {t.new.try_number})",
                        error=t.new.error,
                    )
                    fire += [(r, facts) for r in retries]
        if run_state is not None and run_state.is_terminal:
            duration = None if started_at is None else max(0.0, now - started_at)
            kind = "success" if run_state is RunState.SUCCESS else "failure"
            ends = self._rules(kind)
            metric_rules = self._rules("metric")
            wants_metrics = metric_rules or any(
                r.message and "metrics" in r.message for r in ends
            )
            metrics = self.alerting.metrics(self.run.run_id) if wants_metrics else {}
            base = Facts(
                state=run_state.value,
                failed=failed if kind == "failure" else {},
                duration=duration,
                metrics=metrics,
            )
            fire += [(r, base) for r in ends]
            for r in metric_rules:
                breach = self.alerting.metric_breach(r, self.spec.name, self.run.run_id, metrics)
                if breach is not None:
                    fire.append((r, _with(base, breach)))
            if duration is not None:
                fire += self._durations(duration, run_state.value)
        self._fire(fire)

    def tick(self, state: RunState, started_at: float | None, now: float) -> float | None:
        """Timers: a run taking long, a deadline passed. Returns when to look again."""
        try:
            return self._tick(state, started_at, now)
        except Exception:
            log.exception("checking the alert timers of run %s failed", self.run.run_id)
            return None

    def _tick(self, state: RunState, started_at: float | None, now: float) -> float | None:
        wake: list[float] = []
        fire: list[tuple[Rule, Facts]] = []
        if state is not RunState.SUCCESS and self.run.run_type is not RunType.BACKFILL:
            base = logical_ts(self.run)
            for r in self._rules("deadline"):
                if r.rule_id in self.fired or base is None:
                    continue
                due = base + (r.after or 0.0)
                if now >= due:
                    fire.append((r, Facts(state=state.value, value=now - base,
                                          detail="seconds since the logical date")))  # fmt: skip
                else:
                    wake.append(due)
        if state is RunState.RUNNING and started_at is not None:
            fire += self._durations(now - started_at, state.value)
            for r in self._rules("duration"):
                limit = self._threshold.get(r.rule_id)
                if limit is not None and r.rule_id not in self.fired:
                    wake.append(started_at + limit[0])
        self._fire(fire)
        pumped = self.alerting.pump()
        if pumped is not None:
            wake.append(pumped)
        return min(wake, default=None)

    def _durations(self, elapsed: float, state: str) -> list[tuple[Rule, Facts]]:
        out = []
        for r in self._rules("duration"):
            if r.rule_id in self.fired:
                continue
            if r.rule_id not in self._threshold:
                self._threshold[r.rule_id] = self._limit(r)
            limit = self._threshold[r.rule_id]
            if limit is not None and elapsed > limit[0]:
                detail = f"seconds; {r.factor:g} x the median of {limit[1]:.3g}s"
                out.append((r, Facts(state=state, value=round(elapsed, 3), detail=detail)))
        return out

    def _limit(self, r: Rule) -> tuple[float, float] | None:
        durations = self.alerting.past_durations(self.spec.name, r.last or 20, self.run.run_id)
        if len(durations) < min(MIN_HISTORY, r.last or MIN_HISTORY):
            return None
        import statistics  # here: it imports fractions and decimal, which a run rarely needs

        median = statistics.median(durations)
        return (r.factor or 2.0) * median, median

    def _fire(self, fire: list[tuple[Rule, Facts]]) -> None:
        fire = [(r, f) for r, f in fire if (r.rule_id, f.subject) not in self._seen]
        if not fire:
            return
        for r, f in fire:
            self._seen.add((r.rule_id, f.subject))
            if not f.subject:
                self.fired.add(r.rule_id)
        self.alerting.fire(self.spec.name, self.run, fire)


def _with(base: Facts, facts: Facts) -> Facts:
    return Facts(
        state=base.state,
        duration=base.duration,
        metrics=base.metrics,
        value=facts.value,
        detail=facts.detail,
    )


__all__ = ["RunWatch", "label", "logical_ts"]
