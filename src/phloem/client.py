"""A Python client of the phloem server's REST API, on httpx.

    from phloem.client import Client

    with Client("http://phloem.internal:8765", token) as c:
        for run in c.iter_runs(pipeline="train", states=["failed"]):
            c.retry(run.run_id)

Methods mirror the endpoints and return phloem's own records (``RunRecord``, ``TI``,
``AttemptRow``) or the API's documents (``phloem.wire``). A refusal of the server is raised as
the phloem error it stands for (``RunNotFound``, ``ParamError``, ``RunConflict``...), with the
server's message and context; a refusal that is the server's own (credentials, a malformed
request, an unreachable or failing server) as :class:`phloem.errors.ServerError`, which keeps
the status and the problem document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from phloem import errors as _errors
from phloem.errors import PhloemError, ServerError
from phloem.records import TI, RunRecord
from phloem.store.listing import Page
from phloem.store.types import AttemptRow
from phloem.wire import (
    AttemptOut,
    BackfillOut,
    CancelOut,
    OutputOut,
    RetryOut,
    RunDetail,
    RunOut,
    TaskInstanceOut,
)

if TYPE_CHECKING:
    import httpx

API = "/api/v1"
#: what the server allows per page
PAGE = 500
#: seconds an idle connection is kept for reuse: well under the time ``phloem server`` keeps
#: one open (``server.process.KEEP_ALIVE``), so the client never sends on a connection the
#: server is closing at that very moment
KEEPALIVE_EXPIRY = 3.0
#: methods sent again, once, when a kept-alive connection turns out closed under them: reads
#: (a DELETE the server did act on would answer the second time that nothing was there)
_READS = frozenset({"GET", "HEAD"})


def _slug(name: str) -> str:
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()


def _error_classes() -> dict[str, type[PhloemError]]:
    """problem title -> phloem error class (the server titles a problem by its class)."""
    out: dict[str, type[PhloemError]] = {}
    for value in vars(_errors).values():
        if isinstance(value, type) and issubclass(value, PhloemError):
            out[_slug(value.__name__)] = value
    return out


_PLAIN = {"message", "returncode", "stderr_tail"}  # constructor-specific error classes


def problem_error(status: int, problem: dict[str, Any]) -> PhloemError:
    """The phloem error a problem document stands for."""
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    context = {
        k: v
        for k, v in problem.items()
        if k not in ("type", "title", "status", "detail", "errors") and k not in _PLAIN
    }
    cls = _error_classes().get(str(problem.get("title", "")))
    if cls is not None and cls not in (PhloemError, ServerError, _errors.CommandFailed):
        return cls(detail, **context)
    return ServerError(detail, status=status, problem=problem)


class Client:
    """The REST API of the phloem server at ``url``, with the API token ``token``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url + API,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<phloem.client.Client {self.url}>"

    # -- plumbing ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        import httpx

        try:
            try:
                resp = self._http.request(method, path, **kw)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                # a proxy or server with a shorter idle timeout closed the kept-alive
                # connection as the request went out; a read goes again, on a new connection
                # (a change may have been acted on: it is not sent twice)
                if method not in _READS:
                    raise
                resp = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        self._check(resp)
        return resp

    def _unreachable(self, exc: Exception) -> ServerError:
        return ServerError(
            f"cannot reach the phloem server at {self.url}: {_errors.first_line(exc)}; check "
            "the URL (--server or PHLOEM_SERVER_URL) and that `phloem server` runs there",
            status=0,
            problem={},
        )

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        try:
            problem = resp.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
            problem = {"title": resp.reason_phrase, "detail": text or resp.reason_phrase}
        raise problem_error(resp.status_code, problem)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._send(method, path, **kw).json()

    @staticmethod
    def _params(**kw: Any) -> dict[str, Any]:
        return {k: v for k, v in kw.items() if v is not None and v != []}

    # -- runs ----------------------------------------------------------------------------------

    def runs(
        self,
        *,
        pipeline: str | None = None,
        states: Iterable[str] = (),
        run_types: Iterable[str] = (),
        logical_from: str | None = None,
        logical_to: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[RunRecord]:
        """One page of runs, newest first."""
        data = self._json(
            "GET",
            "/runs",
            params=self._params(
                pipeline=pipeline,
                state=[str(s) for s in states],
                run_type=[str(t) for t in run_types],
                logical_from=logical_from,
                logical_to=logical_to,
                limit=limit,
                cursor=cursor,
            ),
        )
        items = [RunOut.model_validate(r).record() for r in data["items"]]
        return Page(items, data.get("next_cursor"))

    def iter_runs(self, **filters: Any) -> Iterator[RunRecord]:
        """Every run the filters of :meth:`runs` select, page after page."""
        cursor = None
        while True:
            page = self.runs(**filters, limit=PAGE, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def run_detail(self, run_id: str) -> RunDetail:
        """A run (by id or unique prefix), its pipeline's task order and a summary of its
        tasks."""
        return RunDetail.model_validate(self._json("GET", f"/runs/{_seg(run_id)}"))

    def run(self, run_id: str) -> RunRecord:
        return self.run_detail(run_id).run.record()

    def instances(
        self,
        run_id: str,
        *,
        task_id: str | None = None,
        states: Iterable[str] = (),
        limit: int = PAGE,
        cursor: str | None = None,
    ) -> Page[TI]:
        data = self._json(
            "GET",
            f"/runs/{_seg(run_id)}/instances",
            params=self._params(
                task_id=task_id, state=[str(s) for s in states], limit=limit, cursor=cursor
            ),
        )
        items = [TaskInstanceOut.model_validate(t).record() for t in data["items"]]
        return Page(items, data.get("next_cursor"))

    def all_instances(self, run_id: str, *, task_id: str | None = None) -> list[TI]:
        out: list[TI] = []
        cursor = None
        while True:
            page = self.instances(run_id, task_id=task_id, cursor=cursor)
            out += page.items
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    def instance(self, run_id: str, task_id: str, map_index: int | None = None) -> TI:
        data = self._json(
            "GET",
            f"/runs/{_seg(run_id)}/tasks/{_seg(task_id)}",
            params=self._params(map_index=map_index),
        )
        return TaskInstanceOut.model_validate(data).record()

    def attempts(
        self, run_id: str, *, task_id: str | None = None, map_index: int | None = None
    ) -> list[AttemptRow]:
        data = self._json(
            "GET",
            f"/runs/{_seg(run_id)}/attempts",
            params=self._params(task_id=task_id, map_index=map_index),
        )
        return [AttemptOut.model_validate(a).record() for a in data]

    def retry(self, run_id: str, *, task: str | None = None, downstream: bool = False) -> RetryOut:
        """Reset the run's failed tasks (or ``task``, with ``downstream`` all after it) and
        queue it for the server's scheduler."""
        body = {"task": task, "downstream": downstream}
        return RetryOut.model_validate(self._json("POST", f"/runs/{_seg(run_id)}/retry", json=body))

    def cancel(self, run_id: str, reason: str | None = None) -> CancelOut:
        """Stop the run now: running attempts stop, the run fails (``retry`` resumes it)."""
        data = self._json("POST", f"/runs/{_seg(run_id)}/cancel", json={"reason": reason})
        return CancelOut.model_validate(data)

    # -- logs and outputs ----------------------------------------------------------------------

    def log(
        self,
        run_id: str,
        task_id: str,
        *,
        map_index: int | None = None,
        try_number: int | None = None,
        offset: int = 0,
    ) -> Iterator[bytes]:
        """An attempt's log from byte ``offset`` on, as it is now, streamed in chunks."""
        import httpx

        params = self._params(map_index=map_index, try_number=try_number, offset=offset)
        path = f"/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/logs"
        try:
            with self._http.stream("GET", path, params=params) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._check(resp)
                yield from resp.iter_bytes()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def follow_log(
        self,
        run_id: str,
        task_id: str,
        *,
        map_index: int | None = None,
        try_number: int | None = None,
        offset: int = 0,
    ) -> Iterator[bytes]:
        """An attempt's log from ``offset``, then what it writes while it runs (Server-Sent
        Events), until the attempt ends."""
        params = self._params(map_index=map_index, try_number=try_number, offset=offset)
        path = f"/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/logs/stream"
        for event, data, _ in self._sse(path, params):
            if event == "end":
                return
            if event == "log":
                yield json.loads(data)["text"].encode("utf-8", "surrogateescape")

    def output(
        self, run_id: str, task_id: str, *, map_index: int | None = None, rows: int | None = None
    ) -> OutputOut:
        """A task's output: its JSON value, or what its artifact holds."""
        data = self._json(
            "GET",
            f"/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/output",
            params=self._params(map_index=map_index, rows=rows),
        )
        return OutputOut.model_validate(data)

    def download(
        self, run_id: str, task_id: str, into: BinaryIO, *, map_index: int | None = None
    ) -> int:
        """Write the bytes of a task's artifact into ``into``; returns how many."""
        import httpx

        path = f"/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/artifact"
        n = 0
        try:
            with self._http.stream("GET", path, params=self._params(map_index=map_index)) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check(r)
                for chunk in r.iter_bytes():
                    into.write(chunk)
                    n += len(chunk)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        return n

    # -- pipelines, triggers, backfills --------------------------------------------------------

    def trigger(
        self,
        pipeline: str,
        *,
        params: dict[str, Any] | None = None,
        logical_date: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Queue a run now; returns (run, created): a repeated key gives the first run."""
        body = {
            "params": params or {},
            "logical_date": logical_date,
            "idempotency_key": idempotency_key,
        }
        resp = self._send("POST", f"/pipelines/{_seg(pipeline)}/runs", json=body)
        run_id = str(resp.json()["run_id"])
        # the full record (the answer to a trigger is a summary)
        return self.run(run_id), resp.status_code == 201

    def pause(self, pipeline: str) -> str:
        return str(self._json("POST", f"/pipelines/{_seg(pipeline)}/pause")["name"])

    def unpause(self, pipeline: str) -> str:
        return str(self._json("POST", f"/pipelines/{_seg(pipeline)}/unpause")["name"])

    def pipelines(self) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", "/pipelines")
        return data

    def backfill(
        self,
        pipeline: str,
        start: str,
        end: str,
        *,
        rerun_failed: bool = False,
        rerun_all: bool = False,
        max_active_runs: int | None = None,
        dry_run: bool = False,
    ) -> BackfillOut:
        body = {
            "pipeline": pipeline,
            "start": start,
            "end": end,
            "rerun_failed": rerun_failed,
            "rerun_all": rerun_all,
        }
        if dry_run:
            return BackfillOut.model_validate(self._json("POST", "/backfills/dry-run", json=body))
        body["max_active_runs"] = max_active_runs
        return BackfillOut.model_validate(self._json("POST", "/backfills", json=body))

    # -- pools, variables, connections, assets -------------------------------------------------

    def pools(self) -> dict[str, dict[str, Any]]:
        """Pool name -> {slots, used, description}."""
        return {p["name"]: p for p in self._json("GET", "/pools")}

    def set_pool(self, name: str, slots: int, description: str | None = None) -> None:
        self._send("PUT", f"/pools/{_seg(name)}", json={"slots": slots, "description": description})

    def variables(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json("GET", "/variables")
        return data

    def variable(self, key: str) -> Any:
        return self._json("GET", f"/variables/{_seg(key)}")["value"]

    def set_variable(self, key: str, value: Any, description: str | None = None) -> None:
        body = {"value": value, "description": description}
        self._send("PUT", f"/variables/{_seg(key)}", json=body)

    def delete_variable(self, key: str) -> None:
        self._send("DELETE", f"/variables/{_seg(key)}")

    def connections(self) -> list[dict[str, Any]]:
        """Connections without their passwords (the server never sends one)."""
        data: list[dict[str, Any]] = self._json("GET", "/connections")
        return data

    def set_connection(self, name: str, uri: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json("PUT", f"/connections/{_seg(name)}", json={"uri": uri})
        return data

    def delete_connection(self, name: str) -> None:
        self._send("DELETE", f"/connections/{_seg(name)}")

    def assets(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json("GET", "/assets")
        return data

    def asset_events(
        self, asset: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        data = self._json(
            "GET", "/assets/events", params=self._params(asset=asset, limit=limit, cursor=cursor)
        )
        return Page(list(data["items"]), data.get("next_cursor"))

    # -- lineage -------------------------------------------------------------------------------

    def lineage(
        self,
        target: str | Sequence[str],
        *,
        direction: str = "upstream",
        map_index: int | None = None,
        max_depth: int | None = None,
        max_nodes: int | None = None,
    ) -> dict[str, Any]:
        """The lineage graph of ``target`` (a hash or prefix, ``"RUN TASK"`` or
        ``["RUN", "TASK"]``, ``"fraud:3"``) as ``phloem lineage --json`` prints it;
        ``direction`` is ``upstream``, ``downstream`` or ``both``."""
        words = target if isinstance(target, str) else " ".join(target)
        params = self._params(
            target=words,
            direction=direction,
            map_index=map_index,
            depth=max_depth,
            max_nodes=max_nodes,
        )
        data: dict[str, Any] = self._json("GET", "/lineage", params=params)
        return data

    # -- events --------------------------------------------------------------------------------

    def events(
        self,
        *,
        run_id: str | None = None,
        pipeline: str | None = None,
        after: int | None = None,
        last_event_id: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """State changes of runs and task instances as they commit (of one run or pipeline,
        if asked), from after event ``after`` (0: the whole history; default: now); each has
        its ``id``, to resume from. Never ends by itself."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        params = self._params(run_id=run_id, pipeline=pipeline, after=after)
        for _, data, _ in self._sse("/events", params, headers):
            event: dict[str, Any] = json.loads(data)
            yield event

    def _sse(
        self, path: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Iterator[tuple[str, str, str | None]]:
        """(event, data, id) of a Server-Sent Events stream."""
        import httpx

        try:
            with self._http.stream(
                "GET",
                path,
                params=params,
                headers={"Accept": "text/event-stream", **(headers or {})},
                timeout=httpx.Timeout(self._http.timeout.connect, read=None),
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._check(resp)
                event, event_id = "message", None
                data: list[str] = []
                for line in resp.iter_lines():
                    if not line:
                        if data:
                            yield event, "\n".join(data), event_id
                        event, data = "message", []
                        continue
                    if line.startswith(":"):
                        continue
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id":
                        event_id = value
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None


def _seg(text: str) -> str:
    """One path segment: a ``/`` or ``..`` in a name can never change the path asked for."""
    from urllib.parse import quote

    return quote(text, safe="")


__all__ = ["Client", "problem_error"]
