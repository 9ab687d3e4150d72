"""``phloem.breaker``: a circuit breaker around calls to something that fails in bursts.

    with phloem.breaker("payments-api", failures=5, window=60, reset_after=120):
        charge(order)

    @task(breaker="payments-api", retries=10, retry_delay=30)
    def charge_all(orders): ...

The breaker's state lives in the run's store, so every task, run, worker and scheduler that
names it shares it: after ``failures`` failures within ``window`` seconds it opens, and calls
fail fast with :class:`BreakerOpen` (the task's retries then space the next tries) or, with
``on_open="wait"``, wait until ``reset_after`` seconds have passed. Then one probe call goes
through: its success closes the breaker, its failure opens it again. ``phloem breakers list``
and ``phloem breakers reset NAME`` show and close them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from phloem.dsl.breaker import Breaker
from phloem.errors import BreakerOpen
from phloem.secrets import mask
from phloem.store import Store
from phloem.store.breakers import Admission, Verdict
from phloem.store.per_process import task_store


def _store() -> Store:
    return task_store("circuit breakers")


def _until(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S UTC")


def _refusal(policy: Breaker, verdict: Verdict, now: float) -> BreakerOpen:
    st = verdict.state
    retry = verdict.retry_at or now
    why = f" (last failure: {st.last_error})" if st.last_error else ""
    return BreakerOpen(
        f"circuit breaker '{policy.name}' is open after {len(st.failures)} failures within "
        f"{policy.window:g} s{why}; calls fail fast until {_until(retry)} (in "
        f"{max(0.0, retry - now):.0f} s), then one probe call goes through. "
        f"`phloem breakers reset {policy.name}` closes it now",
        breaker=policy.name,
    )


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return mask(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class BreakerGuard(Breaker):
    """A :class:`Breaker` policy that is also a context manager (and a task option)."""

    __slots__ = ("_probes",)
    _probes: dict[int, list[bool]]  # per thread, the open ``with`` blocks: probe or not

    def __reduce__(self) -> tuple[Any, ...]:
        policy = (self.name, self.failures, self.window, self.reset_after, self.on_open)
        return (BreakerGuard, policy)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_probes", {})

    def __enter__(self) -> BreakerGuard:
        probe = enter(self)
        self._probes.setdefault(threading.get_ident(), []).append(probe)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._probes.get(threading.get_ident()) or [False]
        probe = stack.pop()
        if not stack:
            self._probes.pop(threading.get_ident(), None)
        leave(self, probe, exc)


def enter(
    policy: Breaker,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> bool:
    """Be admitted by ``policy``'s breaker (waiting while open if it says so); returns
    whether this call is the half-open probe."""
    book = _store().breakers
    while True:
        now = clock()
        verdict = book.admit(policy, now)
        if verdict.admission is not Admission.REJECT:
            return verdict.admission is Admission.PROBE
        if policy.on_open != "wait":
            raise _refusal(policy, verdict, now)
        sleep(max(0.05, (verdict.retry_at or now) - now))


def leave(policy: Breaker, probe: bool, exc: BaseException | None) -> None:
    """Tell the breaker how the admitted call ended (a refusal by another breaker and
    phloem's own stop do not count as the call's failure)."""
    if isinstance(exc, BreakerOpen):
        return
    failed = isinstance(exc, Exception)
    if exc is not None and not failed:
        return  # KeyboardInterrupt, SystemExit, phloem's stop: not the callee's fault
    _store().breakers.settle(
        policy, ok=not failed, probe=probe, error=_error_text(exc) if exc is not None else None
    )


def breaker(
    name: str,
    failures: int = 5,
    window: float = 60.0,
    reset_after: float = 120.0,
    on_open: str = "fail",
) -> BreakerGuard:
    """A circuit breaker named ``name`` (see the module docstring); use it as ``with`` or
    as ``@task(breaker=...)``."""
    return BreakerGuard(name, failures, window, reset_after, on_open)


__all__ = ["BreakerGuard", "BreakerOpen", "breaker", "enter", "leave"]
