"""The pure state machine that decides every run; see ``decide``."""

from phloem.engine.decide import decide
from phloem.engine.model import (
    TI,
    AttemptFinished,
    AttemptStarted,
    Capacity,
    Decision,
    Event,
    Expansion,
    Key,
    Kill,
    Snapshot,
    Transition,
)
from phloem.engine.rules import Verdict, evaluate

__all__ = [
    "TI",
    "AttemptFinished",
    "AttemptStarted",
    "Capacity",
    "Decision",
    "Event",
    "Expansion",
    "Key",
    "Kill",
    "Snapshot",
    "Transition",
    "Verdict",
    "decide",
    "evaluate",
]
