"""Alerting: checking runs against their alert rules where they are driven, recording what
fires in the store, and delivering it from a background sender (see service.py)."""

from phloem.alerting.service import Alerting
from phloem.alerting.watch import RunWatch

__all__ = ["Alerting", "RunWatch"]
