"""The store port: what the driver, the scheduler, ``phloem.run`` and the server may ask of a
store, in domain terms (runs, task instances, attempts, pipelines, leases), and what the
backend can do (:class:`StoreCapabilities`).

Callers type against these protocols, never against a SQL dialect or a transaction helper;
``SqlStore`` (SQLite file or PostgreSQL) and ``MemoryStore`` implement them, and one
conformance suite (tests/test_store.py) runs against all three.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from phloem.records import TI, Expansion, RunRecord, Transition
from phloem.states import RunState
from phloem.store.cache_records import CacheCheck, CacheEntry
from phloem.store.types import (
    Applied,
    ArtifactRecord,
    ArtifactUse,
    AttemptKey,
    AttemptLease,
    Beat,
    Commit,
    InstanceKey,
)

if TYPE_CHECKING:
    from phloem.dsl.breaker import Breaker
    from phloem.secrets import Cipher
    from phloem.store.accounts import SessionRecord, TokenRecord, UserRecord
    from phloem.store.alert_book import StoredRule
    from phloem.store.breakers import BreakerRow, BreakerState, Verdict
    from phloem.store.deliveries import Delivery, NewDelivery
    from phloem.store.feed import FeedEvent
    from phloem.store.listing import (
        AssetEvent,
        AssetInfo,
        InstanceFilter,
        Page,
        RunFilter,
        TaskCount,
    )
    from phloem.store.models import AliasMove, DecisionRow, ModelSummary, ModelVersion, Owner
    from phloem.store.read_types import (
        AttemptRow,
        EventRow,
        InstanceInfo,
        MetadataRow,
        PipelineInfo,
        PipelineRow,
        UseRow,
    )
    from phloem.store.settings_store import ConnectionRecord, VariableRecord
    from phloem.store.stats import EventStat, Now, ProcessStat
    from phloem.store.tracking import MetricRow, TrendPoint
    from phloem.store.watermarks import WatermarkChange, WatermarkRecord


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    """What a backend can do, so callers ask for a capability instead of naming a dialect.

    - ``shared``: other processes can open it (a task may read variables from it, a run may
      be leased to one driver among several).
    - ``notify``: it can wake listeners in other processes and machines when work is queued.
    - ``multi_writer``: several schedulers may drive runs from it at once (else one holds it).
    """

    shared: bool
    notify: bool
    multi_writer: bool


class WorkListener(Protocol):
    """Wakes a sleeping scheduler when another process announces work (see ``announce_work``)."""

    def usable(self) -> bool: ...
    def fileno(self) -> int: ...
    def drain(self) -> bool: ...
    def close(self) -> None: ...


class PipelineCatalog(Protocol):
    """Pipelines and their versions, import errors, leases and run ownership, assets."""

    def sync_file(self, file: str, found: Sequence[PipelineInfo], now: float) -> list[str]: ...
    def file_removed(self, file: str, now: float) -> None: ...
    def import_failed(self, file: str, error: str, now: float) -> None: ...
    def import_errors(self) -> dict[str, str]: ...
    def pipelines(self, *, active_only: bool = False) -> list[PipelineRow]: ...
    def pipeline(self, name: str) -> PipelineRow: ...
    def set_paused(self, name: str, paused: bool, now: float) -> None: ...
    def versions(self, name: str) -> list[tuple[str, float]]: ...
    def acquire(
        self, name: str, holder: str, ttl: float, now: float, *, take_from: str | None = None
    ) -> str | None: ...
    def release(self, name: str, holder: str) -> None: ...
    def claim_runs(
        self,
        owner: str,
        ttl: float,
        now: float,
        limit: int,
        skip: Iterable[str] = (),
        take_from: Iterable[str] = (),
    ) -> list[RunRecord]: ...
    def claim_run(
        self, run_id: str, owner: str, ttl: float, now: float, *, take_from: str | None = None
    ) -> str | None: ...
    def renew_runs(
        self, owner: str, run_ids: Iterable[str], ttl: float, now: float
    ) -> set[str]: ...
    def release_runs(self, owner: str, run_ids: Iterable[str]) -> None: ...
    def ended_runs(self, run_ids: Iterable[str]) -> set[str]: ...
    def last_scheduled_many(self, pipelines: Sequence[str]) -> dict[str, str]: ...
    def paused(self) -> set[str]: ...
    def last_asset_event(self) -> int: ...
    def active_runs(self) -> dict[str, int]: ...
    def runs_between(self, pipeline: str, start: str, end: str) -> dict[str, RunRecord]: ...
    def assets_ready(self, pipeline: str, assets: Sequence[str]) -> dict[str, int] | None: ...
    def consume_assets(self, pipeline: str, seen: dict[str, int]) -> bool: ...


class TaskCache(Protocol):
    """Cache entries (one per key) and what the cache said about each task instance. Entries
    and checks are written by ``commit_many`` (``Commit.cache_entries``/``cache_checks``), in
    the transaction that applies the success that produced them."""

    def find(self, keys: Collection[str]) -> dict[str, CacheEntry]: ...
    def tasks_with_entries(self, pipeline: str) -> set[str]: ...
    def entries(
        self,
        pipeline: str | None = None,
        task_id: str | None = None,
        *,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[CacheEntry]: ...
    def clear(self, pipeline: str | None = None, task_id: str | None = None) -> int: ...
    def check(self, run_id: str, task_id: str, map_index: int = -1) -> CacheCheck | None: ...
    def checks(self, run_id: str) -> list[CacheCheck]: ...


class AttemptLeasing(Protocol):
    """Attempt leases: where an attempt runs, its heartbeat renews its lease (a fenced
    compare-and-set, by the database's clock); a driver that takes a run over waits for the
    leases of the attempts it inherits to expire before retrying them."""

    def beat(self, beats: Sequence[Beat]) -> set[Beat]:
        """Renew these attempts' leases in one transaction, tried once; returns the beats
        written (one not written: its attempt is no longer current and must stop)."""
        ...

    def heartbeats(
        self, run_id: str, keys: Iterable[AttemptKey] | None = None
    ) -> tuple[float, dict[AttemptKey, AttemptLease]]:
        """The database's clock now, and the lease of each of the run's attempts that may
        still run: its last heartbeat, and which driver handed it out."""
        ...


class RunListing(Protocol):
    """Listings for people and programs: filtered, newest first, in keyset pages whose
    opaque cursors stay valid while rows are added (see store/listing.py)."""

    def runs(
        self, where: RunFilter = ..., *, limit: int = 50, cursor: str | None = None
    ) -> Page[RunRecord]: ...
    def instances(
        self,
        run_id: str,
        where: InstanceFilter = ...,
        *,
        limit: int = 500,
        cursor: str | None = None,
    ) -> Page[TI]: ...
    def recent_runs(
        self, pipelines: Sequence[str], per_pipeline: int = 25
    ) -> dict[str, list[RunRecord]]:
        """The newest ``per_pipeline`` runs of each pipeline (by creation), in one round
        trip: a pipelines page needs every pipeline's recent runs at once."""
        ...

    def task_counts(self, run_id: str) -> list[TaskCount]: ...
    def task_counts_of(self, run_ids: Sequence[str]) -> dict[str, list[TaskCount]]: ...
    def assets(self) -> list[AssetInfo]: ...
    def asset_events(
        self, asset: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[AssetEvent]: ...
class LineageQueries(Protocol):
    """What lineage and ``phloem output`` read: who wrote and read which artifacts, the
    metadata kept with outputs, and the task instances and runs around them."""

    def output_metadata(
        self, run_id: str, task_id: str | None = None, map_index: int | None = None
    ) -> list[MetadataRow]: ...
    def metadata_of(self, digests: Iterable[str]) -> dict[str, list[MetadataRow]]: ...
    def find_artifacts(self, prefix: str, limit: int = 10) -> list[ArtifactRecord]: ...
    def artifacts(self, digests: Iterable[str]) -> dict[str, ArtifactRecord]: ...
    def writers_of(self, digests: Iterable[str]) -> list[UseRow]: ...
    def readers_of(self, digests: Iterable[str]) -> list[UseRow]: ...
    def written_by(self, instances: Iterable[InstanceKey]) -> list[UseRow]: ...
    def read_by(self, instances: Iterable[InstanceKey]) -> list[UseRow]: ...
    def instances(self, keys: Iterable[InstanceKey]) -> dict[InstanceKey, InstanceInfo]: ...
    def task_ids(self, run_id: str) -> Sequence[tuple[str, int]]: ...


class Variables(Protocol):
    """Variables (JSON values) and connections (URIs, encrypted at rest) that tasks read."""

    def set_variable(self, key: str, value: Any, description: str | None = None) -> None: ...
    def get_variable(self, key: str, default: Any = ...) -> Any: ...
    def list_variables(self) -> list[VariableRecord]: ...
    def delete_variable(self, key: str) -> bool: ...
    def add_connection(self, name: str, uri: str, *, replace: bool = False) -> bool: ...
    def get_connection_uri(self, name: str) -> str: ...
    def list_connections(self) -> list[ConnectionRecord]: ...
    def delete_connection(self, name: str) -> bool: ...


class Tracking(Protocol):
    """Metrics and parameters tasks logged, for comparing runs and following a metric."""

    def metrics(self, run_ids: Sequence[str], keys: Sequence[str] = ()) -> list[MetricRow]: ...
    def params(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def final(
        self, run_ids: Sequence[str], keys: Sequence[str] = ()
    ) -> dict[str, dict[str, float]]: ...
    def trend(self, pipeline: str, key: str, last: int = 30) -> list[TrendPoint]: ...


class Accounts(Protocol):
    """The server's users (argon2 password hashes), API tokens and sessions (SHA-256 of their
    secrets) and failed logins, shared by every server on the store."""

    def add_user(
        self,
        name: str,
        role: str,
        password_hash: str,
        now: float,
        *,
        replace: bool = False,
        admin_role: str | None = None,
    ) -> bool: ...
    def add_first_user(self, name: str, role: str, password_hash: str, now: float) -> bool: ...
    def user(self, name: str) -> UserRecord | None: ...
    def users(self) -> list[UserRecord]: ...
    def remove_user(self, name: str, *, admin_role: str | None = None) -> bool: ...
    def update_user(
        self,
        name: str,
        now: float,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        admin_role: str | None = None,
    ) -> bool: ...
    def set_password(self, name: str, password_hash: str, now: float) -> bool: ...
    def add_token(
        self, name: str, user: str, token_hash: str, now: float, expires_at: float | None
    ) -> bool: ...
    def token_by_hash(self, token_hash: str) -> tuple[TokenRecord, UserRecord] | None: ...
    def tokens(self, user: str | None = None) -> list[TokenRecord]: ...
    def revoke_token(self, name: str, now: float) -> bool: ...
    def add_session(self, id_hash: str, user: str, now: float, expires_at: float) -> None: ...
    def session(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None: ...
    def end_session(self, id_hash: str) -> None: ...
    def login_failed(self, scopes: Iterable[str], now: float, keep: float) -> None: ...
    def login_failures(self, scopes: Iterable[str], since: float) -> dict[str, int]: ...
    def forget_login_failures(self, scopes: Iterable[str]) -> None: ...


class Watermarks(Protocol):
    """Watermarks of incremental tasks: tasks read them and move them with their success
    (an attempt effect); people list, set and reset them (``phloem watermarks``)."""

    def get(self, name: str) -> WatermarkRecord | None: ...
    def all(self) -> list[WatermarkRecord]: ...
    def history(self, name: str, last: int = 50) -> list[WatermarkChange]: ...
    def set(
        self, name: str, kind: str, value: str, *, force: bool = False, now: float, note: str
    ) -> WatermarkRecord: ...
    def reset(self, name: str, *, now: float, note: str) -> bool: ...


class EventFeed(Protocol):
    """Every state change in commit order, read after a position (an event id)."""

    def last_id(self) -> int: ...
    def ids_after(self, after_id: int, limit: int = 500) -> list[int]: ...
    def after(
        self,
        after_id: int,
        *,
        upto: int | None = None,
        run_id: str | None = None,
        pipeline: str | None = None,
        limit: int = 500,
    ) -> list[FeedEvent]: ...


class ModelRegistry(Protocol):
    """Model versions, aliases and their history, promotion decisions (``phloem.models``)."""

    def allocate(
        self,
        name: str,
        artifact: ArtifactRecord,
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        eval_digest: str | None,
        description: str | None,
        owner: Owner | None,
        who: str,
        now: float,
        artifacts: Sequence[ArtifactRecord] = (),
    ) -> int:
        """A new version: ready at once without ``owner``, else pending until that attempt
        succeeds."""
        ...

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str | None,
        who: str,
        now: float,
        kind: str = "set",
    ) -> AliasMove: ...
    def record_decision(self, name: str, decision: str, now: float) -> None: ...
    def names(self) -> list[ModelSummary]: ...
    def versions(self, name: str, *, include_pending: bool = False) -> list[ModelVersion]: ...
    def registered_by(self, run_id: str, task_id: str, map_index: int) -> list[ModelVersion]: ...
    def version(self, name: str, version: int, *, ready: bool = False) -> ModelVersion: ...
    def latest(self, name: str) -> ModelVersion: ...
    def aliases(self, name: str) -> dict[str, int]: ...
    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]: ...
    def decisions(self, name: str) -> list[DecisionRow]: ...


class Breakers(Protocol):
    """Circuit breakers shared by everything on this store (see store/breakers.py)."""

    def admit(self, policy: Breaker, now: float | None = None) -> Verdict: ...
    def settle(
        self,
        policy: Breaker,
        *,
        ok: bool,
        probe: bool,
        error: str | None = None,
        now: float | None = None,
    ) -> BreakerState: ...
    def list(self) -> list[BreakerRow]: ...
    def reset(self, name: str) -> bool: ...


class Alerts(Protocol):
    """Alert rules kept in the store, and one delivery record per alert and channel (see
    store/alert_book.py): recorded idempotently, claimed by one sender, finished fenced."""

    def add_rule(
        self,
        pipeline: str,
        kind: str,
        options: dict[str, Any],
        channels: Sequence[tuple[str, str]],
        now: float,
    ) -> int: ...
    def rules(self, pipeline: str | None = None) -> list[StoredRule]: ...
    def remove_rule(self, rule_id: int) -> bool: ...
    def record(self, deliveries: Sequence[NewDelivery], now: float) -> int: ...
    def claim(
        self,
        holder: str,
        now: float,
        ttl: float,
        limit: int = 20,
        callables: Collection[str] = (),
    ) -> list[Delivery]: ...
    def finish(
        self,
        delivery_id: int,
        holder: str,
        now: float,
        *,
        sent: bool,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> bool: ...
    def history(
        self, pipeline: str | None = None, limit: int = 50, run_id: str | None = None
    ) -> list[Delivery]: ...
    def next_due(self, now: float, callables: Collection[str] = ()) -> float | None: ...
    def counts(self) -> dict[tuple[str, str], int]: ...
    def recorded(self, run_id: str, rule_ids: Collection[str]) -> set[str]: ...


class Stats(Protocol):
    """What monitoring reads (store/stats.py): events after an id, and things running now."""

    def events_after(
        self, after_id: int, limit: int = 50_000, settled_before: float | None = None
    ) -> list[EventStat]: ...
    def now(self) -> Now: ...
    def publish(
        self,
        holder: str,
        role: str,
        loop: Sequence[tuple[float, int]],
        loop_sum: float,
        waited_out: int,
        now: float,
    ) -> None: ...
    def published(self, since: float) -> list[ProcessStat]: ...


class Store(Protocol):
    """Runs, their task instances and attempts, history, artifact records and pools.

    Every write is one transaction; task-instance changes are compare-and-sets on (state,
    try number), so a late or duplicated actor cannot overwrite a newer truth.
    """

    @property
    def capabilities(self) -> StoreCapabilities: ...

    @property
    def display_url(self) -> str:
        """Where the store is, for messages (password hidden)."""
        ...

    @property
    def shared_url(self) -> str | None:
        """The URL another process opens this store with; None for a private store."""
        ...

    @property
    def catalog(self) -> PipelineCatalog: ...

    @property
    def breakers(self) -> Breakers:
        """Circuit breakers kept in this store."""
        ...

    @property
    def tracking(self) -> Tracking:
        """Metrics and parameters that tasks logged."""
        ...

    @property
    def accounts(self) -> Accounts:
        """Users, tokens and sessions of the server."""
        ...

    @property
    def feed(self) -> EventFeed:
        """Every state change in commit order, for the server's event stream."""
        ...

    @property
    def listing(self) -> RunListing:
        """Runs, task instances and asset events, filtered and paged."""
        ...

    @property
    def cache(self) -> TaskCache:
        """Task cache entries and checks."""
        ...

    @property
    def watermarks(self) -> Watermarks:
        """Watermarks of incremental tasks (``phloem.watermark``)."""
        ...

    @property
    def lineage(self) -> LineageQueries:
        """Artifact records, their uses and output metadata, for lineage."""
        ...

    @property
    def models(self) -> ModelRegistry:
        """The model registry."""
        ...

    @property
    def stats(self) -> Stats:
        """What monitoring reads: events in the order written, and things running now."""
        ...

    @property
    def waited_out(self) -> int:
        """Database errors this process's store calls waited out (store/resilience.py)."""
        ...

    @property
    def alerts(self) -> Alerts:
        """Alert rules added from the command line, and alert deliveries."""
        ...

    @property
    def attempt_leases(self) -> AttemptLeasing:
        """Heartbeats of running attempts; only meaningful on a shared store."""
        ...

    def variables(self, cipher: Cipher | Callable[[bool], Cipher] | None = None) -> Variables:
        """Variables and connections kept in this store; ``cipher`` (or a function of
        whether to create the key) encrypts connections."""
        ...

    # -- runs
    def create_run(
        self,
        run: RunRecord,
        instances: Sequence[TI],
        pools: dict[str, tuple[str, int]] | None = None,
        lease_ttl: float | None = None,
    ) -> RunRecord: ...
    def find_run(
        self, pipeline: str, logical_date: str | None = None, idempotency_key: str | None = None
    ) -> RunRecord | None: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def list_runs(
        self, pipeline: str | None = None, limit: int = 50, states: Iterable[RunState] = ()
    ) -> list[RunRecord]: ...
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
        """Runs of ``pipeline`` whose logical date lies in [start, end] (ISO text in UTC, both
        ends included), the latest logical date first; only those in ``states`` if given, and
        only those in which ``task_succeeded`` (one of its instances) succeeded if given."""
        ...

    def set_run_state(self, run_id: str, old: RunState, new: RunState, now: float) -> bool: ...
    def cancel_run(self, run_id: str, reason: str, now: float) -> int:
        """End a run now, whoever drives it: every unfinished task instance fails with
        ``reason`` and the run fails, in one transaction (``phloem retry`` resumes it). Its
        driver learns it at its next commit, its running attempts at their next heartbeat,
        and both stop. Returns how many instances it failed (0: the run had ended)."""
        ...


    # -- task instances
    def load_instances(self, run_id: str) -> list[TI]: ...
    def get_instance(self, run_id: str, task_id: str, map_index: int = -1) -> TI: ...
    def add_instances(
        self, run_id: str, instances: Sequence[TI], pools: dict[str, tuple[str, int]]
    ) -> None: ...
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
    ) -> Applied: ...
    def commit_many(
        self, requests: Sequence[Commit], now: float | None = None
    ) -> list[Applied]: ...
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
    ) -> int: ...

    # -- history and artifacts
    def events(self, run_id: str) -> list[EventRow]: ...
    def attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRow]: ...
    def artifact(self, digest: str) -> ArtifactRecord | None: ...
    def artifact_uses(self, run_id: str) -> list[ArtifactUse]: ...

    # -- pools
    def pools(self) -> dict[str, int]: ...
    def set_pool(self, name: str, slots: int, description: str | None = None) -> None: ...
    def pool_usage(self, exclude_runs: Iterable[str] = ()) -> dict[str, int]: ...

    # -- waking schedulers
    def announce_work(self) -> None:
        """Tell listeners in other processes that runs were queued (never fails)."""
        ...

    def work_listener(self) -> WorkListener | None:
        """A listener for ``announce_work`` from anywhere, if the backend can notify."""
        ...

    def close(self) -> None: ...


__all__ = [
    "Accounts",
    "Alerts",
    "AttemptLeasing",
    "Breakers",
    "EventFeed",
    "LineageQueries",
    "ModelRegistry",
    "PipelineCatalog",
    "RunListing",
    "Store",
    "Stats",
    "StoreCapabilities",
    "Tracking",
    "TaskCache",
    "Variables",
    "WorkListener",
]
