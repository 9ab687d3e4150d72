"""Drives runs: sessions (one run each) multiplexed by a loop over one executor."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from phloem.artifacts import ArtifactStore
from phloem.caching import CacheMode
from phloem.driver.leases import DEFAULT_TTL, LeaseKeeper, holder_id
from phloem.driver.loop import Loop
from phloem.driver.session import CallbackContext, Reporter, RunSession
from phloem.dsl.spec import PipelineSpec
from phloem.engine import Snapshot
from phloem.errors import PhloemError
from phloem.executors import Executor
from phloem.records import RunRecord
from phloem.store import Store

if TYPE_CHECKING:
    from phloem.alerting import Alerting
    from phloem.caching import Versions


class Driver:
    """Drive one run to its end in this process (what ``phloem run`` does)."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        spec: PipelineSpec,
        run: RunRecord,
        artifacts: ArtifactStore,
        logs_dir: Path,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
        lease_ttl: float = DEFAULT_TTL,
        cache_mode: CacheMode = CacheMode.USE,
        cache_versions: Versions | None = None,
        alerts: Alerting | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.session = RunSession(
            store,
            spec,
            run,
            artifacts,
            logs_dir,
            reporter,
            clock,
            lease_ttl=lease_ttl,
            cache_mode=cache_mode,
            cache_versions=cache_versions,
            alerts=alerts,
        )
        # a private store needs no lease: no other process can drive its runs
        self.keeper = (
            LeaseKeeper(store.catalog, run.owner, lease_ttl)
            if run.owner and store.capabilities.shared
            else None
        )
        self.loop = Loop(
            executor, pools=store.pools(), keeper=self.keeper, clock=clock, winds_down=True
        )

    def drive(self) -> Snapshot:
        try:
            # inside: an executor that fails half-way through starting is shut down, and the
            # run is released for a retry rather than held until its lease runs out
            self.executor.start({self.session.spec.name: self.session.spec}, self.session.artifacts)
            if self.keeper is not None:
                self.keeper.start()
            self.loop.add(self.session)
            self.loop.run_until_idle()
            finished = self.session in self.loop.take_finished()
        except BaseException:
            self.executor.shutdown()
            try:
                self.session.interrupt()
            except Exception:  # the original exception matters more
                import logging

                logging.getLogger("phloem.driver").exception(
                    "could not mark interrupted attempts of run %s", self.session.run_id
                )
            raise
        finally:
            self.executor.shutdown()
            if self.keeper is not None:
                self.keeper.stop()
            released = self.session.released  # by the loop, as the run ended
            if self.session.owner is not None and not self.session.fenced and not released:
                self.store.catalog.release_runs(self.session.owner, [self.session.run_id])
        if self.session.fenced or not finished:
            raise PhloemError(
                f"run {self.session.run_id} was taken over by another driver (its lease ran "
                "out while this process was stalled); it goes on there",
                run=self.session.run_id,
            )
        return self.session.snap


__all__ = [
    "DEFAULT_TTL",
    "CallbackContext",
    "Driver",
    "LeaseKeeper",
    "Loop",
    "Reporter",
    "RunSession",
    "holder_id",
]
