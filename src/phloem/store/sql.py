"""The store: SQLAlchemy Core over a SQLite file or PostgreSQL (``MemoryStore``, in
store/memory.py, is the same over SQLite in memory).

It implements the port in store/port.py: callers speak to it in domain terms (runs, task
instances, transitions); each ``commit`` is one transaction whose task-instance updates are
compare-and-sets on (state, try_number), so a late or duplicate report can never overwrite a
newer truth. The bodies of the write transactions are in store/writes.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from phloem.config import DEFAULT_OUTAGE_TIMEOUT
from phloem.errors import RunConflict, RunNotFound, StoreError, TaskNotFound, first_line
from phloem.records import TI, Expansion, RunRecord, Transition
from phloem.states import (
    ACTIVE_TASK_STATES,
    SUCCESS_STATES,
    AttemptState,
    RunState,
)
from phloem.store import schema as s
from phloem.store.engine import HeldWriter, Writes, make_engine, send_writes, write_transaction
from phloem.store.migrate import ensure_schema
from phloem.store.opening import cannot_open
from phloem.store.port import StoreCapabilities, WorkListener
from phloem.store.prepared import Prepared
from phloem.store.resilience import opening_retrying, resilient
from phloem.store.rows import (
    run_record,
    run_row,
    ti_record,
    ti_row,
)
from phloem.store.types import (
    Applied,
    ArtifactRecord,
    ArtifactUse,
    Commit,
    RunIdTaken,
)
from phloem.store.writes import LostRace, Writer, insert_new

if TYPE_CHECKING:
    from collections.abc import Callable

    from phloem.secrets import Cipher
    from phloem.store.accounts import AccountsStore
    from phloem.store.alert_book import AlertBook
    from phloem.store.attempt_leases import AttemptLeases
    from phloem.store.breakers import BreakerBook
    from phloem.store.cache import SqlCache
    from phloem.store.catalog import Catalog
    from phloem.store.feed import EventFeed
    from phloem.store.lineage import LineageRecords
    from phloem.store.listing import Listing
    from phloem.store.models import Models
    from phloem.store.read_types import AttemptRow, EventRow
    from phloem.store.settings_store import SettingsStore
    from phloem.store.stats import StoreStats
    from phloem.store.tracking import Tracking
    from phloem.store.watermarks import Watermarks

__all__ = ["Applied", "ArtifactRecord", "ArtifactUse", "Commit", "RunIdTaken", "SqlStore"]

_TI = s.task_instances
_ACTIVE = {st.value for st in ACTIVE_TASK_STATES}


@resilient
class SqlStore:
    """Durable truth for runs, task instances, attempts, events, artifacts and pools.

    Open one with ``open_store(url)``, which also knows ``"memory"``. Each call waits out a
    database outage for at most ``outage_timeout`` seconds (store/resilience.py).
    """

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT,
    ) -> None:
        self.url = url
        self.outage_timeout = outage_timeout
        self.engine = self._make_engine(url)
        self.dialect = self.engine.dialect.name
        on_pg = self.dialect == "postgresql"
        self.capabilities = StoreCapabilities(shared=True, notify=on_pg, multi_writer=on_pg)
        self._catalog: Catalog | None = None
        self._attempt_leases: AttemptLeases | None = None
        self._accounts: AccountsStore | None = None
        self._listing: Listing | None = None
        self._cache: SqlCache | None = None
        self._lineage: LineageRecords | None = None
        self._alerts: AlertBook | None = None
        self._stats: StoreStats | None = None
        #: database errors waited out by this process's calls (store/resilience.py)
        self.waited_out = 0
        if migrate:
            try:
                opening_retrying(lambda: ensure_schema(self.engine), outage_timeout)
            except DBAPIError as exc:
                self.engine.dispose()
                raise cannot_open(url, exc) from None
        #: the run's writes on one held connection; none where the pool has only one, shared
        self._writer = None if self.single_connection else HeldWriter(self.engine)
        dialect = self.engine.dialect
        self._w = Writer(
            self.dialect, bool(dialect.supports_sane_multi_rowcount), Prepared(dialect)
        )

    # -- plumbing ------------------------------------------------------------------------------

    #: whether the engine's pool hands every checkout the same connection (``MemoryStore``)
    single_connection = False

    def _make_engine(self, url: str) -> Engine:
        return make_engine(url)

    @property
    def shared_url(self) -> str | None:
        """The URL another process opens this store with."""
        return self.url

    @property
    def catalog(self) -> Catalog:
        """Pipelines, leases and run ownership, kept in this store."""
        if self._catalog is None:
            from phloem.store.catalog import Catalog

            self._catalog = Catalog(self)
        return self._catalog

    @property
    def breakers(self) -> BreakerBook:
        """Circuit breakers kept in this store (see store/breakers.py)."""
        from phloem.store.breakers import BreakerBook

        return BreakerBook(self)

    @property
    def tracking(self) -> Tracking:
        """Metrics and parameters that tasks logged (see store/tracking.py)."""
        from phloem.store.tracking import Tracking

        return Tracking(self)

    @property
    def accounts(self) -> AccountsStore:
        """Users, tokens and sessions of the server (see store/accounts.py)."""
        if self._accounts is None:
            from phloem.store.accounts import AccountsStore

            self._accounts = AccountsStore(self)
        return self._accounts

    @property
    def feed(self) -> EventFeed:
        """Every state change in commit order (store/feed.py)."""
        from phloem.store.feed import EventFeed

        return EventFeed(self)

    @property
    def listing(self) -> Listing:
        """Runs, task instances and asset events, filtered and paged (store/listing.py)."""
        if self._listing is None:
            from phloem.store.listing import Listing

            self._listing = Listing(self)
        return self._listing

    @property
    def cache(self) -> SqlCache:
        """Task cache entries and checks (see store/cache.py)."""
        if self._cache is None:
            from phloem.store.cache import SqlCache

            self._cache = SqlCache(self)
        return self._cache

    @property
    def watermarks(self) -> Watermarks:
        """Watermarks of incremental tasks (see store/watermarks.py)."""
        from phloem.store.watermarks import Watermarks

        return Watermarks(self)

    @property
    def lineage(self) -> LineageRecords:
        """Artifact records, their uses and output metadata (see store/lineage.py)."""
        if self._lineage is None:
            from phloem.store.lineage import LineageRecords

            self._lineage = LineageRecords(self)
        return self._lineage

    @property
    def models(self) -> Models:
        """The model registry (see store/models.py)."""
        from phloem.store.models import Models

        return Models(self)

    @property
    def attempt_leases(self) -> AttemptLeases:
        """Heartbeats of running attempts (see store/attempt_leases.py)."""
        if self._attempt_leases is None:
            from phloem.store.attempt_leases import AttemptLeases

            self._attempt_leases = AttemptLeases(self)
        return self._attempt_leases

    @property
    def alerts(self) -> AlertBook:
        """Alert rules added from the command line, and alert deliveries."""
        if self._alerts is None:
            from phloem.store.alert_book import AlertBook

            self._alerts = AlertBook(self)
        return self._alerts

    @property
    def stats(self) -> StoreStats:
        """What monitoring reads: events in the order written, and things running now."""
        if self._stats is None:
            from phloem.store.stats import StoreStats

            self._stats = StoreStats(self)
        return self._stats

    def variables(self, cipher: Cipher | Callable[[bool], Cipher] | None = None) -> SettingsStore:
        """Variables and connections kept in this store."""
        from phloem.store.settings_store import SettingsStore

        return SettingsStore(self, cipher)

    def announce_work(self) -> None:
        """Wake schedulers on other machines (NOTIFY on PostgreSQL); never fails."""
        if self.capabilities.notify:
            from phloem.store.notify import announce

            announce(self.engine)

    def work_listener(self) -> WorkListener | None:
        """A LISTEN connection for ``announce_work`` (PostgreSQL), else None."""
        if not self.capabilities.notify:
            return None
        from phloem.store.notify import PgListener

        return PgListener(self.url)

    def _tx(self) -> AbstractContextManager[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        if self._writer is None:
            return write_transaction(self.engine)
        return self._writer.transaction()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.engine.dispose()

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self,
        run: RunRecord,
        instances: Sequence[TI],
        pools: dict[str, tuple[str, int]] | None = None,
        lease_ttl: float | None = None,
    ) -> RunRecord:
        """Insert a run and its first task instances atomically; a duplicate (pipeline, logical
        date) or idempotency key raises RunConflict naming the run that exists. A run created
        with an ``owner`` is leased to it for ``lease_ttl`` seconds so no scheduler takes it."""
        lease_until = run.created_at + lease_ttl if run.owner and lease_ttl else None
        try:
            with self._tx() as conn:
                conn.execute(s.runs.insert().values(run_row(run, lease_until)))
                if instances:
                    rows = [ti_row(run.run_id, ti) for ti in instances]
                    for row in rows:
                        row["pool"], row["pool_slots"] = (pools or {}).get(
                            row["task_id"], ("default", 1)
                        )
                    conn.execute(_TI.insert(), rows)
                conn.execute(
                    s.events.insert().values(
                        run_id=run.run_id,
                        new_state=run.state.value,
                        at=run.created_at,
                        reason=f"created ({run.run_type})",
                    )
                )
        except IntegrityError as exc:
            existing = self.find_run(run.pipeline, run.logical_date, run.idempotency_key)
            if existing is None or existing.run_id == run.run_id:
                if existing is not None or self._run_exists(run.run_id):
                    # the id is taken (or our own insert's outcome was lost): the caller picks
                    # a new id, or finds its run
                    raise RunIdTaken(run.run_id) from None
                raise StoreError(
                    f"could not create run {run.run_id}: {first_line(exc.orig or exc)}",
                    run=run.run_id,
                ) from exc
            which = existing.run_id
            raise RunConflict(
                f"pipeline '{run.pipeline}' already has a run for logical date "
                f"{run.logical_date}"
                + (f" / key {run.idempotency_key!r}" if run.idempotency_key else "")
                + f": {which}; use `phloem retry {which}` "
                "to resume it, or pick another logical date",
                pipeline=run.pipeline,
                run=which,
            ) from None
        return run

    def _run_exists(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            q = select(func.count()).select_from(s.runs).where(s.runs.c.run_id == run_id)
            return bool(conn.execute(q).scalar_one())

    def find_run(
        self, pipeline: str, logical_date: str | None = None, idempotency_key: str | None = None
    ) -> RunRecord | None:
        r = s.runs
        q = select(r).where(r.c.pipeline == pipeline)
        if idempotency_key is not None:
            q2 = q.where(r.c.idempotency_key == idempotency_key)
            with self.engine.connect() as conn:
                row = conn.execute(q2).mappings().first()
            if row is not None:
                return run_record(row)
        if logical_date is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(q.where(r.c.logical_date == logical_date)).mappings().first()
        return run_record(row) if row else None

    def get_run(self, run_id: str) -> RunRecord:
        like: Sequence[str] = ()
        with self.engine.connect() as conn:
            row = conn.execute(select(s.runs).where(s.runs.c.run_id == run_id)).mappings().first()
            if row is None:
                like = (
                    conn.execute(
                        select(s.runs.c.run_id)
                        .where(s.runs.c.run_id.startswith(run_id, autoescape=True))
                        .limit(2)
                    )
                    .scalars()
                    .all()
                )
        if row is None and len(like) == 1:
            # outside the first connection: on SQLite a second one would wait for its lock
            return self.get_run(like[0])
        if row is None:
            raise RunNotFound(
                f"no run '{run_id}' in the store at {self.display_url}; "
                "`phloem runs list` shows the runs there",
                run=run_id,
            )
        return run_record(row)

    def list_runs(
        self, pipeline: str | None = None, limit: int = 50, states: Iterable[RunState] = ()
    ) -> list[RunRecord]:
        r = s.runs
        q = select(r).order_by(r.c.created_at.desc()).limit(limit)
        if pipeline:
            q = q.where(r.c.pipeline == pipeline)
        wanted = [st.value for st in states]
        if wanted:
            q = q.where(r.c.state.in_(wanted))
        with self.engine.connect() as conn:
            return [run_record(row) for row in conn.execute(q).mappings()]

    def runs_by_logical_date(
        self,
        pipeline: str,
        start: str,
        end: str,
        *,
        states: Iterable[RunState] = (),
        task_succeeded: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        r = s.runs
        q = (
            select(r)
            .where(r.c.pipeline == pipeline, r.c.logical_date >= start, r.c.logical_date <= end)
            .order_by(r.c.logical_date.desc())
            .limit(limit)
        )
        wanted = [st.value for st in states]
        if wanted:
            q = q.where(r.c.state.in_(wanted))
        if task_succeeded is not None:
            q = q.where(
                select(_TI.c.run_id)
                .where(
                    _TI.c.run_id == r.c.run_id,
                    _TI.c.task_id == task_succeeded,
                    _TI.c.state.in_([st.value for st in SUCCESS_STATES]),
                )
                .exists()
            )
        with self.engine.connect() as conn:
            return [run_record(row) for row in conn.execute(q).mappings()]

    def set_run_state(self, run_id: str, old: RunState, new: RunState, now: float) -> bool:
        with self._tx() as conn:
            return self._w.set_run_state(conn, run_id, old, new, now)

    def cancel_run(self, run_id: str, reason: str, now: float) -> int:
        """End a run now, whoever drives it (see the port); retried against concurrent
        changes of its driver until every unfinished instance is failed."""
        from phloem.store.cancel import cancel_transitions

        for _ in range(20):
            with self._tx() as conn:
                row = conn.execute(select(s.runs.c.state).where(s.runs.c.run_id == run_id)).first()
                if row is None:
                    raise RunNotFound(f"no run '{run_id}'", run=run_id)
                state = RunState(row.state)
                if state.is_terminal:
                    return 0
                rows = conn.execute(select(_TI).where(_TI.c.run_id == run_id)).mappings().all()
                ts = cancel_transitions([ti_record(r) for r in rows], reason, now)
                applied = self._w.transitions(conn, run_id, ts, (), now, bulk=False)
                if not applied.lost and self._w.set_run_state(
                    conn, run_id, state, RunState.FAILED, now
                ):
                    return len({t.key for t in applied.transitions})
            # the driver changed the run meanwhile: what won stays, go again for the rest
        raise StoreError(
            f"could not cancel run {run_id}: its driver kept changing it; try again", run=run_id
        )

    # -- task instances ------------------------------------------------------------------------

    def load_instances(self, run_id: str) -> list[TI]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_TI).where(_TI.c.run_id == run_id)).mappings().all()
        return [ti_record(row) for row in rows]

    def get_instance(self, run_id: str, task_id: str, map_index: int = -1) -> TI:
        q = select(_TI).where(
            _TI.c.run_id == run_id, _TI.c.task_id == task_id, _TI.c.map_index == map_index
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            where = f"[{map_index}]" if map_index >= 0 else ""
            raise TaskNotFound(
                f"run {run_id} has no task instance '{task_id}{where}'", run=run_id, task=task_id
            )
        return ti_record(row)

    def commit(
        self,
        run_id: str,
        transitions: Sequence[Transition],
        *,
        expansions: Sequence[Expansion] = (),
        run_state: tuple[RunState, RunState] | None = None,
        now: float | None = None,
        artifacts: Sequence[ArtifactRecord] = (),
        uses: Sequence[ArtifactUse] = (),
        asset_outputs: Mapping[str, tuple[str, ...]] | None = None,
    ) -> Applied:
        """Apply one decision in one transaction. Compare-and-sets that lose are reported in
        ``Applied.lost`` and change nothing (nor do later transitions of the same key)."""
        req = Commit(
            run_id,
            tuple(transitions),
            tuple(expansions),
            run_state,
            tuple(artifacts),
            tuple(uses),
            asset_outputs,
        )
        return self.commit_many([req], now=now)[0]

    def commit_many(self, requests: Sequence[Commit], now: float | None = None) -> list[Applied]:
        """Apply the decisions of many runs in one transaction (one loop turn, one commit).

        If any compare-and-set loses, the transaction is rolled back and each run's decision
        is applied on its own, row by row, to learn exactly which changes lost."""
        now = time.time() if now is None else now
        try:
            with self._tx() as conn:
                later: Writes = []
                out = [self._w.apply_commit(conn, r, now, bulk=True, later=later) for r in requests]
                # the attempts and events, and the COMMIT: one round trip on PostgreSQL
                send_writes(conn, later, commit=True, prepared=self._w.prepared)
            return out
        except LostRace:
            out = []
            for r in requests:
                with self._tx() as conn:
                    later = []
                    out.append(self._w.apply_commit(conn, r, now, bulk=False, later=later))
                    send_writes(conn, later, commit=True, prepared=self._w.prepared)
            return out

    def add_instances(
        self, run_id: str, instances: Sequence[TI], pools: dict[str, tuple[str, int]]
    ) -> None:
        """Add instances of tasks a pipeline gained after the run began (skipping any another
        driver added at the same moment)."""
        rows = [ti_row(run_id, ti) for ti in instances]
        for row in rows:
            row["pool"], row["pool_slots"] = pools.get(row["task_id"], ("default", 1))
        with self._tx() as conn:
            conn.execute(insert_new(self.dialect, _TI), rows)

    def reopen_run(
        self,
        run_id: str,
        resets: Sequence[tuple[TI, TI]],
        placeholders: Sequence[TI],
        reason: str,
        now: float,
        *,
        state: RunState = RunState.RUNNING,
        batch: str | None = None,
        batch_limit: int | None = None,
    ) -> int:
        """Reset instances, put mapped tasks back to their placeholders, and make a finished
        run that has work left running again (or ``state``), all in one transaction: a crash
        half-way leaves the run as it was, never finished with work left to do. Returns how
        many instances changed."""
        with self._tx() as conn:
            ts = [Transition(old, new, reason) for old, new in resets]
            applied = self._w.transitions(conn, run_id, ts, (), now, bulk=False)
            for placeholder in placeholders:
                self._w.replace_mapped(conn, run_id, placeholder, now)
            current = conn.execute(select(s.runs.c.state).where(s.runs.c.run_id == run_id)).scalar()
            changed = len({t.key for t in applied.transitions}) + len(placeholders)
            # a run finished with work left (e.g. written by an older version) opens too
            if (
                current is not None
                and RunState(current).is_terminal
                and self._w.work_left(conn, run_id)
            ):
                self._w.set_run_state(conn, run_id, RunState(current), state, now)
                if batch is not None:
                    conn.execute(
                        s.runs.update()
                        .where(s.runs.c.run_id == run_id)
                        .values(batch=batch, batch_limit=batch_limit)
                    )
        return changed

    # -- history -------------------------------------------------------------------------------

    def events(self, run_id: str) -> list[EventRow]:
        from phloem.store.read_types import EventRow

        e = s.events
        q = select(e).where(e.c.run_id == run_id).order_by(e.c.id)
        with self.engine.connect() as conn:
            return [
                EventRow(
                    r.task_id, r.map_index, r.try_number, r.old_state, r.new_state, r.at, r.reason
                )
                for r in conn.execute(q)
            ]

    def attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRow]:
        from phloem.store.read_types import AttemptRow

        a = s.attempts
        q = select(a).where(a.c.run_id == run_id)
        if task_id is not None:
            q = q.where(a.c.task_id == task_id)
        q = q.order_by(a.c.task_id, a.c.map_index, a.c.try_number)
        with self.engine.connect() as conn:
            return [
                AttemptRow(
                    r.task_id,
                    r.map_index,
                    r.try_number,
                    AttemptState(r.state),
                    r.queued_at,
                    r.started_at,
                    r.ended_at,
                    r.error,
                    r.worker,
                    r.cpu_seconds,
                    r.peak_rss,
                    r.memory_limit,
                    r.gpu_seconds,
                )
                for r in conn.execute(q)
            ]

    def artifact(self, digest: str) -> ArtifactRecord | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(s.artifacts).where(s.artifacts.c.digest == digest)).first()
        return ArtifactRecord(r.digest, r.serializer, r.type_name, r.size, r.key) if r else None

    def artifact_uses(self, run_id: str) -> list[ArtifactUse]:
        au = s.artifact_uses
        with self.engine.connect() as conn:
            rows = conn.execute(select(au).where(au.c.run_id == run_id)).all()
        return [ArtifactUse(r.digest, r.task_id, r.map_index, r.role, r.try_number) for r in rows]

    # -- pools ---------------------------------------------------------------------------------

    def pools(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.name: r.slots for r in conn.execute(select(s.pools))}

    def set_pool(self, name: str, slots: int, description: str | None = None) -> None:
        if slots < 0:
            raise StoreError(f"pool '{name}' cannot have a negative size ({slots})")
        p = s.pools
        with self._tx() as conn:
            res = conn.execute(
                p.update().where(p.c.name == name).values(slots=slots, description=description)
            )
            if res.rowcount == 0:
                conn.execute(
                    insert_new(self.dialect, p).values(
                        name=name, slots=slots, description=description
                    )
                )

    def pool_usage(self, exclude_runs: Iterable[str] = ()) -> dict[str, int]:
        """Pool slots held by queued and running instances across all runs."""
        q = (
            select(_TI.c.pool, func.sum(_TI.c.pool_slots))
            .where(_TI.c.state.in_(sorted(_ACTIVE)))
            .group_by(_TI.c.pool)
        )
        excluded = list(exclude_runs)
        if excluded:
            q = q.where(_TI.c.run_id.not_in(excluded))
        with self.engine.connect() as conn:
            return {pool: int(n) for pool, n in conn.execute(q)}

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)
