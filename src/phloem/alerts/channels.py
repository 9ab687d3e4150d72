"""Where an alert goes: a webhook, e-mail addresses, or a Python callable.

Channels are plain frozen values (declaring one connects nowhere); the process that delivers
an alert (``phloem.alerting``) sends it. ``describe()`` is the channel as a delivery record
keeps it: a kind and a target, so an alert recorded by one process can be sent by another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from phloem.errors import AlertError

_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


@dataclass(frozen=True, slots=True)
class Channel:
    """One place an alert is sent to (see :func:`webhook`, :func:`email`, :func:`call`)."""

    kind: str  # "webhook" | "email" | "call"
    target: str  # the URL, the comma-separated addresses, or the callable's "module:name"
    fn: Callable[..., Any] | None = None  # the callable of a ``call`` channel

    def shown(self) -> str:
        """The target for listings: a webhook's path often holds a token, so only its host."""
        if self.kind == "webhook":
            parts = urlsplit(self.target)
            return f"{parts.scheme}://{parts.netloc}/…" if parts.path not in ("", "/") else (
                self.target
            )
        return self.target


def webhook(url: str) -> Channel:
    """POST a JSON body to ``url``: a Slack-compatible ``text`` plus structured fields
    (``pipeline``, ``run_id``, ``rule``, ``state``, ``see``)."""
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise AlertError(
            f"webhook({url!r}): the URL must start with http:// or https://, e.g. "
            "webhook('https://hooks.slack.com/services/...')"
        )
    if not urlsplit(url).netloc:
        raise AlertError(f"webhook({url!r}): the URL names no host")
    return Channel("webhook", url)


def email(*addresses: str | Sequence[str]) -> Channel:
    """Send an e-mail to these addresses over the SMTP server ``PHLOEM_SMTP_URL`` names."""
    flat: list[str] = []
    for a in addresses:
        flat.extend([a] if isinstance(a, str) else list(a))
    if not flat:
        raise AlertError("email(): give at least one address, e.g. email('ml@example.org')")
    for a in flat:
        if not isinstance(a, str) or not _ADDRESS.match(a.strip()):
            raise AlertError(f"email({a!r}): not an e-mail address like 'ml@example.org'")
    return Channel("email", ",".join(a.strip() for a in flat))


def call(fn: Callable[..., Any]) -> Channel:
    """Call ``fn(alert)`` with the :class:`phloem.alerts.Alert`, in the process that delivers
    it (a process driving the pipeline: it must be able to import the function)."""
    if not callable(fn):
        raise AlertError(f"call({fn!r}): give a function that takes the alert")
    name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
    return Channel("call", name, fn)


def channel_from(kind: str, target: str) -> Channel:
    """A channel as a store keeps it (CLI rules): only webhook and email can be stored."""
    if kind == "webhook":
        return webhook(target)
    if kind == "email":
        return email(*target.split(","))
    raise AlertError(f"a stored alert channel of kind {kind!r} cannot be read; remove the rule")


__all__ = ["Channel", "call", "channel_from", "email", "webhook"]
