"""Circuit breakers kept in the store, so every task, run, worker and scheduler naming one
shares its state.

The transitions are pure functions (:func:`admit`, :func:`settle`) over a
:class:`BreakerState`; :class:`BreakerBook` applies them in one short write transaction each
(SQLite's write lock, or a row lock on PostgreSQL), so concurrent callers in many processes
see one sequence of states: at most one probe at a time while half open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum

from sqlalchemy import Connection, delete, select

from phloem.dsl.breaker import Breaker
from phloem.states import BreakerPhase
from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient
from phloem.store.writes import insert_new


@dataclass(frozen=True, slots=True)
class BreakerState:
    phase: BreakerPhase = BreakerPhase.CLOSED
    failures: tuple[float, ...] = ()  # times of recent failures, oldest first
    opened_at: float | None = None
    probe_until: float | None = None  # half open: until when the probe holds its turn
    last_error: str | None = None


class Admission(str, Enum):
    CALL = "call"  # closed: go ahead
    PROBE = "probe"  # half open: this call is the one probe
    REJECT = "reject"  # open (or another probe is out): fail fast or wait


@dataclass(frozen=True, slots=True)
class Verdict:
    admission: Admission
    state: BreakerState
    #: when a rejected call may try again
    retry_at: float | None = None


def admit(state: BreakerState, policy: Breaker, now: float) -> tuple[BreakerState, Verdict]:
    """May a call go through now?"""
    if state.phase is BreakerPhase.CLOSED:
        return state, Verdict(Admission.CALL, state)
    if state.phase is BreakerPhase.OPEN:
        reopens = (state.opened_at or now) + policy.reset_after
        if now < reopens:
            return state, Verdict(Admission.REJECT, state, reopens)
    elif state.probe_until is not None and now < state.probe_until:
        return state, Verdict(Admission.REJECT, state, state.probe_until)
    # open long enough, or a probe that never reported (its process died): probe now
    probing = replace(state, phase=BreakerPhase.HALF_OPEN, probe_until=now + policy.reset_after)
    return probing, Verdict(Admission.PROBE, probing)


def settle(
    state: BreakerState,
    policy: Breaker,
    now: float,
    *,
    ok: bool,
    probe: bool,
    error: str | None = None,
) -> BreakerState:
    """The state after an admitted call ended (``probe``: it was the half-open probe)."""
    recent = tuple(t for t in state.failures if t > now - policy.window)
    if probe and state.phase is BreakerPhase.HALF_OPEN:
        if ok:
            return BreakerState()
        return BreakerState(BreakerPhase.OPEN, (now,), now, None, error)
    if ok:
        return replace(state, failures=recent)
    failures = (*recent, now)[-policy.failures :]
    if state.phase is BreakerPhase.CLOSED and len(failures) >= policy.failures:
        return BreakerState(BreakerPhase.OPEN, failures, now, None, error)
    # a call admitted while closed that fails after the breaker opened: counted, nothing more
    return replace(state, failures=failures, last_error=error or state.last_error)


@dataclass(frozen=True, slots=True)
class BreakerRow:
    name: str
    state: BreakerState
    updated_at: float


def _state(row: object) -> BreakerState:
    return BreakerState(
        BreakerPhase(row.state),  # type: ignore[attr-defined]
        tuple(json.loads(row.failures)),  # type: ignore[attr-defined]
        row.opened_at,  # type: ignore[attr-defined]
        row.probe_until,  # type: ignore[attr-defined]
        row.last_error,  # type: ignore[attr-defined]
    )


def _values(state: BreakerState, now: float) -> dict[str, object]:
    return {
        "state": state.phase.value,
        "failures": json.dumps(list(state.failures)),
        "opened_at": state.opened_at,
        "probe_until": state.probe_until,
        "last_error": state.last_error,
        "updated_at": now,
    }


@resilient
class BreakerBook:
    """The breakers of one store."""

    def __init__(self, store: Database) -> None:
        self.store = store

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    @contextmanager
    def _locked(self, name: str, now: float) -> Iterator[tuple[Connection, BreakerState]]:
        b = s.breakers
        with write_transaction(self.store.engine) as conn:
            fresh = {"name": name, **_values(BreakerState(), now)}
            conn.execute(insert_new(conn.dialect.name, b), [fresh])
            q = select(b).where(b.c.name == name)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            yield conn, _state(conn.execute(q).one())

    def _write(self, conn: Connection, name: str, state: BreakerState, now: float) -> None:
        b = s.breakers
        conn.execute(b.update().where(b.c.name == name).values(_values(state, now)))

    def admit(self, policy: Breaker, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        with self._locked(policy.name, now) as (conn, state):
            new, verdict = admit(state, policy, now)
            if new != state:
                self._write(conn, policy.name, new, now)
            return verdict

    def settle(
        self,
        policy: Breaker,
        *,
        ok: bool,
        probe: bool,
        error: str | None = None,
        now: float | None = None,
    ) -> BreakerState:
        now = time.time() if now is None else now
        with self._locked(policy.name, now) as (conn, state):
            new = settle(state, policy, now, ok=ok, probe=probe, error=error)
            if new != state:
                self._write(conn, policy.name, new, now)
            return new

    def list(self) -> list[BreakerRow]:
        b = s.breakers
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(b).order_by(b.c.name)).all()
        return [BreakerRow(r.name, _state(r), r.updated_at) for r in rows]

    def reset(self, name: str) -> bool:
        """Close the breaker and forget its failures; False if no breaker has that name."""
        b = s.breakers
        with write_transaction(self.store.engine) as conn:
            return bool(conn.execute(delete(b).where(b.c.name == name)).rowcount)


__all__ = [
    "Admission",
    "BreakerBook",
    "BreakerRow",
    "BreakerState",
    "Verdict",
    "admit",
    "settle",
]
