"""Alerting: checking runs against their alert rules where they are driven, recording what
fires in the store, and delivering it from a background sender (see service.py).

``RunWatch`` (with the messages and channels' transport it needs) is imported when first
asked for: a run whose pipeline has no rules never needs it.
"""

from typing import Any

from phloem.alerting.service import Alerting

__all__ = ["Alerting", "RunWatch"]


def __getattr__(name: str) -> Any:
    if name == "RunWatch":
        from phloem.alerting.watch import RunWatch

        return RunWatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
