"""``/runs/{run_id}/tasks/{task_id}``: one task instance, its attempt logs (a range of bytes,
or a live tail as Server-Sent Events while the attempt runs), its output and its artifact.

A log is found from the task instance the store holds, never from a path in the request
(``phloem.reading.log_file``); an artifact from the reference the store holds, whose key phloem
made. Names in the URL only ever select rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.records import TI
from phloem.server.auth import application, require
from phloem.wire import OutputOut, TaskInstanceOut

router = APIRouter(prefix="/runs/{run_id}/tasks/{task_id}", tags=["task instances"])

Viewer = Depends(require(Role.VIEWER))
MapIndex = Annotated[
    int | None, Query(ge=0, description="The instance of a mapped task (required for one).")
]
TryNumber = Annotated[int | None, Query(ge=1, description="The attempt (default: the latest).")]
#: bytes one read of a log file takes
CHUNK = 1 << 16
#: how often a live tail looks for new lines
TAIL_POLL = 0.25


def _instance(ph: Phloem, run_id: str, task_id: str, map_index: int | None) -> tuple[str, TI]:
    from phloem.reading import instance

    rid = ph.store.get_run(run_id).run_id
    return rid, instance(ph.store, rid, task_id, map_index)


@router.get("", dependencies=[Viewer])
def get_instance(
    run_id: str, task_id: str, map_index: MapIndex = None, ph: Phloem = Depends(application)
) -> TaskInstanceOut:
    """One task instance."""
    _, ti = _instance(ph, run_id, task_id, map_index)
    return TaskInstanceOut.of(ti)


def _read(path: Path, offset: int, limit: int | None) -> Iterator[bytes]:
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return
    with fh:
        fh.seek(offset)
        left = limit
        while left is None or left > 0:
            data = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data


@router.get(
    "/logs",
    dependencies=[Viewer],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "The log's bytes."}},
)
def get_log(
    run_id: str,
    task_id: str,
    map_index: MapIndex = None,
    try_number: TryNumber = None,
    offset: Annotated[int, Query(ge=0, description="From this byte on.")] = 0,
    limit: Annotated[int | None, Query(ge=1, description="At most this many bytes.")] = None,
    ph: Phloem = Depends(application),
) -> StreamingResponse:
    """An attempt's log as it is now, from byte ``offset`` (empty: it wrote nothing yet).
    ``X-Log-Size`` says how long the whole log is, so a reader can ask for the rest later."""
    from phloem.reading import log_file

    rid, ti = _instance(ph, run_id, task_id, map_index)
    path = log_file(ph.logs_dir, rid, ti, try_number)
    size = path.stat().st_size if path.is_file() else 0
    return StreamingResponse(
        _read(path, offset, limit),
        media_type="text/plain; charset=utf-8",
        headers={"X-Log-Size": str(size), "X-Content-Type-Options": "nosniff"},
    )


def _read_all(path: Path, offset: int) -> list[bytes]:
    return list(_read(path, offset, 1 << 20))


def _attempt_over(ph: Phloem, run_id: str, ti: TI, try_number: int) -> bool:
    """Whether the attempt can write no more: it ended, or its task moved on."""
    now = ph.store.get_instance(run_id, ti.task_id, ti.map_index)
    if now.try_number != try_number:
        return True
    return now.state.value not in ("queued", "running")


@router.get(
    "/logs/stream",
    dependencies=[Viewer],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Log events."}},
)
async def stream_log(
    request: Request,
    run_id: str,
    task_id: str,
    map_index: MapIndex = None,
    try_number: TryNumber = None,
    offset: Annotated[int, Query(ge=0, description="From this byte on.")] = 0,
    ph: Phloem = Depends(application),
) -> StreamingResponse:
    """The log from ``offset``, then each piece the attempt writes while it runs, as
    Server-Sent Events: ``log`` events (``{"offset", "text"}``; ``id`` is the offset after
    it, so a reconnect resumes with ``Last-Event-ID``) and one ``end`` when the attempt is
    over and its log read to the end."""
    from phloem.reading import log_file

    rid, ti = await run_in_threadpool(_instance, ph, run_id, task_id, map_index)
    path = log_file(ph.logs_dir, rid, ti, try_number)
    n = try_number or ti.try_number
    resume = request.headers.get("last-event-id", "")
    pos = int(resume) if resume.isdigit() else offset

    async def events() -> AsyncIterator[str]:
        nonlocal pos
        while True:
            over = await run_in_threadpool(_attempt_over, ph, rid, ti, n)
            chunks = await run_in_threadpool(_read_all, path, pos)
            for data in chunks:
                start, pos = pos, pos + len(data)
                text = data.decode("utf-8", "surrogateescape")
                body = json.dumps({"offset": start, "text": text})
                yield f"id: {pos}\nevent: log\ndata: {body}\n\n"
            if over and not chunks:
                yield f"event: end\ndata: {json.dumps({'offset': pos})}\n\n"
                return
            if await request.is_disconnected():
                return
            if not chunks:
                yield ": waiting\n\n"  # keeps proxies from closing a quiet stream
                await asyncio.sleep(TAIL_POLL)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/output", dependencies=[Viewer])
def get_output(
    run_id: str,
    task_id: str,
    map_index: MapIndex = None,
    rows: Annotated[
        int | None, Query(ge=0, le=100, description="First rows of a data frame to show.")
    ] = None,
    ph: Phloem = Depends(application),
) -> OutputOut:
    """The output: its JSON value, or a description of the artifact holding it (a data
    frame's shape, schema and first rows; an array's shape and dtype)."""
    from phloem.reading import output_of

    rid, ti = _instance(ph, run_id, task_id, map_index)
    return OutputOut(**output_of(ph, rid, ti, rows))


@router.get(
    "/artifact",
    dependencies=[Viewer],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "Bytes."}},
)
def download_artifact(
    run_id: str, task_id: str, map_index: MapIndex = None, ph: Phloem = Depends(application)
) -> StreamingResponse:
    """The bytes of the artifact holding the output, as stored (Parquet, ``.npy``, ...),
    streamed; ``X-Artifact-Digest`` is their sha256, to check the copy against."""
    from phloem.reading import artifact_of, label

    rid, ti = _instance(ph, run_id, task_id, map_index)
    ref = artifact_of(rid, ti)
    chunks = ph.artifacts.stream(ref)
    first = next(chunks, b"")  # a missing artifact is an error now, not a cut stream

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    ext = ref.key.rsplit(".", 1)[-1]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in label(ti.task_id, ti.map_index))
    return StreamingResponse(
        body(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(ref.size),
            "Content-Disposition": f'attachment; filename="{rid}-{name}.{ext}"',
            "X-Artifact-Digest": f"sha256:{ref.digest}",
            "X-Artifact-Serializer": ref.serializer,
        },
    )


__all__ = ["router"]
