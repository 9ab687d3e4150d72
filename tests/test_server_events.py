"""``GET /api/v1/events``: state changes as they commit, as Server-Sent Events, from a real
server with its scheduler; resumable with ``Last-Event-ID`` (nothing missed, nothing twice),
filtered by run and pipeline; and the feed never skips an event whose transaction commits
late (PostgreSQL hands out ids before commit)."""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server_fixtures import LiveServer, start_server

PIPELINE = """
from phloem import pipeline, task

@task
def one() -> int:
    return 1

@task
def two(x: int) -> int:
    return x + 1

@pipeline
def tiny():
    two(one())

@pipeline
def other():
    one()
"""


def sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The events of a stream, as {"id", "event", "data"}; comments and retry lines skipped."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                event["data"] = json.loads(value)
            elif field in ("id", "event"):
                event[field] = value


def _until_run_ends(stream: Iterator[dict[str, Any]], limit: int = 200) -> list[dict[str, Any]]:
    got = []
    for ev in stream:
        got.append(ev)
        d = ev["data"]
        if d["kind"] == "run" and d["new_state"] in ("success", "failed"):
            return got
        assert len(got) < limit
    raise AssertionError(f"the stream ended early: {got}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, processes: object, tmp_path: Path
) -> Iterator[LiveServer]:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "tiny.py").write_text(textwrap.dedent(PIPELINE))
    if request.param == "sqlite":
        yield start_server(processes, tmp_path / "home", pipelines=folder)
        return
    from conftest import _pg_schema_url

    for url in _pg_schema_url():
        live = start_server(processes, tmp_path / "home", pipelines=folder, db_url=url)
        yield live
        processes.stop(live.proc)  # type: ignore[attr-defined]  # before its schema goes


def _trigger(server: LiveServer, token: str, name: str = "tiny") -> str:
    deadline = time.monotonic() + 60
    while True:  # the scheduler registers the folder's pipelines a moment after it starts
        r = httpx.post(f"{server.url}/api/v1/pipelines/{name}/runs", json={},
                       headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 201, r.text
    return str(r.json()["run_id"])


def test_a_run_streams_live_and_resumes_after_a_disconnect(server: LiveServer) -> None:
    viewer, operator = server.token("viewer"), server.token("operator")
    auth = {"Authorization": f"Bearer {viewer}"}
    url = f"{server.url}/api/v1/events"
    with httpx.stream("GET", url, headers=auth, params={"pipeline": "tiny"},
                      timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = sse(r)
        run_id = _trigger(server, operator)
        live = _until_run_ends(stream)
    states = [(e["data"]["task_id"], e["data"]["new_state"]) for e in live]
    assert (None, "queued") in states and (None, "success") in states
    assert ("one", "success") in states and ("two", "success") in states
    assert all(e["data"]["run_id"] == run_id for e in live)
    ids = [int(e["id"]) for e in live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    # the whole history, replayed from the start, is what was streamed live
    with httpx.stream("GET", url, headers=auth, params={"after": 0, "run_id": run_id},
                      timeout=60) as r:
        replay = _until_run_ends(sse(r))
    assert [e["id"] for e in replay] == [e["id"] for e in live]

    # reconnecting with Last-Event-ID resumes after it: nothing missed, nothing twice
    cut = live[2]["id"]
    with httpx.stream("GET", url, headers={**auth, "Last-Event-ID": cut},
                      params={"run_id": run_id}, timeout=60) as r:
        rest = _until_run_ends(sse(r))
    assert [e["id"] for e in rest] == [e["id"] for e in live[3:]]

    # another pipeline's run is not in a stream filtered by pipeline
    with httpx.stream("GET", url, headers=auth, params={"pipeline": "tiny"}, timeout=60) as r:
        stream = sse(r)
        _trigger(server, operator, "other")
        mine = _trigger(server, operator)
        got = _until_run_ends(stream)
    assert {e["data"]["run_id"] for e in got} == {mine}


def test_the_stream_needs_credentials_and_a_valid_last_event_id(server: LiveServer) -> None:
    url = f"{server.url}/api/v1/events"
    r = httpx.get(url)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = httpx.get(url, headers={"Authorization": f"Bearer {server.token('viewer')}",
                                "Last-Event-ID": "12; DROP TABLE events"})
    assert r.status_code == 422 and "Last-Event-ID" in r.json()["detail"]


def test_sigterm_ends_open_streams_and_the_server(server: LiveServer) -> None:
    """An open stream is ended by the server as it stops, the response complete: not cut
    off once uvicorn's grace period ran out (it held the signal, so the streams did not
    learn of the stop and a restart waited the whole grace period for each open UI)."""
    url = f"{server.url}/api/v1/events"
    opened, done = threading.Event(), threading.Event()
    ended: list[BaseException | None] = []

    def hold() -> None:
        try:
            with httpx.stream("GET", url, headers={"Authorization":
                              f"Bearer {server.token('viewer')}"}, timeout=60) as r:
                for _ in r.iter_lines():
                    opened.set()
            ended.append(None)
        except httpx.HTTPError as exc:
            ended.append(exc)
        done.set()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert opened.wait(30)  # the stream's first line arrived
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, "\n".join(server.lines)
    assert done.wait(30)
    assert ended == [None], ended
    assert not [line for line in server.lines if "graceful shutdown exceeded" in line]


@pytest.mark.postgres
def test_an_event_committed_late_is_not_skipped(pg_url: str) -> None:
    """Ids are taken at insert: a transaction holding a lower id that commits after a higher
    one must still be given out, in order."""
    from phloem.store import open_store
    from phloem.store import schema as s
    from phloem.store.feed import Follower

    store = open_store(pg_url)
    try:
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(s.runs.insert().values(
                run_id="r1", pipeline="p", state="queued", logical_date="2026-01-01",
                params="{}", created_at=1.0, run_type="manual"))
        follower = Follower(store.feed, store.feed.last_id(), gap_wait=3600)
        row = {"run_id": "r1", "new_state": "running", "at": 1.0}
        slow = store.engine.connect()  # type: ignore[attr-defined]
        tx = slow.begin()
        slow.execute(s.events.insert().values(**row, reason="slow"))  # takes the lower id
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(s.events.insert().values(**row, reason="fast"))
        assert follower.poll(time.time()) == ([], False)  # waits for the gap
        tx.commit()
        slow.close()
        got, _ = follower.poll(time.time())
        assert [e.reason for e in got] == ["slow", "fast"]
        # a gap that never fills (a rolled back insert) is passed after gap_wait
        rolled = store.engine.connect()  # type: ignore[attr-defined]
        tx = rolled.begin()
        rolled.execute(s.events.insert().values(**row, reason="rolled back"))
        tx.rollback()
        rolled.close()
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(s.events.insert().values(**row, reason="after"))
        assert follower.poll(time.time())[0] == []
        got, _ = follower.poll(time.time() + 3601)
        assert [e.reason for e in got] == ["after"]
    finally:
        store.close()
