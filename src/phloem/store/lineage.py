"""The records lineage reads: which task instances wrote and read which artifacts, the
metadata kept with outputs, and the runs around them (``store.lineage``).

Reads only, in domain terms; the graph is walked above the store (``phloem.lineage``), so
the CLI and the REST API share one walk. Large key sets are read in chunks, never one query
per row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import select

from phloem.store import schema as s
from phloem.store.engine import Database
from phloem.store.resilience import resilient
from phloem.store.types import ArtifactRecord, InstanceInfo, InstanceKey, MetadataRow, UseRow

CHUNK = 500
#: roles of an artifact use in which the task read the artifact (any other role: it wrote it,
#: as its output or besides it, e.g. a report or a registered model)
READ_ROLES = ("input", "eval")
T = TypeVar("T")


def _chunks(items: Iterable[T], n: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


@resilient
class LineageRecords:
    """The SQL store's lineage records (``store.lineage``)."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    # -- metadata --------------------------------------------------------------------------------

    def output_metadata(
        self, run_id: str, task_id: str | None = None, map_index: int | None = None
    ) -> list[MetadataRow]:
        """Metadata kept with a run's outputs (of one task, one instance), in path order: of
        each instance's latest successful attempt (a task run again replaces its output)."""
        om = s.output_metadata
        q = select(om).where(om.c.run_id == run_id)
        if task_id is not None:
            q = q.where(om.c.task_id == task_id)
        if map_index is not None:
            q = q.where(om.c.map_index == map_index)
        q = q.order_by(om.c.task_id, om.c.map_index, om.c.try_number.desc(), om.c.path)
        latest: dict[tuple[str, int], int] = {}
        out = []
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                if latest.setdefault((r.task_id, r.map_index), r.try_number) == r.try_number:
                    out.append(_metadata_row(r))
        return out

    def metadata_of(self, digests: Iterable[str]) -> dict[str, list[MetadataRow]]:
        """Metadata kept with these artifacts wherever they were output, newest first."""
        om = s.output_metadata
        out: dict[str, list[MetadataRow]] = defaultdict(list)
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(digests))):
                q = select(om).where(om.c.digest.in_(chunk)).order_by(om.c.at.desc())
                for r in conn.execute(q):
                    out[r.digest].append(_metadata_row(r))
        return dict(out)

    # -- artifacts and their uses ----------------------------------------------------------------

    def find_artifacts(self, prefix: str, limit: int = 10) -> list[ArtifactRecord]:
        """Artifacts whose digest starts with ``prefix`` (lower-case hex), at most ``limit``."""
        a = s.artifacts
        q = select(a).where(a.c.digest.like(f"{prefix}%")).order_by(a.c.digest).limit(limit)
        with self.engine.connect() as conn:
            return [_artifact(r) for r in conn.execute(q)]

    def artifacts(self, digests: Iterable[str]) -> dict[str, ArtifactRecord]:
        a = s.artifacts
        out: dict[str, ArtifactRecord] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(digests))):
                for r in conn.execute(select(a).where(a.c.digest.in_(chunk))):
                    out[r.digest] = _artifact(r)
        return out

    def writers_of(self, digests: Iterable[str]) -> list[UseRow]:
        """Who wrote these artifacts: as an output, or besides it (a report, role as recorded)."""
        return self._uses_of(digests, read=False)

    def readers_of(self, digests: Iterable[str]) -> list[UseRow]:
        """Who read these artifacts as inputs."""
        return self._uses_of(digests, read=True)

    def written_by(self, instances: Iterable[InstanceKey]) -> list[UseRow]:
        """The artifacts these task instances wrote (outputs, reports)."""
        return self._uses_by(instances, read=False)

    def read_by(self, instances: Iterable[InstanceKey]) -> list[UseRow]:
        """The artifacts these task instances read."""
        return self._uses_by(instances, read=True)

    def _uses_of(self, digests: Iterable[str], *, read: bool) -> list[UseRow]:
        au = s.artifact_uses
        role = au.c.role.in_(READ_ROLES) if read else au.c.role.not_in(READ_ROLES)
        out: list[UseRow] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(digests))):
                q = select(au).where(au.c.digest.in_(chunk), role)
                out.extend(_use(r) for r in conn.execute(q))
        return sorted(out, key=_use_order)

    def _uses_by(self, instances: Iterable[InstanceKey], *, read: bool) -> list[UseRow]:
        au = s.artifact_uses
        role = au.c.role.in_(READ_ROLES) if read else au.c.role.not_in(READ_ROLES)
        wanted = set(instances)
        by_run: dict[str, set[str]] = defaultdict(set)
        for run_id, task_id, _ in wanted:
            by_run[run_id].add(task_id)
        out: list[UseRow] = []
        with self.engine.connect() as conn:
            for run_id, tasks in sorted(by_run.items()):
                for chunk in _chunks(sorted(tasks)):
                    q = select(au).where(au.c.run_id == run_id, au.c.task_id.in_(chunk), role)
                    out.extend(u for u in map(_use, conn.execute(q)) if u.instance in wanted)
        return sorted(out, key=_use_order)

    # -- task instances --------------------------------------------------------------------------

    def instances(self, keys: Iterable[InstanceKey]) -> dict[InstanceKey, InstanceInfo]:
        """The task instances of ``keys`` that exist, with their runs' pipeline, code version,
        logical date and params."""
        ti, r = s.task_instances, s.runs
        wanted = set(keys)
        by_run: dict[str, set[str]] = defaultdict(set)
        for run_id, task_id, _ in wanted:
            by_run[run_id].add(task_id)
        out: dict[InstanceKey, InstanceInfo] = {}
        cols = (
            ti.c.run_id,
            ti.c.task_id,
            ti.c.map_index,
            ti.c.state,
            ti.c.try_number,
            ti.c.output,
            r.c.pipeline,
            r.c.logical_date,
            r.c.code_hash,
            r.c.params,
            r.c.state.label("run_state"),
        )
        with self.engine.connect() as conn:
            for run_id, tasks in by_run.items():
                for chunk in _chunks(tasks):
                    q = (
                        select(*cols)
                        .join(r, r.c.run_id == ti.c.run_id)
                        .where(ti.c.run_id == run_id, ti.c.task_id.in_(chunk))
                    )
                    for row in conn.execute(q):
                        key = (row.run_id, row.task_id, row.map_index)
                        if key in wanted:
                            out[key] = InstanceInfo(
                                row.run_id,
                                row.task_id,
                                row.map_index,
                                row.state,
                                row.try_number,
                                row.output,
                                row.pipeline,
                                row.logical_date,
                                row.code_hash,
                                _json(row.params) or {},
                                row.run_state,
                            )
        return out

    def task_ids(self, run_id: str) -> Sequence[tuple[str, int]]:
        """The (task id, map index) of every instance of a run, for messages."""
        ti = s.task_instances
        q = select(ti.c.task_id, ti.c.map_index).where(ti.c.run_id == run_id)
        with self.engine.connect() as conn:
            return sorted((row.task_id, row.map_index) for row in conn.execute(q))


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _metadata_row(r: Any) -> MetadataRow:
    return MetadataRow(
        r.run_id, r.task_id, r.map_index, r.path, r.try_number, r.digest, _json(r.metadata), r.at
    )


def _artifact(r: Any) -> ArtifactRecord:
    return ArtifactRecord(r.digest, r.serializer, r.type_name, r.size, r.key)


def _use_order(u: UseRow) -> tuple[float, str, str, int, str]:
    return (u.at, u.run_id, u.task_id, u.map_index, u.digest)


def _use(r: Any) -> UseRow:
    return UseRow(r.digest, r.run_id, r.task_id, r.map_index, r.role, r.try_number, r.at)


__all__ = ["READ_ROLES", "LineageRecords"]
