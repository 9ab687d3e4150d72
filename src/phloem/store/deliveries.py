"""An alert delivery as the store records it (``NewDelivery``) and hands it to the sender
(``Delivery``): one alert on one channel. Apart from store/alert_book.py, which keeps the
rules, so a run that only reads its rules does not build these."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class NewDelivery:
    rule_id: str
    pipeline: str
    run_id: str
    subject: str
    channel: int
    kind: str
    target: str
    rule: str
    title: str
    body: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    rule_id: str
    pipeline: str
    run_id: str
    subject: str
    channel: int
    kind: str
    target: str
    rule: str
    title: str
    body: str
    payload: dict[str, Any]
    state: str
    tries: int
    next_try_at: float
    last_error: str | None
    created_at: float
    sent_at: float | None


def delivery_from_row(row: Any) -> Delivery:
    """A row of ``alert_deliveries`` as a delivery."""
    return Delivery(
        row.id, row.rule_id, row.pipeline, row.run_id, row.subject, row.channel, row.kind,
        row.target, row.rule, row.title, row.body, json.loads(row.payload), row.state,
        row.tries, row.next_try_at, row.last_error, row.created_at, row.sent_at,
    )  # fmt: skip


__all__ = ["Delivery", "NewDelivery", "delivery_from_row"]
