"""``/assets``: the assets tasks produce (``outputs=[...]``) and each update of them, newest
first. Asset names may hold ``/`` (``s3://bucket/table``), so they go in the query."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.server.auth import application, require
from phloem.server.models import Out
from phloem.server.paging import Cursor, Limit, Page

router = APIRouter(prefix="/assets", tags=["assets"])
Viewer = Depends(require(Role.VIEWER))


class AssetOut(Out):
    name: str
    events: int
    last_event_id: int
    last_event_at: float


class AssetEventOut(Out):
    id: int
    asset: str
    run_id: str | None
    task_id: str | None
    at: float
    metadata: dict[str, Any] | None = None


@router.get("", dependencies=[Viewer])
def list_assets(ph: Phloem = Depends(application)) -> list[AssetOut]:
    """Every asset that was ever updated, with its count of updates and the last one."""
    return [
        AssetOut(
            name=a.name,
            events=a.events,
            last_event_id=a.last_event_id,
            last_event_at=a.last_event_at,
        )
        for a in ph.store.listing.assets()
    ]


@router.get("/events", dependencies=[Viewer])
def list_asset_events(
    ph: Phloem = Depends(application),
    asset: Annotated[str | None, Query(max_length=500, description="Of this asset only.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[AssetEventOut]:
    """Updates of assets (of one, if asked), newest first, in pages."""
    page = ph.store.listing.asset_events(asset, limit=limit, cursor=cursor)
    return Page(
        items=[
            AssetEventOut(
                id=e.id,
                asset=e.asset,
                run_id=e.run_id,
                task_id=e.task_id,
                at=e.at,
                metadata=e.metadata,
            )
            for e in page.items
        ],
        next_cursor=page.next_cursor,
    )


__all__ = ["router"]
