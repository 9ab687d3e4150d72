"""Making and reopening runs: what ``phloem.run``, ``phloem retry``, the scheduler's triggers
and backfills share. Each is one store transaction; the planning is the engine's."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from phloem.config import DEFAULT_LEASE_TTL
from phloem.dsl.params import resolve_params
from phloem.dsl.spec import PipelineSpec
from phloem.engine.model import TI
from phloem.errors import PhloemError, PoolNotFound
from phloem.records import RunRecord, iso_utc
from phloem.states import RunState, RunType
from phloem.store.port import Store
from phloem.store.types import RunIdTaken


def new_run_id(now: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(6)}"


def create_run(
    store: Store,
    spec: PipelineSpec,
    params: Mapping[str, Any] | None = None,
    logical_date: datetime | str | None = None,
    *,
    source: str | None = None,
    run_type: RunType | str = RunType.MANUAL,
    idempotency_key: str | None = None,
    data_interval: tuple[str, str] | None = None,
    owner: str | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    batch: str | None = None,
    batch_limit: int | None = None,
    triggered_by: str | None = None,
) -> RunRecord:
    """Queue a run of ``spec`` with its first task instances; a run made with an ``owner`` is
    leased to it, so no scheduler takes it."""
    values = resolve_params(spec, params)
    check_pools(store, spec)
    now = time.time()
    record = RunRecord(
        run_id=new_run_id(now),
        pipeline=spec.name,
        state=RunState.QUEUED,
        logical_date=iso_utc(logical_date),
        params=values,
        created_at=now,
        run_type=RunType(run_type),
        source=source,
        code_hash=spec.code_hash,
        data_interval_start=data_interval[0] if data_interval else None,
        data_interval_end=data_interval[1] if data_interval else None,
        idempotency_key=idempotency_key,
        owner=owner,
        batch=batch,
        batch_limit=batch_limit,
        triggered_by=triggered_by,
    )
    pools = {t.task_id: (t.options.pool, t.options.pool_slots) for t in spec.tasks.values()}
    instances = [TI(task_id=t) for t in spec.tasks]
    for _ in range(5):
        try:
            return store.create_run(record, instances, pools, lease_ttl)
        except RunIdTaken:
            found = store.find_run(spec.name, record.logical_date, idempotency_key)
            if found is not None and found.run_id == record.run_id:
                return found  # our own insert, whose acknowledgement was lost
            record = replace(record, run_id=new_run_id(time.time()))
    raise PhloemError("could not find a free run id after 5 tries")


#: the pool every task takes unless it names another; it needs no definition (no size: no limit)
DEFAULT_POOL = "default"


def check_pools(store: Store, spec: PipelineSpec) -> None:
    """Refuse a run whose tasks name a pool the store does not define (it would run them
    without any limit, silently) or take more slots than their pool has (they would never
    start). The default pool needs no definition."""
    users: dict[str, list[str]] = {}
    for t in spec.tasks.values():
        if t.options.pool != DEFAULT_POOL:
            users.setdefault(t.options.pool, []).append(t.task_id)
    if not users:
        return  # the common case costs no query
    sizes = store.pools()
    for pool, task_ids in users.items():
        size = sizes.get(pool)
        if size is None:
            raise PoolNotFound(_undefined(store, spec.name, pool, task_ids), pipeline=spec.name)
        for task_id in task_ids:
            need = spec.tasks[task_id].options.pool_slots
            if 0 < size < need:  # a pool of size 0 holds its tasks back on purpose
                raise PoolNotFound(
                    f"pipeline '{spec.name}': task '{task_id}' takes {need} slots of pool "
                    f"'{pool}', which has {size}, so it could never start; give the pool more "
                    f"slots (`phloem pools set {pool} {need}`) or the task fewer (pool_slots=...)",
                    pipeline=spec.name,
                    task=task_id,
                )


def _undefined(store: Store, pipeline: str, pool: str, task_ids: list[str]) -> str:
    names = ", ".join(f"'{t}'" for t in task_ids)
    who = f"task {names} uses" if len(task_ids) == 1 else f"tasks {names} use"
    if store.capabilities.shared:
        fix = f"`phloem pools set {pool} SIZE` (SIZE: how many slots may be taken at once)"
    else:  # the CLI cannot reach a private store
        fix = f"app.store.set_pool('{pool}', SIZE) on this private store"
    return (
        f"pipeline '{pipeline}': {who} pool '{pool}', which is not defined in the store "
        f"({store.display_url}); define it with {fix}, or leave out pool= to use the default "
        "pool"
    )


def reopen(
    store: Store,
    spec: PipelineSpec,
    run_id: str,
    *,
    task: str | None = None,
    downstream: bool = False,
    everything: bool = False,
    reason: str,
    queue: bool = False,
    batch: str | None = None,
    batch_limit: int | None = None,
) -> int:
    """Reset a run's failed tasks (or ``task`` and after it, or ``everything``) and make it
    running (or, with ``queue``, queued) again, in one transaction. Returns how many
    instances changed."""
    from phloem.engine.reopen import plan_reopen  # here: a new run never reopens

    plan = plan_reopen(
        store.load_instances(run_id),
        spec,
        task=task,
        downstream=downstream,
        everything=everything,
    )
    return store.reopen_run(
        run_id,
        plan.resets,
        plan.placeholders,
        reason,
        time.time(),
        state=RunState.QUEUED if queue else RunState.RUNNING,
        batch=batch,
        batch_limit=batch_limit,
    )


__all__ = ["DEFAULT_POOL", "check_pools", "create_run", "new_run_id", "reopen"]
