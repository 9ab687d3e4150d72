"""Circuit breakers: the pure state machine (property-tested), its store on every backend
(one probe at a time under concurrency), tasks behind a breaker, and the CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.dsl.breaker import Breaker
from phloem.errors import DefinitionError
from phloem.states import BreakerPhase, RunState
from phloem.store import open_store
from phloem.store.breakers import Admission, BreakerState, admit, settle

P = Breaker("api", failures=3, window=10, reset_after=5)


# -- the state machine -----------------------------------------------------------------------


def _fail(state: BreakerState, now: float, probe: bool = False) -> BreakerState:
    return settle(state, P, now, ok=False, probe=probe, error="boom")


def test_opens_after_enough_failures_within_the_window() -> None:
    s = BreakerState()
    s = _fail(_fail(s, 0.0), 1.0)
    assert s.phase is BreakerPhase.CLOSED
    s = _fail(s, 20.0)  # the first two fell out of the window
    assert s.phase is BreakerPhase.CLOSED and s.failures == (20.0,)
    s = _fail(_fail(s, 21.0), 22.0)
    assert s.phase is BreakerPhase.OPEN and s.opened_at == 22.0 and s.last_error == "boom"
    _, v = admit(s, P, 23.0)
    assert v.admission is Admission.REJECT and v.retry_at == 27.0


def test_one_probe_after_reset_after_closes_or_reopens() -> None:
    opened = BreakerState(BreakerPhase.OPEN, (1.0, 2.0, 3.0), 3.0, None, "boom")
    half, v = admit(opened, P, 8.0)
    assert v.admission is Admission.PROBE and half.phase is BreakerPhase.HALF_OPEN
    _, second = admit(half, P, 9.0)
    assert second.admission is Admission.REJECT  # the probe is out
    assert settle(half, P, 10.0, ok=True, probe=True) == BreakerState()
    again = settle(half, P, 10.0, ok=False, probe=True, error="still down")
    assert again.phase is BreakerPhase.OPEN and again.opened_at == 10.0
    # a probe whose process died never reports: after its lease, another may probe
    _, late = admit(half, P, 8.0 + P.reset_after + 0.1)
    assert late.admission is Admission.PROBE


events = st.lists(
    st.tuples(
        st.sampled_from(["call_ok", "call_fail", "probe_ok", "probe_fail", "admit"]),
        st.floats(min_value=0.0, max_value=8.0),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_properties_over_any_sequence(seq: list[tuple[str, float]]) -> None:
    s, now, probes_out = BreakerState(), 0.0, 0
    for what, dt in seq:
        now += dt
        if what == "admit":
            before = s
            s, v = admit(s, P, now)
            if v.admission is Admission.PROBE:
                lease_over = before.probe_until is None or now >= before.probe_until
                # a second probe only once the first one's lease is over
                assert probes_out == 0 or lease_over
                probes_out = 1
            if before.phase is BreakerPhase.CLOSED:
                assert v.admission is Admission.CALL
        elif what.startswith("probe"):
            if s.phase is BreakerPhase.HALF_OPEN:
                s = settle(s, P, now, ok=what == "probe_ok", probe=True)
                probes_out = 0
                assert s.phase is (BreakerPhase.CLOSED if what == "probe_ok" else BreakerPhase.OPEN)
        else:
            was = s.phase
            s = settle(s, P, now, ok=what == "call_ok", probe=False)
            if what == "call_ok":
                assert s.phase is was  # only a probe closes an open breaker
        # never more remembered failures than it takes to open, all within the window or
        # the one that opened it
        assert len(s.failures) <= P.failures
        if s.phase is BreakerPhase.CLOSED:
            assert len([t for t in s.failures if t > now - P.window]) < P.failures


def test_policy_is_checked_where_it_is_written() -> None:
    with pytest.raises(DefinitionError, match="failures must be an int >= 1"):
        Breaker("x", failures=0)
    with pytest.raises(DefinitionError, match="on_open must be 'fail' or 'wait'"):
        Breaker("x", on_open="retry")
    with pytest.raises(DefinitionError, match="reset_after must be a positive number"):
        phloem.breaker("x", reset_after=-1)
    with pytest.raises(DefinitionError, match="option 'breaker' must be a breaker's name"):

        @task(breaker=3)  # type: ignore[call-overload]
        def nope() -> None: ...


# -- the store ---------------------------------------------------------------------------------


def test_book_shares_state_and_lets_one_probe_through(store_url: str) -> None:
    store = open_store(store_url)
    try:
        book = store.breakers
        for t in (1.0, 2.0, 3.0):
            assert book.admit(P, t).admission is Admission.CALL
            book.settle(P, ok=False, probe=False, error="HTTP 503", now=t)
        assert book.admit(P, 4.0).admission is Admission.REJECT
        [row] = book.list()
        assert row.name == "api" and row.state.phase is BreakerPhase.OPEN
        assert row.state.last_error == "HTTP 503"
        assert book.admit(P, 9.0).admission is Admission.PROBE
        assert book.admit(P, 9.5).admission is Admission.REJECT
        book.settle(P, ok=True, probe=True, now=10.0)
        assert book.admit(P, 10.5).admission is Admission.CALL
        assert book.reset("api") and not book.reset("api")
        assert book.list() == []
    finally:
        store.close()


@pytest.mark.postgres
def test_concurrent_admits_on_postgres_let_exactly_one_probe_through(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        book = store.breakers
        for t in (1.0, 2.0, 3.0):
            book.settle(P, ok=False, probe=False, now=t)
        verdicts: list[Admission] = []
        start = threading.Barrier(8)

        def one() -> None:
            start.wait()
            verdicts.append(book.admit(P, 100.0).admission)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(verdicts) == sorted([Admission.PROBE] + [Admission.REJECT] * 7)
    finally:
        store.close()


# -- tasks behind a breaker ----------------------------------------------------------------------


@task(breaker=phloem.breaker("flaky-api", failures=2, window=60, reset_after=3600))
def call_api(x: int) -> int:
    raise ConnectionError(f"api down for {x}")


@pipeline
def uses_api() -> None:
    call_api.expand(x=[1, 2, 3, 4])


def test_after_enough_failures_tasks_fail_fast_with_the_reason(tmp_path: Path) -> None:
    app = Phloem.open(f"sqlite:///{tmp_path / 'p.db'}", tmp_path)
    try:
        r = phloem.run(uses_api, executor="inline", app=app)
        assert r.state is RunState.FAILED
        errors = sorted(r.tasks[("call_api", i)].error or "" for i in range(4))
        real = [e for e in errors if e.startswith("ConnectionError")]
        fast = [e for e in errors if e.startswith("BreakerOpen")]
        assert len(real) == 2 and len(fast) == 2
        assert "circuit breaker 'flaky-api' is open after 2 failures within 60 s" in fast[0]
        assert "ConnectionError: api down for" in fast[0]
        assert "phloem breakers reset flaky-api" in fast[0]
        # another run on the same store is refused at once: the state is shared
        r2 = phloem.run(uses_api, executor="local", app=app, logical_date="2026-01-02")
        assert all(
            "circuit breaker 'flaky-api' is open" in (r2.tasks[("call_api", i)].error or "")
            for i in range(4)
        )
    finally:
        app.close()


@task
def with_block(marker: str) -> str:
    first = not Path(marker).exists()
    Path(marker).write_text("x")
    with phloem.breaker("block-api", failures=1, window=60, reset_after=0.3, on_open="wait"):
        if first:
            raise TimeoutError("slow upstream")
        return "ok"


@task(retries=1)
def retried(marker: str) -> str:
    return str(with_block.fn(marker))


@pipeline
def waits(marker: str = "") -> None:
    retried(marker)


def test_on_open_wait_waits_for_the_probe_and_closes_on_success(tmp_path: Path) -> None:
    app = Phloem.open(f"sqlite:///{tmp_path / 'p.db'}", tmp_path)
    try:
        r = phloem.run(
            waits, params={"marker": str(tmp_path / "m")}, executor="local", app=app
        )
        assert r.state is RunState.SUCCESS and r.output("retried") == "ok"
        [row] = app.store.breakers.list()
        assert row.state.phase is BreakerPhase.CLOSED and row.state.failures == ()
    finally:
        app.close()


@task(breaker="private")
def private_task() -> int:
    return 1


@pipeline
def private() -> None:
    private_task()


def test_a_private_store_is_refused_with_what_to_do(tmp_path: Path) -> None:
    r = phloem.run(private, executor="inline", store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    assert "circuit breakers need a shared store" in (r.tasks[("private_task", -1)].error or "")


def test_cli_lists_and_resets(home: Path) -> None:
    from typer.testing import CliRunner

    from phloem.cli.main import app

    cli = CliRunner()
    store = open_store(f"sqlite:///{home / 'phloem.db'}") if home.mkdir() is None else None
    assert store is not None
    try:
        for t in (1.0, 2.0, 3.0):
            store.breakers.settle(P, ok=False, probe=False, error="HTTP 503", now=t)
    finally:
        store.close()
    r = cli.invoke(app, ["breakers", "list", "--json"])
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert row["name"] == "api" and row["state"] == "open" and row["last_error"] == "HTTP 503"
    r = cli.invoke(app, ["breakers", "list"])
    assert "api" in r.stdout and "open" in r.stdout
    r = cli.invoke(app, ["breakers", "reset", "api"])
    assert r.exit_code == 0 and "circuit breaker 'api' is closed" in r.stdout
    r = cli.invoke(app, ["breakers", "reset", "api"])
    assert r.exit_code == 1 and "no circuit breaker named 'api'" in r.output
    r = cli.invoke(app, ["breakers", "list"])
    assert "no circuit breakers have been used" in r.stdout
