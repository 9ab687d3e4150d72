"""``phloem scheduler``: discover pipelines, create the runs their triggers ask for, and drive
every run it claims with the same engine as ``phloem run``.

Several schedulers may share a PostgreSQL store: runs are claimed with leases
(``FOR UPDATE SKIP LOCKED``), one run per (pipeline, logical date) is guaranteed by a unique
constraint, and a scheduler that dies leaves its runs to the others once its leases expire.
On SQLite one scheduler holds the store; a second is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from phloem.app import Phloem
from phloem.config import Settings
from phloem.driver import DEFAULT_TTL, LeaseKeeper, Loop, RunSession, holder_id
from phloem.driver.leases import is_dead_local
from phloem.driver.loop import BROKEN_BACKOFF
from phloem.driver.timings import Durations
from phloem.dsl.spec import PipelineSpec
from phloem.errors import PhloemError, PoolNotFound, RunConflict, StoreLocked
from phloem.executors import Executor
from phloem.loading import reload_pipeline
from phloem.records import RunRecord
from phloem.runs import create_run
from phloem.scheduler.discovery import Changes, Discovery
from phloem.scheduler.parsing import ParserPool
from phloem.scheduler.reading import Reader, ReadResult, SpecLoader, Wakeup
from phloem.scheduler.triggers import due_runs, next_due, parse_time, schedule_of
from phloem.scheduler.wakeup import WakeListener
from phloem.schedules import Continuous, Schedule
from phloem.states import DriverRole, ExecutorKind, RunType
from phloem.store.port import WorkListener
from phloem.store.types import PipelineInfo

log = logging.getLogger("phloem.scheduler")

#: how often a scheduler publishes its own figures (loop durations, database waits)
PUBLISH_EVERY = 10.0

#: the lease one scheduler holds on a store that takes a single writer (SQLite)
SQLITE_LEASE = "sqlite-scheduler"


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    folder: Path
    parse_interval: float = 10.0
    parse_timeout: float = 30.0
    lease_ttl: float = DEFAULT_TTL
    tick: float = 0.5  # how often triggers and new runs are looked at
    parallelism: int | None = None
    max_runs: int = 256  # runs driven at once by this scheduler

    @classmethod
    def from_settings(
        cls, settings: Settings, folder: Path | None = None, **overrides: Any
    ) -> SchedulerConfig:
        """The folder, parallelism and lease time of ``settings`` (``PHLOEM_PIPELINES``,
        ``PHLOEM_PARALLELISM``, ``PHLOEM_LEASE_TTL``); arguments that are not None win."""
        values: dict[str, Any] = {
            "folder": (folder or settings.pipelines_dir).resolve(),
            "parallelism": settings.parallelism,
            "lease_ttl": settings.lease_ttl,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Scheduler:
    def __init__(
        self,
        app: Phloem,
        config: SchedulerConfig,
        executor: Executor | ExecutorKind | str | None = None,
        scheduler_id: str | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.catalog = app.store.catalog
        self.single = not app.store.capabilities.multi_writer  # one scheduler holds the store
        self.id = scheduler_id or holder_id(DriverRole.SCHEDULER)
        self.executor = app.executor(executor)
        self.pool = ParserPool(workers=min(2, app.workers), timeout=config.parse_timeout)
        self.discovery = Discovery(config.folder, self.catalog, self.pool)
        # pipeline files are read off the loop thread: a hanging file never pauses runs
        self.wakeup = Wakeup()
        self.reader = Reader(self.discovery, self.wakeup)
        self.loader = SpecLoader(
            lambda source: self._load(source), self.wakeup, config.parse_timeout
        )
        #: runs left unclaimed while their pipeline's file is imported: run id -> source
        self._importing: dict[str, str] = {}
        self.keeper = LeaseKeeper(
            self.catalog,
            self.id,
            config.lease_ttl,
            also=self._keep_sqlite_lease if self.single else None,
        )
        self.loop: Loop | None = None
        #: how long each turn of its loop worked; published to the store for ``/metrics``
        self.durations = Durations()
        self._next_publish = 0.0
        self._specs: dict[tuple[str, str], PipelineSpec] = {}
        self._first_seen: dict[str, datetime] = {}
        self._next_parse = 0.0
        self._next_due: dict[str, float] = {}
        self._schedules: dict[tuple[str, str, str], Schedule | None] = {}
        self._asset_mark = -1
        self._next_tick = 0.0
        self._stop = threading.Event()
        #: schedulers killed on this machine whose lock we took: their runs are ours at once
        self._dead_holders: set[str] = set()
        self.wakers: list[WorkListener] = [self.wakeup]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.single:
            now = time.time()
            holder = self.catalog.acquire(SQLITE_LEASE, self.id, self.config.lease_ttl, now)
            if holder is not None and is_dead_local(holder):
                # killed without a chance to let go; its process is gone from this machine
                log.warning("taking the SQLite scheduler lock from %s, which is gone", holder)
                dead, holder = (
                    holder,
                    self.catalog.acquire(
                        SQLITE_LEASE, self.id, self.config.lease_ttl, now, take_from=holder
                    ),
                )
                if holder is None:
                    self._dead_holders.add(dead)  # its runs too, without waiting for leases
            if holder is not None:
                raise StoreLocked(
                    f"another scheduler ({holder}) already runs on this store "
                    f"({self.app.store.display_url}), which takes one scheduler; run one "
                    "scheduler per SQLite database, or use PostgreSQL (PHLOEM_DB_URL) to run "
                    "several"
                )
        if self.app.home is not None:
            try:
                self.wakers.append(WakeListener(self.app.home, self.id))
            except OSError as exc:  # an optional speed-up must not stop the service
                log.warning("no wake-up socket (%s); triggers are seen at the next tick", exc)
        if self.app.store.capabilities.notify:
            try:
                listener = self.app.store.work_listener()
                if listener is not None:
                    self.wakers.append(listener)
            except Exception as exc:
                log.warning("no LISTEN connection (%s); triggers are seen at the next tick", exc)
        self.executor.start({}, self.app.artifacts)
        self.loop = Loop(
            self.executor,
            pools=self.app.store.pools(),
            parallelism=self.config.parallelism,
            keeper=self.keeper,
            isolate=True,
            durations=self.durations,
        )
        self.keeper.start()
        self.app.alerting.start()  # pending alerts, also those other processes left

    @property
    def _has_assets(self) -> bool:
        return any(i.assets for i in self.discovery.pipelines.values())

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Stop driving: attempts in flight are stopped and their runs left resumable."""
        loop = self.loop
        try:
            self.app.alerting.sender.stop()
            self.keeper.stop()
            self.executor.shutdown()
            if loop is not None:
                driven = list(loop.sessions)
                for run_id in driven:
                    loop.drop(run_id)
                # let other schedulers take these runs now, not when the leases run out
                self.keeper.release(driven)
        finally:
            self.pool.close()  # stops a parse under way, so the reader's thread ends
            self.reader.wait(timeout=5)
            for w in self.wakers:
                w.close()
            if self.single:
                self.catalog.release(SQLITE_LEASE, self.id)

    def run(self, until: float | None = None) -> None:
        """Serve until ``stop()`` (or Ctrl-C), or until the clock passes ``until``.

        Nothing a pipeline or the database does ends the service: a failing turn is logged
        and retried with backoff."""
        try:
            self.start()
            backoff = 0.0
            while not self._stop.is_set() and (until is None or time.time() < until):
                try:
                    self.step()
                    backoff = 0.0
                except Exception:
                    backoff = min(max(backoff * 2, 0.5), 30.0)
                    log.exception("scheduler turn failed; trying again in %.1fs", backoff)
                    self._stop.wait(backoff)
        finally:
            self.shutdown()

    # -- one turn -------------------------------------------------------------------------------

    def step(self) -> None:
        assert self.loop is not None, "call start() first"
        now = time.time()
        ended = self.loop.take_finished()
        self._take_read(now)
        if now >= self._next_parse and self.reader.start():
            self._next_parse = float("inf")  # until this read is absorbed
        if now >= self._next_tick:
            if self.single:
                self._keep_sqlite_lease(now)
            self.schedule(now)
            self.claim(now)
            self._refresh_pools()
            self._check_deadlines()
            self._publish(now)
            self._next_tick = now + self.config.tick
        elif ended:
            self.claim(now)  # a run just ended: take the next one now, not at the next tick
        wait = max(0.0, min(self._next_tick, self._next_parse) - time.time())
        self.loop.turn(max_wait=wait, waker=[w for w in self.wakers if w.usable()])
        self._take_read(time.time())  # a read that ended while the loop waited: use it now
        if any([w.drain() for w in self.wakers]):  # drain them all, not just the first
            self._next_tick = 0.0  # a run was queued: look now

    def _publish(self, now: float) -> None:
        """This scheduler's own figures (loop durations, database waits) into the store
        every ``PUBLISH_EVERY`` seconds, where a server in another process reads them."""
        if now < self._next_publish:
            return
        self._next_publish = now + PUBLISH_EVERY
        store = self.app.store
        buckets, total, _ = self.durations.snapshot()
        try:
            store.stats.publish(self.id, "scheduler", buckets, total, store.waited_out, now)
        except Exception as exc:  # figures must never stop the scheduler
            log.warning("could not publish the scheduler's figures: %s", exc)

    def _check_deadlines(self) -> None:
        """Runs that missed a deadline rule though nobody drives them now (cheap: at most
        one query per pipeline with a deadline rule, every 30 seconds)."""
        latest = {spec.name: spec for spec in self._specs.values()}  # those imported here
        self.app.alerting.check_deadlines(latest.values())

    def _refresh_pools(self) -> None:
        """Pool sizes may change (`phloem pools set`) and other schedulers hold slots too."""
        assert self.loop is not None
        elsewhere = None
        if not self.single:  # else this scheduler drives every run
            elsewhere = self.app.store.pool_usage(exclude_runs=list(self.loop.sessions))
        self.loop.set_pools(self.app.store.pools(), elsewhere)

    def _keep_sqlite_lease(self, now: float) -> None:
        holder = self.catalog.acquire(SQLITE_LEASE, self.id, self.config.lease_ttl, now)
        if holder is not None:
            log.error("lost the SQLite scheduler lease to %s; stopping", holder)
            self.stop()

    def refresh(self, now: float) -> None:
        """Read the folder now, on this thread (``step`` reads it in the background)."""
        read = self.reader.wait()
        if read is not None:
            self._absorb(read, now)
        self._changed(self.discovery.refresh(now), now)

    def _take_read(self, now: float) -> None:
        read = self.reader.take()
        if read is not None:
            self._absorb(read, now)

    def _absorb(self, read: ReadResult, now: float) -> None:
        if read.error is not None or read.scan is None:
            log.error("reading the pipelines folder failed: %s", read.error)
            self._next_parse = now + self.config.parse_interval
            return
        self._changed(self.discovery.apply(read.scan, read.reports, now), now)

    def _changed(self, changes: Changes, now: float) -> None:
        for name in changes.changed_pipelines:
            log.info("pipeline %s: new version", name)
            self._next_due.pop(name, None)  # its schedule may have changed
        for info in self.discovery.pipelines.values():
            self._first_seen.setdefault(info.name, datetime.fromtimestamp(now, timezone.utc))
        self._next_parse = now + self.config.parse_interval

    # -- triggers -------------------------------------------------------------------------------

    def schedule(self, now: float) -> int:
        """Create the runs that time, continuity and assets ask for. Returns how many.

        Cheap when nothing is due: each pipeline remembers when it next needs attention, so
        a tick over 10,000 pipelines looks at the few whose time came, with one grouped query.
        """
        pipelines = self.discovery.pipelines
        paused = self.catalog.paused()
        asset_mark = self.catalog.last_asset_event() if self._has_assets else 0
        assets_moved = asset_mark != self._asset_mark
        due = [
            name
            for name, info in pipelines.items()
            if name not in paused
            and (self._next_due.get(name, 0.0) <= now or (info.assets and assets_moved))
        ]
        if not due:
            return 0
        self._asset_mark = asset_mark
        active = self.catalog.active_runs()
        timed = [n for n in due if pipelines[n].schedule]
        lasts = self.catalog.last_scheduled_many(timed) if timed else {}
        at = datetime.fromtimestamp(now, timezone.utc)
        created = 0
        for name in due:
            info = pipelines[name]
            try:
                created += self._schedule_one(info, active.get(name, 0), lasts.get(name), at)
            except PoolNotFound as exc:  # the author's to fix: say it, without a traceback
                log.error("pipeline %s gets no scheduled run: %s", name, exc)
                self._next_due[name] = now + self.config.parse_interval
            except Exception:
                log.exception("scheduling pipeline %s failed; other pipelines go on", name)
                self._next_due[name] = now + self.config.parse_interval
        return created

    def _schedule_one(
        self, info: PipelineInfo, active: int, last_text: str | None, at: datetime
    ) -> int:
        now = at.timestamp()
        name = info.name
        if info.assets:
            made = self._asset_run(info, active, now)
            self._next_due[name] = float("inf")  # woken by new asset events
            if active + made >= info.max_active_runs:
                self._next_due[name] = now + self.config.tick  # blocked: look again
            return made
        sched = self._schedules.get((name, info.schedule or "", info.timezone))
        if sched is None:
            sched = schedule_of(info)
            self._schedules[(name, info.schedule or "", info.timezone)] = sched
        if sched is None:
            self._next_due[name] = float("inf")
            return 0
        if self._ready(info) is None:
            self._next_due[name] = now + self.config.tick  # being imported: look again
            return 0
        last = parse_time(last_text)
        made = 0
        for d in due_runs(info, sched, last, active, at, self._first_seen.get(name)):
            interval = (
                (d.interval[0].isoformat(), d.interval[1].isoformat()) if d.interval else None
            )
            if self._create(info, d.logical_date, RunType.SCHEDULED, interval):
                made += 1
            last = d.logical_date if last is None or d.logical_date > last else last
        if active + made >= info.max_active_runs or isinstance(sched, Continuous):
            self._next_due[name] = now + self.config.tick  # waits for a run slot
        else:
            nxt = next_due(info, sched, last, at, self._first_seen.get(name))
            self._next_due[name] = nxt.timestamp() if nxt is not None else float("inf")
        return made

    def _asset_run(self, info: PipelineInfo, active: int, now: float) -> int:
        if active >= info.max_active_runs or self._ready(info) is None:
            return 0
        seen = self.catalog.assets_ready(info.name, info.assets)
        if seen is None:
            return 0
        key = "assets:" + ",".join(f"{a}={seen[a]}" for a in sorted(seen))
        at = datetime.fromtimestamp(now, timezone.utc)
        made = self._create(info, at, RunType.ASSET, None, key)
        self.catalog.consume_assets(info.name, seen)
        return int(made)

    def _create(
        self,
        info: PipelineInfo,
        logical: datetime,
        run_type: RunType,
        interval: tuple[str, str] | None,
        key: str | None = None,
    ) -> bool:
        spec = self.spec(info)
        try:
            create_run(
                self.app.store,
                spec,
                None,
                logical,
                source=f"{info.file}:{info.name}",
                run_type=run_type,
                data_interval=interval,
                idempotency_key=key,
            )
            return True
        except RunConflict:
            return False  # another scheduler made it first: exactly one run either way

    def spec(self, info: PipelineInfo) -> PipelineSpec:
        """The pipeline's graph, imported in this process once per code version (discovery
        already read the file safely in a worker)."""
        key = (info.name, info.code_hash)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._load(f"{info.file}:{info.name}")
            self._specs[key] = spec
        return spec

    def _ready(self, info: PipelineInfo) -> PipelineSpec | None:
        """The pipeline's graph if this process has it, else None while it is imported in
        the background (an import error is raised)."""
        key = (info.name, info.code_hash)
        spec = self._specs.get(key)
        if spec is None:
            spec = self.loader.get(f"{info.file}:{info.name}")
            if spec is not None:
                self._specs[key] = spec
        return spec

    def _load(self, source: str) -> PipelineSpec:
        return reload_pipeline(source).spec

    # -- claiming and driving ---------------------------------------------------------------------

    def claim(self, now: float) -> list[str]:
        assert self.loop is not None
        # take only what our slots can start soon, so several schedulers share the work
        room = min(self.config.max_runs, 2 * self.loop.slots) - len(self.loop.sessions)
        if room <= 0:
            return []
        claimed = []
        # runs whose file is still being imported wait aside: claimed again and again, they
        # would fill every claim ahead of the runs that can start now
        self._importing = {
            r: src for r, src in self._importing.items() if self.loader.importing(src)
        }
        skip = set(self.loop.sessions) | self.loop.resting(now) | set(self._importing)
        for run in self.catalog.claim_runs(
            self.id, self.config.lease_ttl, now, room, skip, take_from=self._dead_holders
        ):
            if run.run_id in self.loop.sessions:
                continue
            try:
                session = self._session(run)
                if session is None:  # its pipeline is being imported: claim it again later
                    self.catalog.release_runs(self.id, [run.run_id])
                    self._importing[run.run_id] = run.source or ""
                    continue
                self.loop.add(session)
            except Exception as exc:
                log.error(
                    "cannot drive run %s of %s (trying again in %.0fs): %s",
                    run.run_id,
                    run.pipeline,
                    BROKEN_BACKOFF,
                    exc,
                )
                self.loop.rest(run.run_id, BROKEN_BACKOFF)
                self.catalog.release_runs(self.id, [run.run_id])
                continue
            claimed.append(run.run_id)
            log.info("driving run %s of %s (%s)", run.run_id, run.pipeline, run.run_type)
        return claimed

    def _session(self, run: RunRecord) -> RunSession | None:
        """A session for ``run``, or None while its pipeline's file is imported."""
        if not run.source:
            raise PhloemError(f"run {run.run_id} does not record its pipeline's code")
        key = (run.pipeline, run.code_hash or "")
        spec = self._specs.get(key)
        if spec is None:
            spec = self.loader.get(run.source)
            if spec is None:
                return None
            if run.code_hash and spec.code_hash != run.code_hash:
                log.warning(
                    "run %s was created with code %s; driving it with %s",
                    run.run_id,
                    run.code_hash,
                    spec.code_hash,
                )
            self._specs[(run.pipeline, spec.code_hash)] = spec
        return RunSession(
            self.app.store,
            spec,
            run,
            self.app.artifacts,
            self.app.logs_dir,
            owner=self.id,
            lease_ttl=self.config.lease_ttl,
            alerts=self.app.alerting,
        )
