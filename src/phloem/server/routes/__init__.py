"""One router per resource; ``ROUTERS`` is what ``create_app`` mounts under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from phloem.server.routes import (
    accounts,
    assets,
    auth,
    backfills,
    connections,
    events,
    health,
    lineage,
    models,
    pipelines,
    pools,
    runs,
    tasks,
    variables,
)

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    pipelines.router,
    events.router,
    runs.router,
    tasks.router,
    backfills.router,
    pools.router,
    variables.router,
    connections.router,
    assets.router,
    lineage.router,
    accounts.router,
    models.router,
]

__all__ = ["ROUTERS"]
