"""What ``register_if_better`` decided, as a small value a task can return or branch on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a candidate model was promoted, and why. True when promoted, so
    ``if decision:`` reads naturally; ``decision.choose("deploy", "notify")`` gives the task a
    ``@task.branch`` should follow."""

    name: str
    promoted: bool
    reason: str
    metric: str
    value: float
    alias: str
    #: the version registered (None when the candidate was not better)
    version: int | None = None
    champion: int | None = None
    champion_value: float | None = None
    #: improvement over the champion in the metric's good direction (None: no champion)
    delta: float | None = None
    eval_digest: str | None = None
    #: the champion was evaluated on other data and ``allow_different_eval`` let it pass
    different_eval: bool = False

    def __bool__(self) -> bool:
        return self.promoted

    def choose(self, if_promoted: str, otherwise: str | None = None) -> str | None:
        """The task to follow from a branch: ``if_promoted`` when promoted, else
        ``otherwise`` (None: follow none)."""
        return if_promoted if self.promoted else otherwise

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(**d)


def improvement(value: float, champion: float, higher_is_better: bool) -> float:
    """How much better ``value`` is than ``champion`` (negative: worse)."""
    return value - champion if higher_is_better else champion - value


def judge(
    value: float, champion: float, *, higher_is_better: bool, min_delta: float
) -> tuple[bool, float, str]:
    """(better, delta, why) for a candidate's metric value against the champion's."""
    if math.isnan(value):
        return False, math.nan, "the candidate's value is NaN"
    if math.isnan(champion):
        return True, math.inf, "the champion's value is NaN"
    delta = improvement(value, champion, higher_is_better)
    direction = "higher" if higher_is_better else "lower"
    if delta > min_delta:
        why = f"better by {delta:.6g} ({direction} is better, min_delta {min_delta:g})"
        return True, delta, why
    return (
        False,
        delta,
        f"not better by more than {min_delta:g} (delta {delta:.6g}, {direction} is better)",
    )


__all__ = ["Decision", "improvement", "judge"]
