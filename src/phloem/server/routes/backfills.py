"""``/backfills``: a run for every interval of a pipeline's schedule in a range (operators),
or only what would be done (``/backfills/dry-run``, anyone who reads). The scheduler's own
backfill (``phloem backfill``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.errors import PhloemError
from phloem.scheduler.commands import BackfillItem
from phloem.server.auth import application, require
from phloem.wire import BackfillIn, BackfillItemOut, BackfillOut

router = APIRouter(prefix="/backfills", tags=["backfills"])


def _out(items: list[BackfillItem], dry_run: bool) -> BackfillOut:
    return BackfillOut(
        dry_run=dry_run,
        items=[
            BackfillItemOut(
                logical_date=i.logical_date,
                interval_end=i.interval_end,
                action=i.action,
                run_id=i.run_id,
                state=i.state,
            )
            for i in items
        ],
    )


def _check(body: BackfillIn) -> None:
    if body.rerun_failed and body.rerun_all:
        raise PhloemError("choose one of rerun_failed and rerun_all")


@router.post("/dry-run", dependencies=[Depends(require(Role.VIEWER))])
def plan(body: BackfillIn, ph: Phloem = Depends(application)) -> BackfillOut:
    """What a backfill would do with each interval whose start lies in [start, end]; changes
    nothing."""
    from phloem.scheduler.commands import plan_backfill

    _check(body)
    items = plan_backfill(
        ph,
        body.pipeline,
        body.start,
        body.end,
        rerun_failed=body.rerun_failed,
        rerun_all=body.rerun_all,
    )
    return _out(items, True)


@router.post("", dependencies=[Depends(require(Role.OPERATOR))])
def create_backfill(body: BackfillIn, ph: Phloem = Depends(application)) -> BackfillOut:
    """Create the runs of each interval whose start lies in [start, end] (the scheduler
    drives them, at most ``max_active_runs`` at once), and reset the ones to rerun."""
    from phloem.scheduler.commands import backfill

    _check(body)
    items = backfill(
        ph,
        body.pipeline,
        body.start,
        body.end,
        rerun_failed=body.rerun_failed,
        rerun_all=body.rerun_all,
        max_active_runs=body.max_active_runs,
    )
    return _out(items, False)


__all__ = ["router"]
