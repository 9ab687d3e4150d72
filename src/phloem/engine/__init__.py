"""The pure state machine that decides every run (``decide``) and shares capacity among
runs (``allocate``)."""

from phloem.engine.allocate import BACKFILL_PATIENCE, Ask, Demand, Grant, allocate
from phloem.engine.decide import RUN_RETRY, cached, decide, draft, finish
from phloem.engine.model import (
    TI,
    AttemptFinished,
    AttemptStarted,
    CacheHit,
    Capacity,
    Decision,
    Event,
    Expansion,
    Key,
    Kill,
    Snapshot,
    Transition,
)
from phloem.engine.ready import Draft
from phloem.engine.rules import Verdict, evaluate

__all__ = [
    "RUN_RETRY",
    "BACKFILL_PATIENCE",
    "TI",
    "Ask",
    "AttemptFinished",
    "AttemptStarted",
    "CacheHit",
    "Capacity",
    "Decision",
    "Demand",
    "Draft",
    "Event",
    "Expansion",
    "Grant",
    "Key",
    "Kill",
    "Snapshot",
    "Transition",
    "Verdict",
    "allocate",
    "cached",
    "decide",
    "draft",
    "evaluate",
    "finish",
]
