"""Alerts: rules declared with a pipeline or from the command line, fired where runs are
driven, delivered once by real channels (a local HTTP receiver, a local SMTP server)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phloem
from phloem.alerting import Alerting
from phloem.alerting.sender import Sender
from phloem.alerting.transport import Transport
from phloem.alerts import (
    call,
    email,
    on_deadline,
    on_duration,
    on_failure,
    on_metric,
    on_retry,
    on_success,
    webhook,
)
from phloem.app import Phloem
from phloem.errors import AlertError, DefinitionError
from phloem.runs import create_run
from phloem.states import RunState
from phloem.store import open_store
from phloem.store.alert_book import FAILED, PENDING, SENT, NewDelivery
from receivers import free_port, http_receiver, self_signed, smtp_receiver, wait_for

URL = "https://hooks.example.org/services/T0KEN"


@phloem.task
def ok() -> int:
    return 1


# -- declaring --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: webhook("ftp://x.org/hook"), "must start with http:// or https://"),
        (lambda: webhook("https://"), "names no host"),
        (lambda: email(), "at least one address"),
        (lambda: email("not-an-address"), "not an e-mail address"),
        (lambda: call(42), "give a function"),
        (lambda: on_failure(), "say where the alert goes"),
        (lambda: on_failure("ml@x.org"), "is not a channel"),
        (lambda: on_duration(webhook(URL), factor=0), "factor must be a number > 0"),
        (lambda: on_duration(webhook(URL), last=2.5), "last must be a whole number"),
        (lambda: on_deadline(webhook(URL), after=-5), "after must be a number > 0"),
        (lambda: on_metric("auc", webhook(URL)), "exactly one of below=VALUE or drop_pct"),
        (lambda: on_metric("auc", webhook(URL), below=1, drop_pct=5), "exactly one"),
        (lambda: on_metric("auc", webhook(URL), drop_pct=150), "percentage"),
        (lambda: on_metric("", webhook(URL), below=1), "name the metric first"),
        (lambda: on_success(webhook(URL), message="{run.__class__}"), "is unknown"),
        (lambda: on_success(webhook(URL), message="{metrics[0]}"), "not allowed"),
        (lambda: on_success(webhook(URL), message="{nope}"), "is unknown"),
        (lambda: on_success(webhook(URL), message="{metrics.auc"), "cannot read the message"),
    ],
)
def test_bad_rules_and_channels_are_refused_with_what_to_write(make, says) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AlertError, match=None) as info:
        make()
    assert says in str(info.value)


def test_alerts_option_takes_rules_only_and_says_where() -> None:
    with pytest.raises(DefinitionError, match=r"not a rule.*wrap it, e.g. on_failure"):

        @phloem.pipeline(alerts=[webhook(URL)])
        def p1() -> None:
            ok()

    with pytest.raises(DefinitionError, match="unknown option 'alert'"):

        @phloem.pipeline(alert=[on_failure(webhook(URL))])
        def p2() -> None:
            ok()


def test_the_issue_s_syntax_declares_seven_rules_with_stable_ids() -> None:
    def build():  # type: ignore[no-untyped-def]
        @phloem.pipeline(
            alerts=[
                on_failure(email("ml@x.org"), webhook(URL)),
                on_retry(webhook(URL)),
                on_success(email("ml@x.org"), message="AUC {metrics.auc}"),
                on_duration(webhook(URL), factor=2.0, last=20),
                on_deadline(email("ml@x.org"), after=timedelta(hours=3)),
                on_metric("row_count", webhook(URL), drop_pct=50, last=10),
                on_metric("auc", email("ml@x.org"), below=0.8),
            ]
        )
        def train() -> None:
            ok()

        return train

    a, b = build(), build()
    ids = [r.rule_id for r in a.spec.alerts]
    assert ids == [r.rule_id for r in b.spec.alerts]  # the same rule keeps its id
    assert len(set(ids)) == 7
    assert a.spec.alerts[4].after == 3 * 3600


# -- firing and delivering -------------------------------------------------------------------


def test_failure_and_retry_alerts_reach_a_webhook_once_with_text_and_fields() -> None:
    with http_receiver() as hook:

        @phloem.task(retries=1)
        def flaky() -> None:
            raise ValueError("boom")

        @phloem.pipeline(alerts=[on_failure(webhook(hook.url)), on_retry(webhook(hook.url))])
        def nightly() -> None:
            flaky()

        app = Phloem.open("memory")
        result = phloem.run(nightly, executor="inline", app=app)
        assert result.state is RunState.FAILED
        run_id = result.run_id
        wait_for(lambda: len(hook.bodies) == 2, what="two alerts")
        kinds = sorted(b["kind"] for b in hook.bodies)
        assert kinds == ["failure", "retry"]
        for body in hook.bodies:
            assert body["pipeline"] == "nightly" and body["run_id"] == run_id
            assert "nightly" in body["text"] and run_id in body["text"]
            assert f"phloem runs show {run_id}" in body["text"]  # how to see the run
            assert body["see"] == f"phloem runs show {run_id}"
        failure = next(b for b in hook.bodies if b["kind"] == "failure")
        assert "Rule: run failed" in failure["text"]
        assert "flaky: ValueError: boom" in failure["text"]
        retry = next(b for b in hook.bodies if b["kind"] == "retry")
        assert retry["task"] == "flaky (try 1)" and retry["error"] == "ValueError: boom"
        history = app.store.alerts.history("nightly")
        assert {d.state for d in history} == {SENT} and len(history) == 2  # flushed at the end
        app.close()


def test_a_success_notice_by_email_carries_the_run_s_metrics_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with smtp_receiver(auth=("alerts", "s3cret-pass")) as mail:
        monkeypatch.setenv(
            "PHLOEM_SMTP_URL", f"smtp://alerts:s3cret-pass@127.0.0.1:{mail.port}?from=ci@x.org"
        )
        monkeypatch.setenv("PHLOEM_SERVER_URL", "https://phloem.example.org/")

        @phloem.task
        def evaluate() -> float:
            phloem.log_metric("auc", 0.9123)
            print("connecting with s3cret-pass")
            return 0.9123

        @phloem.task
        def leak(auc: float, fail: bool) -> None:
            if fail:
                raise RuntimeError("login failed for s3cret-pass")

        @phloem.pipeline(
            alerts=[
                on_success(email("ml@x.org", "ops@x.org"), message="AUC {metrics.auc:.2f} ok"),
                on_failure(email("ops@x.org")),
            ]
        )
        def scoring(fail: bool = False) -> None:
            leak(evaluate(), fail)

        app = Phloem.open("memory", home=tmp_path / "home")
        good = phloem.run(scoring, executor="inline", app=app)
        bad = phloem.run(scoring, params={"fail": True}, executor="inline", app=app,
                         logical_date="2026-01-02")  # fmt: skip
        wait_for(lambda: len(mail.messages) == 2, what="two e-mails")
        notice = next(m for m in mail.messages if good.run_id in m["Subject"])
        assert notice["From"] == "ci@x.org" and notice["To"] == "ml@x.org, ops@x.org"
        text = notice.get_payload()
        assert isinstance(text, str)
        assert text.startswith("AUC 0.91 ok")
        assert f"https://phloem.example.org/api/v1/runs/{good.run_id}" in text
        failure = next(m for m in mail.messages if bad.run_id in m["Subject"])
        body = str(failure.get_payload())
        assert "login failed for ***" in body and "s3cret-pass" not in body
        for d in app.store.alerts.history():
            assert "s3cret-pass" not in d.body + d.title + str(d.payload)
        app.close()


def test_a_receiver_that_is_down_is_retried_with_backoff_then_given_up() -> None:
    store = open_store("memory")
    now = [1000.0]
    port = free_port()
    target = f"http://127.0.0.1:{port}/hook"
    store.alerts.record([_delivery(target)], now[0])
    sender = Sender(store.alerts, Transport(timeout=2), clock=lambda: now[0], threaded=False,
                    base_delay=10.0, max_tries=3)  # fmt: skip
    waits = []
    for _ in range(2):
        sender.deliver_due()
        (d,) = store.alerts.history()
        assert d.state == PENDING and "could not be reached" in (d.last_error or "")
        waits.append(d.next_try_at - now[0])
        now[0] = d.next_try_at
    assert 5.0 <= waits[0] <= 10.0 and 10.0 <= waits[1] <= 20.0  # doubled, with jitter
    assert sender.deliver_due() == 0
    (d,) = store.alerts.history()
    assert d.state == FAILED and d.tries == 3  # given up after max_tries
    store.close()


def test_a_receiver_that_comes_back_gets_the_alert_it_missed(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    port = free_port()
    store.alerts.record([_delivery(f"http://127.0.0.1:{port}/hook")], 1.0)
    now = [1.0]
    sender = Sender(store.alerts, Transport(timeout=2), clock=lambda: now[0], base_delay=1.0)
    sender.deliver_due()
    assert store.alerts.history()[0].state == PENDING
    with http_receiver(port) as hook:
        now[0] = 100.0
        assert sender.deliver_due() == 1
        assert len(hook.bodies) == 1 and hook.bodies[0]["text"].startswith("title")
    assert store.alerts.history()[0].state == SENT
    store.close()


def test_a_slow_receiver_never_holds_up_the_run(tmp_path: Path) -> None:
    with http_receiver() as hook:
        hook.gate = threading.Event()  # the receiver answers only when the test says so
        marker = tmp_path / "failed-once"

        @phloem.task(retries=1)
        def once() -> str:
            if not marker.exists():
                marker.write_text("x")
                raise ValueError("first try fails")
            return "done"

        @phloem.task
        def after(x: str) -> str:
            return x

        @phloem.pipeline(alerts=[on_retry(webhook(hook.url))])
        def slowhook() -> None:
            after(once())

        app = Phloem.open(f"sqlite:///{tmp_path / 'p.db'}", home=tmp_path / "home")
        result = phloem.run(slowhook, executor="inline", app=app)
        # the run went on to its end though the receiver answers nothing until told to
        assert result.state is RunState.SUCCESS
        wait_for(hook.arrived.is_set, what="the alert's request")
        assert hook.bodies == []  # held by the receiver
        hook.gate.set()
        wait_for(lambda: hook.bodies, what="the held alert")
        wait_for(lambda: app.store.alerts.history()[0].state == SENT, what="sent state")
        app.close()


@pytest.mark.parametrize("threaded", [True, False])
def test_a_send_under_way_when_the_exit_grace_ends_is_recorded_before_flush_returns(
    tmp_path: Path, threaded: bool
) -> None:
    """A process about to exit (``phloem run``) gives its alerts a grace; a send the receiver
    is still taking when the grace ends must still be recorded as sent, or another process
    sends it again once the claim expires."""
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    with http_receiver() as hook:
        hook.gate = threading.Event()  # the receiver answers only when the test says so
        store.alerts.record([_delivery(hook.url)], time.time())
        sender = Sender(store.alerts, Transport(timeout=30), threaded=threaded)
        sender.start()
        release = threading.Thread(
            target=lambda: (hook.arrived.wait(30), time.sleep(0.3), hook.gate.set())
        )
        release.start()
        if threaded:  # its thread sends: the send must be under way when the grace ends
            assert hook.arrived.wait(30)
        sender.flush(0.05)  # a grace far shorter than the receiver takes
        release.join()
        (d,) = store.alerts.history()
        assert d.state == SENT and d.tries == 1 and len(hook.bodies) == 1
        sender.stop()
    store.close()


def test_each_alert_is_recorded_once_however_many_processes_see_it(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    d = _delivery("http://127.0.0.1:9/x")
    assert store.alerts.record([d, d], 1.0) == 1
    assert store.alerts.record([d], 2.0) == 0
    assert len(store.alerts.history()) == 1
    store.close()


def test_a_claimed_delivery_is_sent_by_another_sender_only_once_the_claim_expires(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    with http_receiver() as hook:
        store.alerts.record([_delivery(hook.url)], 1.0)
        # a sender claims it and dies before sending (a scheduler killed mid-send)
        assert len(store.alerts.claim("dead", 1.0, ttl=60.0)) == 1
        now = [2.0]
        other = Sender(store.alerts, Transport(), clock=lambda: now[0])
        assert other.deliver_due() == 0 and hook.bodies == []
        now[0] = 62.0
        assert other.deliver_due() == 1 and len(hook.bodies) == 1
        # the dead sender's late finish changes nothing
        assert not store.alerts.finish(1, "dead", 63.0, sent=False, error="late")
        assert store.alerts.history()[0].state == SENT
    store.close()


# -- rules with history: duration, deadline, metric --------------------------------------------


def _past_runs(store, spec, durations: list[float]) -> None:  # type: ignore[no-untyped-def]
    for i, d in enumerate(durations):
        run = create_run(store, spec, None, datetime(2025, 1, 1 + i, tzinfo=timezone.utc))
        t0 = 1000.0 * (i + 1)
        assert store.set_run_state(run.run_id, RunState.QUEUED, RunState.RUNNING, t0)
        assert store.set_run_state(run.run_id, RunState.RUNNING, RunState.SUCCESS, t0 + d)


def test_a_run_longer_than_k_times_the_median_is_told_while_it_runs() -> None:
    seen: list[phloem.alerts.Alert] = []

    @phloem.pipeline(alerts=[on_duration(call(seen.append), factor=2.0, last=5)])
    def timed() -> None:
        ok()

    store = open_store("memory")
    _past_runs(store, timed.spec, [10.0, 12.0, 11.0, 500.0])  # median 11.5: limit 23
    alerting = Alerting(store)
    run = create_run(store, timed.spec, None, datetime(2025, 2, 1, tzinfo=timezone.utc))
    watch = alerting.watch(timed.spec, run)
    assert watch is not None
    assert watch.tick(RunState.RUNNING, 5000.0, 5010.0) == pytest.approx(5023.0)
    assert store.alerts.history() == []
    watch.tick(RunState.RUNNING, 5000.0, 5024.0)
    watch.tick(RunState.RUNNING, 5000.0, 5030.0)  # once only
    alerting.sender.deliver_due()
    assert len(seen) == 1 and seen[0].value == 24.0 and "median of 11.5s" in seen[0].text
    alerting.close()
    store.close()


def test_too_little_history_means_no_duration_alert() -> None:
    @phloem.pipeline(alerts=[on_duration(webhook(URL), factor=1.0, last=20)])
    def young() -> None:
        ok()

    store = open_store("memory")
    _past_runs(store, young.spec, [1.0, 1.0])
    run = create_run(store, young.spec)
    watch = Alerting(store).watch(young.spec, run)
    assert watch is not None and watch.tick(RunState.RUNNING, 0.0, 1e6) is None
    assert store.alerts.history() == []
    store.close()


def test_a_deadline_past_fires_once_while_the_run_is_driven() -> None:
    with http_receiver() as hook:

        @phloem.pipeline(alerts=[on_deadline(webhook(hook.url), after=timedelta(minutes=5))])
        def sla() -> None:
            ok()

        app = Phloem.open("memory")
        late = datetime.now(timezone.utc) - timedelta(hours=1)
        phloem.run(sla, executor="inline", app=app, logical_date=late)
        wait_for(lambda: hook.bodies, what="the deadline alert")
        assert hook.bodies[0]["kind"] == "deadline"
        assert "run not succeeded 5min after its logical date" in hook.bodies[0]["text"]
        # a run whose deadline is ahead says nothing
        phloem.run(sla, executor="inline", app=app)
        assert len(app.store.alerts.history()) == 1
        app.close()


def test_the_deadline_check_finds_runs_nobody_drives() -> None:
    @phloem.pipeline(alerts=[on_deadline(webhook(URL), after=60)])
    def sla2() -> None:
        ok()

    store = open_store("memory")
    now = datetime.now(timezone.utc)
    waiting = create_run(store, sla2.spec, None, now - timedelta(minutes=10))
    create_run(store, sla2.spec, None, now)  # not due yet
    alerting = Alerting(store)
    assert alerting.check_deadlines([sla2.spec]) == 1
    assert alerting.check_deadlines([sla2.spec], every=0) == 0  # once
    (d,) = store.alerts.history()
    assert d.run_id == waiting.run_id and d.payload["state"] == "queued"
    store.close()


def test_metric_rules_compare_with_a_floor_and_with_the_median_of_past_runs() -> None:
    seen: list[phloem.alerts.Alert] = []

    @phloem.task
    def count(rows: int = 100) -> int:
        phloem.log_metric("row_count", rows)
        phloem.log_metric("auc", 0.9 if rows > 50 else 0.7)
        return rows

    @phloem.pipeline(
        alerts=[
            on_metric("row_count", call(seen.append), drop_pct=50, last=10),
            on_metric("auc", call(seen.append), below=0.8),
        ]
    )
    def metered(rows: int = 100) -> None:
        count(rows)

    app = Phloem.open("memory")
    for i, rows in enumerate([100, 110, 90, 60]):  # 60 is 40% below the median 100: fine
        phloem.run(metered, params={"rows": rows}, executor="inline", app=app,
                   logical_date=f"2026-03-0{i + 1}")  # fmt: skip
    assert seen == []
    low = phloem.run(metered, params={"rows": 40}, executor="inline", app=app)
    assert sorted(a.rule for a in seen) == [
        "metric auc below 0.8",
        "metric row_count dropped more than 50% from the median of the last 10 runs",
    ]
    assert all(a.run_id == low.run_id for a in seen)
    drop = next(a for a in seen if "row_count" in a.rule)
    assert drop.value == 40 and "57.9% below the median 95 of the last 4 runs" in drop.text
    app.close()


def test_a_callable_that_raises_is_retried_and_the_run_is_unharmed() -> None:
    calls: list[str] = []

    def flaky_receiver(alert: phloem.alerts.Alert) -> None:
        calls.append(alert.run_id)
        if len(calls) == 1:
            raise ConnectionError("receiver down")

    @phloem.pipeline(alerts=[on_success(call(flaky_receiver))])
    def fine() -> None:
        ok()

    app = Phloem.open("memory")
    app.alerting = Alerting(app.store, sender={"base_delay": 0.01, "threaded": False})
    result = phloem.run(fine, executor="inline", app=app)
    assert result.state is RunState.SUCCESS
    wait_for(lambda: app.store.alerts.history()[0].state == SENT, what="the retried call")
    assert calls == [result.run_id, result.run_id]
    (d,) = app.store.alerts.history()
    assert d.tries == 2 and "receiver down" in (d.last_error or "")
    app.close()


def _delivery(target: str, kind: str = "webhook") -> NewDelivery:
    return NewDelivery("failure-x", "p", "run-1", "", 0, kind, target, "run failed",
                       "title", "body", {"run_id": "run-1"})  # fmt: skip


# -- messages: templates are parsed when declared, rendered safely ----------------------------


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_a_message_that_passes_its_check_always_renders(text: str) -> None:
    from phloem.alerts.template import check_template, render

    try:
        check_template(text, "on_success")
    except AlertError:
        return
    values = {"pipeline": "p", "run": {"id": "r", "duration": 1.5}, "metrics": {"auc": 0.9},
              "params": {}, "value": None}  # fmt: skip
    assert isinstance(render(text, values), str)


@given(st.sampled_from(["pipeline", "run.id", "metrics.auc", "metrics.missing", "params.day"]),
       st.sampled_from(["", ":>8", ":.2f", "!r"]))  # fmt: skip
def test_fields_render_their_value_or_a_question_mark(field: str, spec: str) -> None:
    from phloem.alerts.template import check_template, render

    text = check_template("{" + field + spec + "}", "on_success")
    out = render(text, {"pipeline": "p", "run": {"id": "r"}, "metrics": {"auc": 0.5},
                        "params": {"day": "mon"}})  # fmt: skip
    assert out.strip() and "{" not in out


def test_database_errors_waited_out_are_counted_on_the_store() -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from phloem.store.resilience import resilient

    store = open_store("memory")
    blinks = [OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))]

    @resilient
    class Part:
        def __init__(self) -> None:
            self.store = store
            self.outage_timeout = 5.0

        def read(self) -> int:
            if blinks:
                raise blinks.pop()
            return 1

    assert Part().read() == 1 and store.waited_out == 1
    store.close()


@pytest.mark.parametrize("scheme", ["starttls", "smtps"])
def test_e_mail_goes_over_tls_with_starttls_or_smtps(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this test's certificate
    with smtp_receiver(auth=("u", "pw-over-tls"), tls=(cert, key),
                       implicit_tls=scheme == "smtps") as mail:  # fmt: skip
        url = (
            f"smtp://u:pw-over-tls@127.0.0.1:{mail.port}?starttls=true"
            if scheme == "starttls"
            else f"smtps://u:pw-over-tls@127.0.0.1:{mail.port}"
        )
        store = open_store("memory")
        store.alerts.record([_delivery("ml@x.org", kind="email")], 1.0)
        sender = Sender(store.alerts, Transport(smtp_url=url), threaded=False)
        assert sender.deliver_due() == 1, store.alerts.history()[0].last_error
        assert len(mail.messages) == 1 and mail.messages[0]["To"] == "ml@x.org"
        store.close()


def test_plain_smtp_to_a_server_that_requires_starttls_fails_with_a_reason(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    with smtp_receiver(tls=(cert, key)) as mail:
        store = open_store("memory")
        store.alerts.record([_delivery("ml@x.org", kind="email")], 1.0)
        sender = Sender(store.alerts, Transport(smtp_url=f"smtp://127.0.0.1:{mail.port}"),
                        threaded=False)  # fmt: skip
        assert sender.deliver_due() == 0 and mail.messages == []
        (d,) = store.alerts.history()
        assert d.state == FAILED and "mail server answered 530" in (d.last_error or "")  # a 5xx
        store.close()


def test_a_run_end_whose_driver_died_before_recording_its_alert_is_alerted_later() -> None:
    @phloem.pipeline(alerts=[on_failure(webhook(URL)), on_success(webhook(URL))])
    def crashy() -> None:
        ok()

    store = open_store("memory")
    now = 100_000.0
    lost = create_run(store, crashy.spec, None, "2026-04-01")
    assert store.set_run_state(lost.run_id, RunState.QUEUED, RunState.RUNNING, now - 300)
    assert store.set_run_state(lost.run_id, RunState.RUNNING, RunState.FAILED, now - 120)
    fresh = create_run(store, crashy.spec, None, "2026-04-02")  # its driver may still record it
    assert store.set_run_state(fresh.run_id, RunState.QUEUED, RunState.RUNNING, now - 20)
    assert store.set_run_state(fresh.run_id, RunState.RUNNING, RunState.SUCCESS, now - 10)
    alerting = Alerting(store, clock=lambda: now)
    assert alerting.check_deadlines([crashy.spec]) == 1
    (d,) = store.alerts.history()
    assert d.run_id == lost.run_id and d.rule == "run failed"
    assert alerting.check_deadlines([crashy.spec], every=0) == 0
    assert Alerting(store, clock=lambda: now).check_deadlines([crashy.spec]) == 0  # recorded
    store.close()
