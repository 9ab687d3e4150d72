"""``phloem.Breaker``: the policy of a circuit breaker in front of something that fails in
bursts (an external API, a flaky database). Its state lives in the store, shared by every
task, run, worker and scheduler that names it; see ``phloem.breakers``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from phloem.errors import DefinitionError

ON_OPEN = ("fail", "wait")


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise DefinitionError(
            f"phloem.Breaker: {what} must be a positive number of seconds or a timedelta, "
            f"got {value!r}"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Breaker:
    """Open after ``failures`` failures within ``window`` seconds; while open, calls fail fast
    (``on_open="fail"``) or wait (``"wait"``) until ``reset_after`` seconds have passed; then
    one probe call goes through: its success closes the breaker, its failure opens it again."""

    name: str
    failures: int = 5
    window: float = 60.0
    reset_after: float = 120.0
    on_open: str = "fail"

    def __init__(
        self,
        name: str,
        failures: int = 5,
        window: float | timedelta = 60.0,
        reset_after: float | timedelta = 120.0,
        on_open: str = "fail",
    ) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 250:
            raise DefinitionError(
                f"phloem.Breaker: name must be non-empty text of at most 250 characters, "
                f"got {name!r}"
            )
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise DefinitionError(
                f"phloem.Breaker '{name}': failures must be an int >= 1, got {failures!r}"
            )
        if on_open not in ON_OPEN:
            raise DefinitionError(
                f"phloem.Breaker '{name}': on_open must be 'fail' or 'wait', got {on_open!r}"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "failures", failures)
        object.__setattr__(self, "window", _seconds(window, "window"))
        object.__setattr__(self, "reset_after", _seconds(reset_after, "reset_after"))
        object.__setattr__(self, "on_open", on_open)


def breaker_option(value: Any, option: str, where: str) -> Breaker | None:
    """A name -> ``Breaker(name)`` with the default policy; a ``Breaker`` as it is."""
    if value is None:
        return None
    if isinstance(value, str):
        return Breaker(value)
    if isinstance(value, Breaker):  # a phloem.breaker(...) guard too: keep only its policy
        return Breaker(value.name, value.failures, value.window, value.reset_after, value.on_open)
    raise DefinitionError(
        f"{where}: option '{option}' must be a breaker's name or phloem.Breaker(name, "
        f"failures=..., window=..., reset_after=...), got {value!r}"
    )


__all__ = ["ON_OPEN", "Breaker", "breaker_option"]
