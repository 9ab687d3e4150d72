"""``/pipelines``: the pipelines schedulers found (with their last runs, next run and import
errors), each one's graph, pause and unpause, and trigger."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.records import RunRecord
from phloem.server.auth import application, require
from phloem.server.models import Body, Out
from phloem.server.paging import Cursor, Limit, decode_cursor, encode_cursor
from phloem.server.problems import Problem
from phloem.server.specs import SpecCache
from phloem.server.views import Graph, RunSummary, graph
from phloem.store.types import PipelineRow

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

#: how many of its latest runs a pipeline's listing shows
LAST_RUNS = 5

Name = Annotated[str, Path(max_length=250, description="The pipeline's name.")]


class RunBrief(Out):
    run_id: str
    state: str
    logical_date: str


class PipelineSummary(Out):
    name: str
    file: str
    schedule: str | None
    timezone: str
    assets: list[str]
    paused: bool
    #: False when its file no longer defines it
    active: bool
    code_hash: str
    owner: str | None
    tags: list[str]
    description: str | None
    tasks: int
    #: its latest runs, newest first
    last_runs: list[RunBrief]
    #: when its schedule next creates a run (ISO 8601 UTC); None for manual or asset-driven
    next_run_at: str | None


class PipelineList(Out):
    items: list[PipelineSummary]
    next_cursor: str | None = None
    #: file -> the error importing it gave
    import_errors: dict[str, str]


class PipelineDetail(PipelineSummary):
    graph: Graph


class Trigger(Body):
    #: parameter values, checked against the pipeline's declared types
    params: dict[str, Any] = {}
    #: the run's logical date (default: now)
    logical_date: datetime | None = None
    #: repeats with the same key return the run the first request made (200, not 201)
    idempotency_key: Annotated[str | None, Field(max_length=250)] = None


async def specs(request: Request) -> SpecCache:
    cache: SpecCache = request.app.state.specs
    return cache


def _next_run(row: PipelineRow, last: str | None, now: datetime) -> str | None:
    from phloem.scheduler.triggers import next_due, parse_time, schedule_of

    try:
        sched = schedule_of(row.info)
        due = next_due(row.info, sched, parse_time(last), now)
    except Exception:  # a schedule the scheduler itself would report; the listing goes on
        return None
    return None if due is None else due.astimezone(timezone.utc).isoformat()


def _summary(
    ph: Phloem,
    row: PipelineRow,
    last: str | None,
    now: datetime,
    runs: list[RunRecord] | None = None,
) -> dict[str, Any]:
    """A pipeline's listing entry; ``runs``: its latest runs when already read (a listing of
    many pipelines reads them all in one query)."""
    if runs is None:
        runs = ph.store.list_runs(row.info.name, limit=LAST_RUNS)
    i = row.info
    return {
        "name": i.name,
        "file": i.file,
        "schedule": i.schedule,
        "timezone": i.timezone,
        "assets": list(i.assets),
        "paused": row.paused,
        "active": row.active,
        "code_hash": i.code_hash,
        "owner": i.owner,
        "tags": list(i.tags),
        "description": i.description,
        "tasks": i.tasks,
        "last_runs": [
            RunBrief(run_id=r.run_id, state=r.state.value, logical_date=r.logical_date)
            for r in runs
        ],
        "next_run_at": None if row.paused or not row.active else _next_run(row, last, now),
    }


@router.get("", dependencies=[Depends(require(Role.VIEWER))])
def list_pipelines(
    ph: Phloem = Depends(application),
    limit: Limit = 100,
    cursor: Cursor = None,
    tag: Annotated[str | None, Query(max_length=250, description="Only with this tag.")] = None,
    paused: Annotated[bool | None, Query(description="Only paused (or unpaused) ones.")] = None,
    active: Annotated[
        bool | None, Query(description="Only those still defined (or no longer).")
    ] = None,
) -> PipelineList:
    """Pipelines by name, with their latest runs and next scheduled run, and the files that
    failed to import."""
    catalog = ph.store.catalog
    rows = catalog.pipelines()
    after = str(decode_cursor(cursor, after=str)["after"]) if cursor else ""
    rows = [
        r
        for r in sorted(rows, key=lambda r: r.info.name)
        if r.info.name > after
        and (tag is None or tag in r.info.tags)
        and (paused is None or r.paused == paused)
        and (active is None or r.active == active)
    ]
    page, more = rows[:limit], len(rows) > limit
    names = [r.info.name for r in page]
    last = catalog.last_scheduled_many(names) if page else {}
    recent = ph.store.listing.recent_runs(names, LAST_RUNS) if page else {}
    now = datetime.now(timezone.utc)
    return PipelineList(
        items=[
            PipelineSummary(
                **_summary(ph, r, last.get(r.info.name), now, recent.get(r.info.name, []))
            )
            for r in page
        ],
        next_cursor=encode_cursor({"after": page[-1].info.name}) if more else None,
        import_errors=catalog.import_errors(),
    )


@router.get("/{name}", dependencies=[Depends(require(Role.VIEWER))])
def get_pipeline(
    name: Name, ph: Phloem = Depends(application), cache: SpecCache = Depends(specs)
) -> PipelineDetail:
    """One pipeline with its graph: tasks (kind, group, mapped, options), edges, groups and
    params with their types."""
    catalog = ph.store.catalog
    row = catalog.pipeline(name)
    if not row.active:
        raise Problem(
            410,
            "pipeline gone",
            f"pipeline '{name}' is no longer defined in {row.info.file}; its runs remain",
            pipeline=name,
        )
    spec = cache.get(row)
    last = catalog.last_scheduled_many([name]).get(name)
    summary = _summary(ph, row, last, datetime.now(timezone.utc))
    return PipelineDetail(**summary, graph=graph(spec))


def _set_paused(ph: Phloem, name: str, paused: bool) -> PipelineSummary:
    catalog = ph.store.catalog
    catalog.pipeline(name)  # 404 for a name the catalog does not know
    catalog.set_paused(name, paused, time.time())
    row = catalog.pipeline(name)
    last = catalog.last_scheduled_many([name]).get(name)
    return PipelineSummary(**_summary(ph, row, last, datetime.now(timezone.utc)))


@router.post("/{name}/pause", dependencies=[Depends(require(Role.OPERATOR))])
def pause(name: Name, ph: Phloem = Depends(application)) -> PipelineSummary:
    """Stop creating runs of the pipeline (runs in flight go on)."""
    return _set_paused(ph, name, True)


@router.post("/{name}/unpause", dependencies=[Depends(require(Role.OPERATOR))])
def unpause(name: Name, ph: Phloem = Depends(application)) -> PipelineSummary:
    """Let the scheduler create runs of the pipeline again."""
    return _set_paused(ph, name, False)


@router.post(
    "/{name}/runs",
    status_code=201,
    dependencies=[Depends(require(Role.OPERATOR))],
    responses={200: {"description": "a run with that idempotency key exists already"}},
)
def trigger(
    name: Name,
    body: Trigger,
    response: Response,
    ph: Phloem = Depends(application),
    cache: SpecCache = Depends(specs),
) -> RunSummary:
    """Queue a run now (a scheduler drives it). Params are checked against their types (422);
    a run for the same logical date is a 409; a repeated idempotency key returns the first
    run with 200."""
    from phloem.scheduler.commands import trigger as queue_run

    row = ph.store.catalog.pipeline(name)
    if not row.active:
        raise Problem(
            409,
            "pipeline gone",
            f"pipeline '{name}' is no longer defined in {row.info.file}; restore it to trigger it",
            pipeline=name,
        )
    if row.paused:
        raise Problem(
            409,
            "pipeline paused",
            f"pipeline '{name}' is paused; unpause it first (POST /api/v1/pipelines/{name}/"
            "unpause)",
            pipeline=name,
        )
    if body.idempotency_key is not None and body.idempotency_key.strip() == "":
        raise Problem(422, "invalid request", "idempotency_key must not be blank")
    run, created = queue_run(
        ph,
        name,
        params=body.params,
        logical_date=body.logical_date,
        idempotency_key=body.idempotency_key,
        spec=cache.get(row),
    )
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/runs/{run.run_id}"
    return RunSummary.of(run)
