"""Alerting for one application: the rules of each pipeline, the watches of the runs being
driven, recording what fires, and the sender thread that delivers it.

Built once per :class:`phloem.app.Phloem` (``app.alerting``) and handed to whatever drives
runs. Rules are those declared with the pipeline plus those in the store (``phloem alerts
add``), re-read at most every ``rules_ttl`` seconds, so a rule added from the command line
reaches a running scheduler without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from phloem.alerts.channels import channel_from
from phloem.alerts.rules import Rule, make_rule
from phloem.errors import AlertError, PhloemError
from phloem.records import RunRecord
from phloem.states import RunState, RunType

if TYPE_CHECKING:
    from phloem.alerting.messages import Facts
    from phloem.alerting.sender import Sender
    from phloem.alerting.transport import Transport
    from phloem.alerting.watch import RunWatch
    from phloem.dsl.spec import PipelineSpec
    from phloem.secrets import Masker
    from phloem.store import Store
    from phloem.store.alert_book import StoredRule

log = logging.getLogger("phloem.alerts")

#: how far back the periodic deadline check looks for runs that missed theirs
DEADLINE_LOOKBACK = 24 * 3600.0
#: run ends whose alert was never recorded (their driver died) are looked for this far back,
#: leaving a driver alive this long to record them itself
MISSED_WINDOW = 3600.0
MISSED_GRACE = 60.0


def stored_rule(row: StoredRule) -> Rule:
    """A rule kept in the store as the rule it is."""
    channels = [channel_from(k, t) for k, t in row.channels]
    return make_rule(row.kind, channels, dict(row.options), stored_id=row.id)


def add_rule(store: Store, pipeline: str, rule: Rule, now: float) -> int:
    """Keep ``rule`` for ``pipeline`` in the store (``phloem alerts add``); returns its id.
    Only webhook and e-mail channels can be kept: a function lives in code."""
    for c in rule.channels:
        if c.kind == "call":
            raise AlertError("a rule kept in the store cannot call a function; declare it "
                             "with the pipeline: @pipeline(alerts=[...call(fn)])")  # fmt: skip
    channels = [(c.kind, c.target) for c in rule.channels]
    return store.alerts.add_rule(pipeline, rule.kind, rule.options(), channels, now)


class Alerting:
    def __init__(
        self,
        store: Store,
        *,
        smtp_url: str | None = None,
        server_url: str | None = None,
        connection: Callable[[str], str] | None = None,
        secrets: Callable[[], Iterable[str]] | None = None,
        clock: Callable[[], float] = time.time,
        rules_ttl: float = 10.0,
        sender: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.server_url = server_url
        self.clock = clock
        self.rules_ttl = rules_ttl
        self.callables: dict[str, Callable[..., Any]] = {}
        self._transport_args = (smtp_url, connection)
        # a store only this process opens is used from the driver's thread only: the driver
        # pumps the sender once a turn (``pump``) instead of a thread of its own
        self._sender_options = {"threaded": store.capabilities.shared, **(sender or {})}
        # built on first use: a run that fires nothing imports neither (nor the messages)
        self._transport: Transport | None = None
        self._sender: Sender | None = None
        self._making = threading.Lock()  # one sender, whichever thread asks first
        self._secrets = secrets
        self._masker: Masker | None = None
        self._stored: dict[str, list[Rule]] = {}
        self._stored_at = -1e18
        self._lock = threading.Lock()
        self._next_deadline_check = 0.0
        self._deadlines_fired: set[tuple[str, str]] = set()
        self.recorded = 0  # deliveries this process recorded

    @property
    def transport(self) -> Transport:
        """How deliveries reach their channels (webhooks, mail, functions)."""
        if self._transport is None:
            from phloem.alerting.transport import Transport

            with self._making:
                if self._transport is None:
                    self._transport = Transport(*self._transport_args, self.callables)
        return self._transport

    @property
    def sender(self) -> Sender:
        """The sender of what fired (its thread starts with ``start`` or the first alert)."""
        if self._sender is None:
            from phloem.alerting.sender import Sender

            transport = self.transport
            with self._making:
                if self._sender is None:
                    self._sender = Sender(
                        self.store.alerts, transport, clock=self.clock, **self._sender_options
                    )
        return self._sender

    # -- rules ----------------------------------------------------------------------------------

    def rules(self, spec: PipelineSpec) -> tuple[Rule, ...]:
        """The pipeline's declared rules and those the store keeps for it."""
        stored = self._stored_rules().get(spec.name, [])
        out = (*spec.alerts, *stored)
        for r in spec.alerts:
            for c in r.channels:
                if c.fn is not None:
                    self.callables[c.target] = c.fn
        return out

    def _stored_rules(self) -> dict[str, list[Rule]]:
        now = time.monotonic()
        if now - self._stored_at >= self.rules_ttl:
            with self._lock:
                grouped: dict[str, list[Rule]] = {}
                try:
                    for row in self.store.alerts.rules():
                        try:
                            grouped.setdefault(row.pipeline, []).append(stored_rule(row))
                        except PhloemError as exc:
                            log.error("alert rule %d cannot be used: %s", row.id, exc)
                    self._stored, self._stored_at = grouped, now
                except Exception:
                    log.exception("reading the stored alert rules failed; using the last read")
                    self._stored_at = now
        return self._stored

    def watch(self, spec: PipelineSpec, run: RunRecord) -> RunWatch | None:
        """A watch for a run being driven, or None when its pipeline has no rules."""
        if not self.rules(spec):
            return None
        from phloem.alerting.watch import RunWatch

        return RunWatch(self, spec, run)

    # -- history the rules compare with ---------------------------------------------------------

    def past_durations(self, pipeline: str, last: int, exclude: str) -> list[float]:
        runs = self.store.list_runs(pipeline, limit=last + 1, states=[RunState.SUCCESS])
        return [
            r.ended_at - r.started_at
            for r in runs
            if r.run_id != exclude and r.ended_at is not None and r.started_at is not None
        ][:last]

    def metrics(self, run_id: str) -> dict[str, float]:
        return self.store.tracking.final([run_id]).get(run_id, {})

    def metric_breach(
        self, rule: Rule, pipeline: str, run_id: str, metrics: dict[str, float]
    ) -> Facts | None:
        """Facts if the run's metric breaks ``rule``; None when it holds or was not logged."""
        from phloem.alerting.messages import Facts

        name = rule.metric or ""
        value = metrics.get(name)
        if value is None or value != value:  # not logged, or NaN
            return None
        if rule.below is not None:
            if value < rule.below:
                return Facts(state="", value=value, detail=f"below {rule.below:g}")
            return None
        points = self.store.tracking.trend(pipeline, name, (rule.last or 10) + 1)
        past = [p.value for p in points if p.run_id != run_id and p.value == p.value]
        past = past[-(rule.last or 10) :]
        if not past:
            return None
        import statistics  # here: it imports fractions and decimal, which a run rarely needs

        median = statistics.median(past)
        if median <= 0:
            return None
        drop = (median - value) / median * 100
        if drop > (rule.drop_pct or 0):
            return Facts(
                state="",
                value=value,
                detail=f"{drop:.1f}% below the median {median:g} of the last {len(past)} runs",
            )
        return None

    # -- firing ---------------------------------------------------------------------------------

    def fire(self, pipeline: str, run: RunRecord, fired: Sequence[tuple[Rule, Facts]]) -> None:
        """Record a delivery per channel of each rule that fired (once, whoever records it),
        and wake the sender. Never raises: an alert must not break a run."""
        from phloem.alerting.messages import deliveries

        try:
            masker = self.masker()
            rows = [
                d
                for rule, facts in fired
                for d in deliveries(
                    rule, pipeline, run, facts, server_url=self.server_url, masker=masker
                )
            ]
            self.recorded += self.store.alerts.record(rows, self.clock())
        except Exception:
            log.exception("recording the alerts of run %s failed", run.run_id)
            return
        self.sender.start()
        self.sender.wake()

    def masker(self) -> Masker:
        """The secrets no alert may show (the mail password, connections' passwords)."""
        if self._masker is None:
            from phloem.secrets import Masker

            masker = Masker()
            if self._secrets is not None:
                try:
                    masker.add(*self._secrets())
                except Exception as exc:
                    log.warning("could not read the secrets to mask in alerts: %s", exc)
            self._masker = masker
        return self._masker

    # -- the deadline check of runs nobody drives here ------------------------------------------

    def check_deadlines(self, specs: Iterable[PipelineSpec], every: float = 30.0) -> int:
        """Runs of these pipelines that missed a deadline rule, found in the store (a run
        that failed early, waits for a slot, or whose driver is gone). Runs at most once per
        ``every`` seconds; returns how many alerts fired."""
        now = self.clock()
        if now < self._next_deadline_check:
            return 0
        self._next_deadline_check = now + every
        n = 0
        for spec in specs:
            rules = self.rules(spec)
            for rule in rules:
                if rule.kind == "deadline":
                    try:
                        n += self._check_deadline(spec, rule, now)
                    except Exception:
                        log.exception("checking the deadline of pipeline %s failed", spec.name)
            ends = [r for r in rules if r.kind in ("failure", "success")]
            if ends:
                try:
                    n += self._check_missed_ends(spec, ends, now)
                except Exception:
                    log.exception("checking the run ends of pipeline %s failed", spec.name)
        return n

    def _check_missed_ends(self, spec: PipelineSpec, rules: list[Rule], now: float) -> int:
        """Runs that ended in the last ``MISSED_WINDOW`` seconds (but over ``MISSED_GRACE``
        ago) whose failure or success alert was never recorded: their driver died between
        committing the run's end and recording its alerts. Recorded now (once, as ever)."""
        from phloem.alerting.messages import Facts
        from phloem.alerting.watch import label

        runs = [
            r
            for r in self.store.list_runs(
                spec.name, limit=50, states=[RunState.FAILED, RunState.SUCCESS]
            )
            if r.ended_at is not None and now - MISSED_WINDOW <= r.ended_at <= now - MISSED_GRACE
        ]
        n = 0
        for run in runs:
            kind = "success" if run.state is RunState.SUCCESS else "failure"
            wanted = [r for r in rules if r.kind == kind]
            if not wanted or (wanted[0].rule_id, run.run_id) in self._deadlines_fired:
                continue
            have = self.store.alerts.recorded(run.run_id, [r.rule_id for r in wanted])
            missing = [r for r in wanted if r.rule_id not in have]
            for r in wanted:
                self._deadlines_fired.add((r.rule_id, run.run_id))
            if not missing:
                continue
            failed: dict[str, str | None] = {}
            if kind == "failure":
                failed = {
                    label(ti): ti.error
                    for ti in self.store.load_instances(run.run_id)
                    if ti.state.value in ("failed", "upstream_failed")
                }
            duration = (
                run.ended_at - run.started_at
                if run.ended_at is not None and run.started_at is not None
                else None
            )
            facts = Facts(state=run.state.value, failed=failed, duration=duration)
            self.fire(spec.name, run, [(r, facts) for r in missing])
            n += len(missing)
        return n

    def _check_deadline(self, spec: PipelineSpec, rule: Rule, now: float) -> int:
        from phloem.alerting.messages import Facts

        after = rule.after or 0.0
        end = datetime.fromtimestamp(now - after, timezone.utc)
        start = end - timedelta(seconds=DEADLINE_LOOKBACK)
        runs = self.store.runs_by_logical_date(
            spec.name,
            start.isoformat(),
            end.isoformat(),
            states=[RunState.QUEUED, RunState.RUNNING, RunState.FAILED],
            limit=200,
        )
        n = 0
        for run in runs:
            key = (rule.rule_id, run.run_id)
            if run.run_type is RunType.BACKFILL or key in self._deadlines_fired:
                continue
            self._deadlines_fired.add(key)
            facts = Facts(state=run.state.value, detail="past its deadline")
            self.fire(spec.name, run, [(rule, facts)])
            n += 1
        return n

    # -- lifecycle ------------------------------------------------------------------------------

    def pump(self) -> float | None:
        """Once a driver's turn: on a private store, deliver what is due (sends run on a
        worker thread); returns when to look again. No-op when the sender has a thread."""
        if not self.recorded or self.sender.threaded:
            return None
        try:
            return self.sender.turn()
        except Exception:
            log.exception("delivering alerts failed; trying again later")
            return None

    def start(self) -> None:
        """Deliver pending alerts (also those other processes left) from now on."""
        self.sender.start()

    def flush(self, grace: float) -> None:
        """If this process recorded alerts, try for at most ``grace`` seconds to deliver what
        is due (a process about to exit); what is left stays pending in the store."""
        if grace > 0 and self.recorded:
            try:
                self.sender.flush(grace)
            except Exception:
                log.exception("delivering the last alerts failed; they stay pending")

    def close(self, grace: float = 0.0) -> None:
        """Stop the sender; with ``grace``, first try for that long to deliver what is due."""
        self.flush(grace)
        if self._sender is not None:
            self._sender.stop()


__all__ = ["Alerting", "add_rule", "stored_rule"]
