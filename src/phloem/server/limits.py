"""Limits every request passes: a cap on request bodies, enforced before the body is read (a
client cannot make the server buffer more than ``max_bytes``: 413 problem, whether it declares
a length or streams), and a cap on the worker threads that run the endpoints."""

from __future__ import annotations

import json
from typing import Any

from anyio.to_thread import current_default_thread_limiter
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phloem.server.problems import MEDIA_TYPE

#: the default cap: request bodies are small documents (params, settings)
DEFAULT_MAX_BODY = 1 << 20
#: worker threads that run endpoints (and their database calls) at once. The endpoints hold
#: the GIL for most of their work, so more threads do not answer more requests; they only
#: take turns: with 20 clients at once, anyio's default of 40 cost about 20 % more CPU per
#: request than 8 (``benchmarks/api_load.py``), CPU the scheduler beside the API could use
DEFAULT_THREADS = 8


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI passes an HTTPException from there on untouched, so
    the problem handler answers it (a 413), not its generic body-parsing 400."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(send)
                return
        seen = 0
        started = False

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, f"request bodies are limited to {self.max_bytes} bytes")
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting, tracking)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body: dict[str, Any] = {
            "type": "urn:phloem:problem:request-body-too-large",
            "title": "request body too large",
            "status": 413,
            "detail": f"request bodies are limited to {self.max_bytes} bytes",
        }
        raw = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", MEDIA_TYPE.encode()),
                    (b"content-length", str(len(raw)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})


class ThreadLimit:
    """Run at most ``threads`` endpoints at once (anyio's worker-thread limiter of the event
    loop serving the request; set on each request, as a test client may bring a new loop)."""

    def __init__(self, app: ASGIApp, threads: int = DEFAULT_THREADS) -> None:
        self.app = app
        self.threads = threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = current_default_thread_limiter()
        if limiter.total_tokens != self.threads:
            limiter.total_tokens = self.threads
        await self.app(scope, receive, send)


class NoSniff:
    """Every response says ``X-Content-Type-Options: nosniff``: a browser never runs a JSON
    answer (with a user's ``<script>`` in a name) as HTML, whatever it guesses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_header)


__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_THREADS", "BodyLimit", "NoSniff", "ThreadLimit"]
