"""``GET /events``: state changes as they commit, as Server-Sent Events.

Each event is one row of the store's history (a run or a task instance changing state), with
its id as the SSE ``id``: a client that reconnects sends ``Last-Event-ID`` and resumes after
it, missing nothing (``?after=ID`` does the same for scripts; ``after=0`` replays the whole
history). Without either the stream starts now. ``run_id`` and ``pipeline`` narrow it.

The server reads the newest event id once per ``POLL`` seconds for all its streams; a stream
that is behind it follows the store with indexed queries (``store.feed.Follower``, which also
waits for ids whose transactions have not committed yet), on the server's thread pool, so the
event loop never waits for the database and idle streams cost the database nothing. A comment line
every ``KEEPALIVE`` seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.server.auth import application, require
from phloem.server.problems import Problem
from phloem.store.feed import FeedEvent, Follower

router = APIRouter(tags=["events"])

POLL = 0.25
#: events a stream reads at most per query: few for its first answer (a client that opens a
#: stream with a long history to replay gets its first events without waiting for a full
#: batch to be read and formatted), then many
FIRST_BATCH = 50
BATCH = 500
KEEPALIVE = 15.0
#: what a client waits before reconnecting (SSE ``retry``), in milliseconds
RETRY_MS = 2000


def _message(ev: FeedEvent) -> str:
    data = {
        "id": ev.id,
        "kind": "run" if ev.task_id is None else "task",
        "run_id": ev.run_id,
        "pipeline": ev.pipeline,
        "task_id": ev.task_id,
        "map_index": ev.map_index,
        "try_number": ev.try_number,
        "old_state": ev.old_state,
        "new_state": ev.new_state,
        "at": ev.at,
        "reason": ev.reason,
    }
    kind = data["kind"]
    # JSON on one line: no newline can end the event early, whatever the reason's text holds
    return f"id: {ev.id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Newest:
    """The newest event id, read at most once per ``POLL`` for all the streams of a server: an
    idle stream costs no query of its own (a stream queries only when there is news)."""

    def __init__(self, ph: Phloem) -> None:
        self.ph = ph
        self._lock = threading.Lock()
        self._value = 0
        self._read_at = -1.0

    def get(self) -> int:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= POLL:
                self._value = self.ph.store.feed.last_id()
                self._read_at = now
            return self._value


def newest(request: Request) -> Newest:
    state = request.app.state
    found: Newest | None = getattr(state, "newest_event", None)
    if found is None:
        found = state.newest_event = Newest(state.phloem)
    return found


def _start(ph: Phloem, last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit() or len(text) > 18:
            raise Problem(
                422,
                "invalid request",
                f"Last-Event-ID {text[:40]!r} is not an event id this server gave",
            )
        return int(text)
    if after is not None:
        return after
    return ph.store.feed.last_id()


@router.get(
    "/events",
    dependencies=[Depends(require(Role.VIEWER))],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def events(
    request: Request,
    ph: Phloem = Depends(application),
    run_id: Annotated[str | None, Query(max_length=64, description="Only this run's.")] = None,
    pipeline: Annotated[
        str | None, Query(max_length=250, description="Only runs of this pipeline.")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="Start after this event id (0: all).")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """State changes of runs and task instances as they commit (Server-Sent Events)."""
    follower = Follower(
        ph.store.feed,
        _start(ph, last_event_id, after),
        run_id=run_id,
        pipeline=pipeline,
        batch=FIRST_BATCH,
    )
    stopping = request.app.state.stopping
    latest = newest(request)

    def poll() -> tuple[list[FeedEvent], bool]:
        if latest.get() <= follower.position:
            return [], False  # nothing new anywhere: no query of this stream's own
        return follower.poll(time.time())

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        quiet_since = time.monotonic()
        while not stopping.is_set():
            rows, more = await anyio.to_thread.run_sync(poll)
            follower.batch = BATCH
            if rows:  # one chunk per batch: each chunk costs a trip through the ASGI stack
                yield "".join(_message(ev) for ev in rows)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            if not more:
                await anyio.sleep(POLL)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
