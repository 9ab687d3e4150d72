"""Sending one delivery: a webhook POST, an e-mail over SMTP, or a call of a Python function.

Each send has a timeout and raises on failure; :class:`SendError` says whether trying again
can help (a 5xx, a refused connection) or not (a 4xx, an address the server rejects). The
sender (alerting/sender.py) calls these off the loop, so a slow receiver delays only alerts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from phloem.alerts.rules import Alert
from phloem.errors import AlertError
from phloem.store.deliveries import Delivery


class SendError(Exception):
    """A delivery could not be sent; ``retry`` says whether another try may succeed."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True, slots=True)
class Smtp:
    """Where and how to send e-mail, read from ``PHLOEM_SMTP_URL``."""

    host: str
    port: int
    tls: bool  # smtps: TLS from the first byte
    starttls: bool
    user: str | None
    password: str | None
    sender: str

    @classmethod
    def parse(cls, url: str, connection: Callable[[str], str] | None = None) -> Smtp:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        tls = parts.scheme == "smtps"
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        conn_name = query.get("connection")
        if conn_name:
            if connection is None:
                raise AlertError("PHLOEM_SMTP_URL names a connection, but no store is open")
            c = urlsplit(connection(conn_name))
            user = unquote(c.username) if c.username else user
            password = unquote(c.password) if c.password else password
        try:
            port = parts.port or (465 if tls else 25)
        except ValueError:
            raise AlertError("PHLOEM_SMTP_URL has a port that is not a number") from None
        if not parts.hostname:
            raise AlertError("PHLOEM_SMTP_URL names no host: write smtp://host:port")
        starttls = query.get("starttls", "").lower() in ("1", "true", "yes")
        sender = query.get("from") or f"phloem@{parts.hostname}"
        return cls(parts.hostname, port, tls, starttls, user, password, sender)


# urllib.request, smtplib, ssl and email are imported by the sends that use them: every run
# has an alerting service, few runs send anything


def post_webhook(url: str, body: Mapping[str, Any], timeout: float) -> None:
    import urllib.error
    import urllib.request

    data = json.dumps(body, default=str).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read(1024)
    except urllib.error.HTTPError as exc:
        retry = exc.code >= 500 or exc.code in (408, 425, 429)
        raise SendError(f"the webhook answered HTTP {exc.code}", retry=retry) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"the webhook could not be reached: {reason}") from None


def send_email(smtp: Smtp, to: list[str], subject: str, text: str, timeout: float) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(text)
    try:
        client: smtplib.SMTP
        if smtp.tls:
            client = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(exc.recipients)
        raise SendError(f"the mail server refused {refused}", retry=False) from None
    except smtplib.SMTPAuthenticationError:
        raise SendError("the mail server refused the credentials", retry=False) from None
    except smtplib.SMTPResponseException as exc:
        raise SendError(
            f"the mail server answered {exc.smtp_code}", retry=exc.smtp_code < 500
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"the mail server could not be reached: {exc}") from None


@dataclass
class Transport:
    """Sends deliveries of every kind; ``callables`` are the ``call`` channels this process
    knows (by their "module:name")."""

    smtp_url: str | None = None
    connection: Callable[[str], str] | None = None
    callables: dict[str, Callable[..., Any]] | None = None
    timeout: float = 10.0

    def send(self, d: Delivery) -> None:
        if d.kind == "webhook":
            post_webhook(d.target, {"text": f"{d.title}\n{d.body}", **d.payload}, self.timeout)
        elif d.kind == "email":
            if not self.smtp_url:
                raise SendError("PHLOEM_SMTP_URL is not set: no mail server to send e-mail to")
            try:
                smtp = Smtp.parse(self.smtp_url, self.connection)
            except Exception as exc:
                raise SendError(f"PHLOEM_SMTP_URL cannot be used: {exc}", retry=False) from None
            send_email(smtp, d.target.split(","), d.title, d.body, self.timeout)
        elif d.kind == "call":
            fn = (self.callables or {}).get(d.target)
            if fn is None:
                raise SendError(f"the function {d.target} is not known in this process")
            try:
                fn(alert_of(d))
            except Exception as exc:
                raise SendError(f"{d.target} raised {type(exc).__name__}: {exc}") from None
        else:
            raise SendError(f"unknown channel kind {d.kind!r}", retry=False)


def alert_of(d: Delivery) -> Alert:
    p = d.payload
    return Alert(
        pipeline=d.pipeline,
        run_id=d.run_id,
        rule=d.rule,
        title=d.title,
        text=d.body,
        state=p.get("state"),
        see=p.get("see", ""),
        task=p.get("task"),
        value=p.get("value"),
        fields=p,
    )


__all__ = ["SendError", "Smtp", "Transport", "post_webhook", "send_email"]
