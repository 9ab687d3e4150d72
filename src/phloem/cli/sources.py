"""Where the read and steer commands get their data: the local store, or a phloem server.

Both sources answer in phloem's own records (``RunRecord``, ``TI``, ``AttemptRow``) and the
same small dicts, so each command renders one way whichever answered: ``phloem runs show X``
prints the same lines on the machine that holds the store and, with ``--server URL`` (or
``PHLOEM_SERVER_URL`` and ``PHLOEM_TOKEN``), on a laptop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from phloem.records import TI, RunRecord
from phloem.store.types import AttemptRow

if TYPE_CHECKING:
    from phloem.app import Phloem
    from phloem.client import Client
    from phloem.lineage import ModelResolver, Target

#: how much of a log one read takes
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Backfilled:
    """One interval of a backfill and what was (or would be) done with it."""

    logical_date: str
    interval_end: str
    action: str
    run_id: str | None = None
    state: str | None = None


class Source(Protocol):
    @property
    def where(self) -> str: ...

    def runs(self, pipeline: str | None, states: list[str], limit: int) -> list[RunRecord]: ...
    def run(self, run_id: str) -> RunRecord: ...
    def instances(self, run_id: str) -> list[TI]: ...
    def attempts(self, run_id: str) -> list[AttemptRow]: ...
    def task_order(self, run: RunRecord) -> list[str] | None: ...
    def log(
        self, run_id: str, task: str, map_index: int | None, try_number: int | None
    ) -> tuple[str, Iterator[bytes] | None]: ...
    def output(self, run_id: str, task: str, map_index: int | None) -> dict[str, Any]: ...
    def trigger(
        self, pipeline: str, params: dict[str, Any], logical_date: str | None, key: str | None
    ) -> tuple[RunRecord, bool]: ...
    def set_paused(self, pipeline: str, paused: bool) -> str: ...
    def lineage(
        self,
        words: list[str],
        direction: str,
        map_index: int | None,
        max_depth: int,
        max_nodes: int,
    ) -> dict[str, Any]: ...
    def cancel(self, run_id: str, reason: str | None) -> tuple[RunRecord, int]: ...
    def backfill(
        self,
        pipeline: str,
        start: str,
        end: str,
        *,
        rerun_failed: bool,
        rerun_all: bool,
        max_active_runs: int | None,
        dry_run: bool,
    ) -> list[Backfilled]: ...


class LocalSource:
    """The store of this machine's settings (``PHLOEM_HOME``, ``PHLOEM_DB_URL``)."""

    def __init__(self, app: Phloem) -> None:
        self.app = app

    @property
    def where(self) -> str:
        return self.app.store.display_url

    def runs(self, pipeline: str | None, states: list[str], limit: int) -> list[RunRecord]:
        from phloem.states import RunState
        from phloem.store.listing import MAX_PAGE, RunFilter

        where = RunFilter(pipeline=pipeline, states=tuple(RunState(s) for s in states))
        out: list[RunRecord] = []
        cursor = None
        while len(out) < limit:
            page = self.app.store.listing.runs(
                where, limit=min(MAX_PAGE, limit - len(out)), cursor=cursor
            )
            out += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return out

    def run(self, run_id: str) -> RunRecord:
        return self.app.store.get_run(run_id)

    def instances(self, run_id: str) -> list[TI]:
        return self.app.store.load_instances(run_id)

    def attempts(self, run_id: str) -> list[AttemptRow]:
        return self.app.store.attempts(run_id)

    def task_order(self, run: RunRecord) -> list[str] | None:
        from phloem.reading import task_order

        return task_order(run.source)

    def log(
        self, run_id: str, task: str, map_index: int | None, try_number: int | None
    ) -> tuple[str, Iterator[bytes] | None]:
        from phloem.reading import instance, label, log_file

        rid = self.run(run_id).run_id
        ti = instance(self.app.store, rid, task, map_index)
        path = log_file(self.app.logs_dir, rid, ti, try_number)
        n = try_number or ti.try_number
        what = f"try {n} of task {label(ti.task_id, ti.map_index)}"
        if not path.is_file():
            return what, None

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:  # streamed: a capped log can still be 100 MB
                while chunk := fh.read(_CHUNK):
                    yield chunk

        return what, chunks()

    def output(self, run_id: str, task: str, map_index: int | None) -> dict[str, Any]:
        from phloem.reading import instance, output_of

        rid = self.run(run_id).run_id
        return output_of(self.app, rid, instance(self.app.store, rid, task, map_index))

    def trigger(
        self, pipeline: str, params: dict[str, Any], logical_date: str | None, key: str | None
    ) -> tuple[RunRecord, bool]:
        from phloem.scheduler.commands import trigger

        return trigger(
            self.app, pipeline, params=params, logical_date=logical_date, idempotency_key=key
        )

    def lineage(
        self,
        words: list[str],
        direction: str,
        map_index: int | None,
        max_depth: int,
        max_nodes: int,
    ) -> dict[str, Any]:
        from phloem.lineage import Direction, lineage, resolve_target, target_parsers

        parsers = target_parsers(resolve_model=model_resolver(self.app))
        found = resolve_target(self.app.store, words, map_index, parsers)
        way: Direction = "downstream" if direction == "downstream" else "upstream"
        graph = lineage(self.app.store, found, way, max_depth=max_depth, max_nodes=max_nodes)
        return graph.to_json()

    def set_paused(self, pipeline: str, paused: bool) -> str:
        from phloem.scheduler.commands import set_paused

        return set_paused(self.app, pipeline, paused)

    def cancel(self, run_id: str, reason: str | None) -> tuple[RunRecord, int]:
        from phloem.scheduler.commands import cancel

        return cancel(self.app, run_id, "cancelled" + (f": {reason}" if reason else ""))

    def backfill(
        self,
        pipeline: str,
        start: str,
        end: str,
        *,
        rerun_failed: bool,
        rerun_all: bool,
        max_active_runs: int | None,
        dry_run: bool,
    ) -> list[Backfilled]:
        from phloem.scheduler.commands import backfill, plan_backfill

        if dry_run:
            items = plan_backfill(
                self.app, pipeline, start, end, rerun_failed=rerun_failed, rerun_all=rerun_all
            )
        else:
            items = backfill(
                self.app,
                pipeline,
                start,
                end,
                rerun_failed=rerun_failed,
                rerun_all=rerun_all,
                max_active_runs=max_active_runs,
            )
        return [
            Backfilled(i.logical_date, i.interval_end, i.action, i.run_id, i.state) for i in items
        ]


def model_resolver(ph: Phloem) -> ModelResolver:
    """Model versions (``fraud:3``, ``fraud@production``) resolved by the model registry to
    the artifact of the model, whose writer is the task that registered it."""

    def resolve(name: str, version: int | None, alias: str | None) -> Target:
        from phloem.lineage import ArtifactTarget
        from phloem.models.registry import Registry

        ref = f"{name}:{version}" if version is not None else f"{name}@{alias}"
        found = Registry(ph.store, ph.artifacts, "phloem lineage").resolve(ref)
        return ArtifactTarget(found.artifact.digest)

    return resolve


class RemoteSource:
    """A phloem server, through :class:`phloem.client.Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def where(self) -> str:
        return self.client.url

    def runs(self, pipeline: str | None, states: list[str], limit: int) -> list[RunRecord]:
        from phloem.client import PAGE

        out: list[RunRecord] = []
        cursor = None
        while len(out) < limit:
            page = self.client.runs(
                pipeline=pipeline, states=states, limit=min(PAGE, limit - len(out)), cursor=cursor
            )
            out += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return out

    def run(self, run_id: str) -> RunRecord:
        return self.client.run(run_id)

    def instances(self, run_id: str) -> list[TI]:
        return self.client.all_instances(run_id)

    def attempts(self, run_id: str) -> list[AttemptRow]:
        return self.client.attempts(run_id)

    def task_order(self, run: RunRecord) -> list[str] | None:
        return self.client.run_detail(run.run_id).task_order

    def log(
        self, run_id: str, task: str, map_index: int | None, try_number: int | None
    ) -> tuple[str, Iterator[bytes] | None]:
        from phloem.reading import label

        ti = self.client.instance(run_id, task, map_index)
        chunks = self.client.log(run_id, task, map_index=map_index, try_number=try_number)
        first = next(chunks, b"")  # the request is made (and refused) here, not when printed
        n = try_number or ti.try_number
        what = f"try {n} of task {label(ti.task_id, ti.map_index)}"
        if not first:
            return what, None

        def rest() -> Iterator[bytes]:
            yield first
            yield from chunks

        return what, rest()

    def output(self, run_id: str, task: str, map_index: int | None) -> dict[str, Any]:
        return self.client.output(run_id, task, map_index=map_index).model_dump(
            exclude_none=True
        )

    def trigger(
        self, pipeline: str, params: dict[str, Any], logical_date: str | None, key: str | None
    ) -> tuple[RunRecord, bool]:
        return self.client.trigger(
            pipeline, params=params, logical_date=logical_date, idempotency_key=key
        )

    def lineage(
        self,
        words: list[str],
        direction: str,
        map_index: int | None,
        max_depth: int,
        max_nodes: int,
    ) -> dict[str, Any]:
        return self.client.lineage(
            words,
            direction=direction,
            map_index=map_index,
            max_depth=max_depth,
            max_nodes=max_nodes,
        )

    def set_paused(self, pipeline: str, paused: bool) -> str:
        return self.client.pause(pipeline) if paused else self.client.unpause(pipeline)

    def cancel(self, run_id: str, reason: str | None) -> tuple[RunRecord, int]:
        out = self.client.cancel(run_id, reason)
        return out.run.record(), out.cancelled

    def backfill(
        self,
        pipeline: str,
        start: str,
        end: str,
        *,
        rerun_failed: bool,
        rerun_all: bool,
        max_active_runs: int | None,
        dry_run: bool,
    ) -> list[Backfilled]:
        out = self.client.backfill(
            pipeline,
            start,
            end,
            rerun_failed=rerun_failed,
            rerun_all=rerun_all,
            max_active_runs=max_active_runs,
            dry_run=dry_run,
        )
        return [
            Backfilled(i.logical_date, i.interval_end, i.action, i.run_id, i.state)
            for i in out.items
        ]


__all__ = ["Backfilled", "LocalSource", "RemoteSource", "Source"]
