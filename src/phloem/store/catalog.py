"""What the scheduler keeps besides runs: known pipelines and their versions, import errors,
leases (who drives what), and asset events. Domain terms only; SQL stays in here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from phloem.errors import PhloemError, PipelineNotFound
from phloem.records import RunRecord
from phloem.states import RunState, RunType
from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient, single_try
from phloem.store.rows import run_record
from phloem.store.writes import insert_new

if TYPE_CHECKING:
    from phloem.store.read_types import PipelineInfo, PipelineRow

_ACTIVE_RUN_STATES = (RunState.QUEUED.value, RunState.RUNNING.value)
_ENDED_RUN_STATES = tuple(st.value for st in RunState if st.is_terminal)
#: runs that fill a time slot of their schedule
_TIMED_RUNS = (RunType.SCHEDULED.value, RunType.BACKFILL.value)


@resilient
class Catalog:
    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine
        self.dialect = store.engine.dialect.name

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    # -- pipelines ----------------------------------------------------------------------------

    def sync_file(self, file: str, found: Sequence[PipelineInfo], now: float) -> list[str]:
        """Record what ``file`` defines now; pipelines it no longer defines become inactive.
        Returns the names whose code changed (new versions)."""
        p = s.pipelines
        changed = []
        with write_transaction(self.engine) as conn:
            current = {r.name: r for r in conn.execute(select(p).where(p.c.file == file))}
            for info in found:
                row = _pipeline_row(info, now)
                existing = conn.execute(select(p).where(p.c.name == info.name)).first()
                if existing is None:
                    # another scheduler may register it at the same moment: first one wins
                    ins = insert_new(self.dialect, p)
                    conn.execute(ins.values({**row, "paused": 0, "active": 1}))
                    changed.append(info.name)
                else:
                    if existing.code_hash != info.code_hash or not existing.active:
                        changed.append(info.name)
                    conn.execute(
                        p.update().where(p.c.name == info.name).values({**row, "active": 1})
                    )
                self._version(conn, info, now)
            gone = set(current) - {i.name for i in found}
            if gone:
                conn.execute(p.update().where(p.c.name.in_(gone)).values(active=0, updated_at=now))
            conn.execute(s.import_errors.delete().where(s.import_errors.c.file == file))
        return changed

    def _version(self, conn: Connection, info: PipelineInfo, now: float) -> None:
        conn.execute(
            insert_new(self.dialect, s.pipeline_versions).values(
                pipeline=info.name, code_hash=info.code_hash, file=info.file, first_seen_at=now
            )
        )

    def file_removed(self, file: str, now: float) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                s.pipelines.update()
                .where(s.pipelines.c.file == file)
                .values(active=0, updated_at=now)
            )
            conn.execute(s.import_errors.delete().where(s.import_errors.c.file == file))

    def import_failed(self, file: str, error: str, now: float) -> None:
        """Keep the file's pipelines as they were (the last good version keeps running) and
        record why the new version could not be read."""
        ie = s.import_errors
        with write_transaction(self.engine) as conn:
            conn.execute(ie.delete().where(ie.c.file == file))
            conn.execute(ie.insert().values(file=file, error=error, at=now))

    def import_errors(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.file: r.error for r in conn.execute(select(s.import_errors))}

    def pipelines(self, *, active_only: bool = False) -> list[PipelineRow]:
        q = select(s.pipelines).order_by(s.pipelines.c.name)
        if active_only:
            q = q.where(s.pipelines.c.active == 1)
        with self.engine.connect() as conn:
            return [_pipeline(r) for r in conn.execute(q)]

    def pipeline(self, name: str) -> PipelineRow:
        with self.engine.connect() as conn:
            r = conn.execute(select(s.pipelines).where(s.pipelines.c.name == name)).first()
            if r is None:
                names = list(conn.execute(select(s.pipelines.c.name)).scalars())
        if r is None:
            import difflib

            close = difflib.get_close_matches(name, names, n=1)
            hint = (
                f"; did you mean '{close[0]}'?"
                if close
                else (
                    "; the scheduler registers pipelines from its folder "
                    "(`phloem pipelines list` shows them)"
                )
            )
            raise PipelineNotFound(f"unknown pipeline '{name}'{hint}", pipeline=name)
        return _pipeline(r)

    def set_paused(self, name: str, paused: bool, now: float) -> None:
        self.pipeline(name)
        with write_transaction(self.engine) as conn:
            conn.execute(
                s.pipelines.update()
                .where(s.pipelines.c.name == name)
                .values(paused=int(paused), updated_at=now)
            )

    def versions(self, name: str) -> list[tuple[str, float]]:
        v = s.pipeline_versions
        q = select(v.c.code_hash, v.c.first_seen_at).where(v.c.pipeline == name)
        with self.engine.connect() as conn:
            return [(h, t) for h, t in conn.execute(q.order_by(v.c.first_seen_at))]

    # -- leases -------------------------------------------------------------------------------

    def acquire(
        self, name: str, holder: str, ttl: float, now: float, *, take_from: str | None = None
    ) -> str | None:
        """Take or renew lease ``name``; returns None on success, else the current holder.
        ``take_from`` names a holder known to be dead, whose lease may be taken at once."""
        le = s.leases
        free = [le.c.holder == holder, le.c.expires_at < now]
        if take_from is not None:
            free.append(le.c.holder == take_from)
        with write_transaction(self.engine) as conn:
            res = conn.execute(
                le.update()
                .where(le.c.name == name, or_(*free))
                .values(holder=holder, expires_at=now + ttl)
            )
            if res.rowcount == 1:
                return None
            row = conn.execute(select(le).where(le.c.name == name)).first()
            if row is not None:
                return str(row.holder)
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(le.insert().values(name=name, holder=holder, expires_at=now + ttl))
            return None
        except IntegrityError:
            with self.engine.connect() as conn:
                row = conn.execute(select(le).where(le.c.name == name)).first()
            return str(row.holder) if row is not None else "another process"

    def release(self, name: str, holder: str) -> None:
        le = s.leases
        with write_transaction(self.engine) as conn:
            conn.execute(le.delete().where(le.c.name == name, le.c.holder == holder))

    # -- run ownership --------------------------------------------------------------------------

    def claim_runs(
        self,
        owner: str,
        ttl: float,
        now: float,
        limit: int,
        skip: Iterable[str] = (),
        take_from: Iterable[str] = (),
    ) -> list[RunRecord]:
        """Runs nobody drives (never claimed, or their driver's lease ran out), oldest first;
        ``take_from`` names drivers known to be dead, whose runs are taken before their leases
        run out.

        On PostgreSQL several schedulers claim at once: ``FOR UPDATE SKIP LOCKED`` hands each
        run to exactly one of them.
        """
        r = s.runs
        free = [r.c.owner.is_(None), r.c.lease_expires_at < now, r.c.owner == owner]
        dead = list(take_from)
        if dead:
            free.append(r.c.owner.in_(dead))
        q = (
            select(r)
            .where(
                r.c.state.in_(_ACTIVE_RUN_STATES),
                or_(*free),
                _may_start(r),
            )
            .order_by(r.c.created_at)
        )
        skipped = list(skip)  # runs this driver drives already, or left alone for now
        if skipped:
            q = q.where(r.c.run_id.not_in(skipped))
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True, of=r)
        with write_transaction(self.engine) as conn:
            rows: list[Any] = []
            taken = _Taken()
            page = max(4 * limit, 32)
            for n in range(10):  # a page of waiting runs may all be at their limits
                batch = conn.execute(q.limit(page).offset(n * page)).mappings().all()
                rows += self._within_limits(conn, batch, taken)[: limit - len(rows)]
                if len(rows) >= limit or len(batch) < page:
                    break
            ids = [row["run_id"] for row in rows]
            if ids:
                conn.execute(
                    r.update()
                    .where(r.c.run_id.in_(ids))
                    .values(owner=owner, lease_expires_at=now + ttl)
                )
        return [run_record(row) for row in rows]

    def _within_limits(self, conn: Connection, rows: Sequence[Any], taken: _Taken) -> list[Any]:
        """Queued runs start only while their pipeline has fewer than ``max_active_runs``
        running (and their backfill batch fewer than its limit), counting the runs this claim
        takes; runs already running are always taken (to resume them)."""
        r, p = s.runs, s.pipelines
        queued = [row for row in rows if row["state"] == RunState.QUEUED.value]
        running, limits, in_batch = taken.running, taken.limits, taken.in_batch
        names = {row["pipeline"] for row in queued} - set(limits)
        if names:
            running.update(
                conn.execute(
                    select(r.c.pipeline, func.count())
                    .where(r.c.pipeline.in_(names), r.c.state == RunState.RUNNING.value)
                    .group_by(r.c.pipeline)
                ).all()
            )
            limits.update({n: 16 for n in names})
            limits.update(
                conn.execute(select(p.c.name, p.c.max_active_runs).where(p.c.name.in_(names))).all()
            )
        batches = {row["batch"] for row in queued if row["batch"] and row["batch_limit"]}
        batches -= set(taken.batches_seen)
        if batches:
            taken.batches_seen |= batches
            in_batch.update(
                conn.execute(
                    select(r.c.batch, func.count())
                    .where(r.c.batch.in_(batches), r.c.state == RunState.RUNNING.value)
                    .group_by(r.c.batch)
                ).all()
            )
        out = []
        for row in rows:
            name, batch = row["pipeline"], row["batch"]
            if row["state"] == RunState.QUEUED.value:
                if running.get(name, 0) >= limits.get(name, 16):
                    continue
                if batch and row["batch_limit"]:
                    if in_batch.get(batch, 0) >= row["batch_limit"]:
                        continue
                    in_batch[batch] = in_batch.get(batch, 0) + 1
                running[name] = running.get(name, 0) + 1
            out.append(row)
        return out

    def claim_run(
        self, run_id: str, owner: str, ttl: float, now: float, *, take_from: str | None = None
    ) -> str | None:
        """Take one run (to resume it); returns None, or who drives it now. ``take_from``
        names a holder known to be dead, whose lease may be taken before it expires."""
        r = s.runs
        free = [r.c.owner.is_(None), r.c.lease_expires_at < now, r.c.owner == owner]
        if take_from is not None:
            free.append(r.c.owner == take_from)
        with write_transaction(self.engine) as conn:
            res = conn.execute(
                r.update()
                .where(r.c.run_id == run_id, or_(*free))
                .values(owner=owner, lease_expires_at=now + ttl)
            )
            if res.rowcount == 1:
                return None
            holder = conn.execute(select(r.c.owner).where(r.c.run_id == run_id)).scalar()
        return str(holder)

    @single_try
    def renew_runs(self, owner: str, run_ids: Iterable[str], ttl: float, now: float) -> set[str]:
        """Extend ``owner``'s leases; returns the runs it still owns (others were taken).
        Tried once: the lease keeper decides when failures mean the leases are lost."""
        ids = list(run_ids)
        if not ids:
            return set()
        r = s.runs
        with write_transaction(self.engine) as conn:
            conn.execute(
                r.update()
                .where(r.c.run_id.in_(ids), r.c.owner == owner)
                .values(lease_expires_at=now + ttl)
            )
            kept = conn.execute(
                select(r.c.run_id).where(r.c.run_id.in_(ids), r.c.owner == owner)
            ).scalars()
            return set(kept)

    @single_try
    def ended_runs(self, run_ids: Iterable[str]) -> set[str]:
        """Of these runs, those that have ended: another process may end a run while its
        driver still drives it (``phloem cancel``). Tried once: a driver asks again soon."""
        ids = list(run_ids)
        if not ids:
            return set()
        r = s.runs
        with self.engine.connect() as conn:
            ended = r.c.state.in_(_ENDED_RUN_STATES)
            rows = conn.execute(select(r.c.run_id).where(r.c.run_id.in_(ids), ended))
            return set(rows.scalars())

    def release_runs(self, owner: str, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        if ids:
            r = s.runs
            with write_transaction(self.engine) as conn:
                conn.execute(
                    r.update()
                    .where(r.c.run_id.in_(ids), r.c.owner == owner)
                    .values(owner=None, lease_expires_at=None)
                )

    # -- scheduling facts -----------------------------------------------------------------------

    def last_scheduled_many(self, pipelines: Sequence[str]) -> dict[str, str]:
        """The newest logical date of a scheduled or backfill run of each pipeline (one
        grouped query per 500 pipelines)."""
        r = s.runs
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(pipelines), 500):
                chunk = list(pipelines[i : i + 500])
                q = (
                    select(r.c.pipeline, func.max(r.c.logical_date))
                    .where(r.c.pipeline.in_(chunk), r.c.run_type.in_(_TIMED_RUNS))
                    .group_by(r.c.pipeline)
                )
                out.update({p: d for p, d in conn.execute(q)})
        return out

    def paused(self) -> set[str]:
        q = select(s.pipelines.c.name).where(s.pipelines.c.paused == 1)
        with self.engine.connect() as conn:
            return set(conn.execute(q).scalars())

    def last_asset_event(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(s.asset_events.c.id))).scalar() or 0)

    def active_runs(self) -> dict[str, int]:
        r = s.runs
        q = (
            select(r.c.pipeline, func.count())
            .where(r.c.state.in_(_ACTIVE_RUN_STATES))
            .group_by(r.c.pipeline)
        )
        with self.engine.connect() as conn:
            return {p: int(n) for p, n in conn.execute(q)}

    def runs_between(self, pipeline: str, start: str, end: str) -> dict[str, RunRecord]:
        r = s.runs
        q = select(r).where(
            r.c.pipeline == pipeline, r.c.logical_date >= start, r.c.logical_date <= end
        )
        with self.engine.connect() as conn:
            return {row["logical_date"]: run_record(row) for row in conn.execute(q).mappings()}

    # -- assets -------------------------------------------------------------------------------

    def assets_ready(self, pipeline: str, assets: Sequence[str]) -> dict[str, int] | None:
        """The newest event id per asset if every asset was updated since ``pipeline`` last
        consumed it, else None."""
        ev, wm = s.asset_events, s.asset_watermarks
        with self.engine.connect() as conn:
            latest = dict(
                conn.execute(
                    select(ev.c.asset, func.max(ev.c.id))
                    .where(ev.c.asset.in_(list(assets)))
                    .group_by(ev.c.asset)
                ).all()
            )
            seen = dict(
                conn.execute(
                    select(wm.c.asset, wm.c.last_event_id).where(wm.c.pipeline == pipeline)
                ).all()
            )
        if any(latest.get(a) is None or latest[a] <= seen.get(a, 0) for a in assets):
            return None
        return {a: int(latest[a]) for a in assets}

    def consume_assets(self, pipeline: str, seen: dict[str, int]) -> bool:
        """Advance the watermarks only if nobody else did (so two schedulers make one run)."""
        wm = s.asset_watermarks
        with write_transaction(self.engine) as conn:
            for asset, event_id in seen.items():
                res = conn.execute(
                    wm.update()
                    .where(
                        and_(
                            wm.c.pipeline == pipeline,
                            wm.c.asset == asset,
                            wm.c.last_event_id < event_id,
                        )
                    )
                    .values(last_event_id=event_id)
                )
                if res.rowcount == 1:
                    continue
                exists = conn.execute(
                    select(func.count())
                    .select_from(wm)
                    .where(wm.c.pipeline == pipeline, wm.c.asset == asset)
                ).scalar_one()
                if exists:
                    conn.rollback()
                    return False
                # RETURNING, not rowcount: psycopg reports -1 for ON CONFLICT DO NOTHING
                made = conn.execute(
                    insert_new(self.dialect, wm)
                    .values(pipeline=pipeline, asset=asset, last_event_id=event_id)
                    .returning(wm.c.asset)
                ).first()
                if made is None:  # another scheduler consumed it first
                    conn.rollback()
                    return False
        return True


@dataclass
class _Taken:
    """What one claim has counted and taken so far, across the pages it reads."""

    running: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    in_batch: dict[str, int] = field(default_factory=dict)
    batches_seen: set[str] = field(default_factory=set)


def _may_start(r: Any) -> Any:
    """Runs already running, or queued runs whose pipeline (and backfill batch) have room:
    filtered in SQL, so a long queue of waiting backfill runs cannot hide the runs behind it
    from the claim's LIMIT."""
    other = s.runs.alias("other")
    running = RunState.RUNNING.value
    in_pipeline = (
        select(func.count())
        .select_from(other)
        .where(other.c.pipeline == r.c.pipeline, other.c.state == running)
        .scalar_subquery()
    )
    pipeline_limit = func.coalesce(
        select(s.pipelines.c.max_active_runs)
        .where(s.pipelines.c.name == r.c.pipeline)
        .scalar_subquery(),
        16,
    )
    in_batch = (
        select(func.count())
        .select_from(other)
        .where(other.c.batch == r.c.batch, other.c.state == running)
        .scalar_subquery()
    )
    return or_(
        r.c.state == running,
        and_(
            in_pipeline < pipeline_limit,
            or_(r.c.batch.is_(None), r.c.batch_limit.is_(None), in_batch < r.c.batch_limit),
        ),
    )


def _pipeline_row(info: PipelineInfo, now: float) -> dict[str, object]:
    return {
        "name": info.name,
        "file": info.file,
        "code_hash": info.code_hash,
        "schedule": info.schedule,
        "timezone": info.timezone,
        "start_date": info.start_date,
        "catchup": int(info.catchup),
        "max_active_runs": info.max_active_runs,
        "assets": json.dumps(list(info.assets)) if info.assets else None,
        "owner": info.owner,
        "tags": json.dumps(list(info.tags)) if info.tags else None,
        "description": info.description,
        "last_parsed_at": now,
        "updated_at": now,
    }


def _pipeline(r: Any) -> PipelineRow:
    from phloem.store.read_types import PipelineInfo, PipelineRow

    info = PipelineInfo(
        name=r.name,
        file=r.file,
        code_hash=r.code_hash,
        schedule=r.schedule,
        timezone=r.timezone,
        start_date=r.start_date,
        catchup=bool(r.catchup),
        max_active_runs=r.max_active_runs,
        assets=tuple(json.loads(r.assets)) if r.assets else (),
        owner=r.owner,
        tags=tuple(json.loads(r.tags)) if r.tags else (),
        description=r.description,
    )
    return PipelineRow(info, bool(r.paused), bool(r.active), r.last_parsed_at)


def __getattr__(name: str) -> Any:
    """``PipelineInfo`` and ``PipelineRow``, made when first asked for (see ``read_types``)."""
    if name in ("PipelineInfo", "PipelineRow"):
        from phloem.store import read_types

        return getattr(read_types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Catalog", "PhloemError", "PipelineInfo", "PipelineRow"]
