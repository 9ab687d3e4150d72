"""``/pools``: named slot counts that bound how many tasks run at once. Anyone may read them;
only an admin sets them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import Field

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.server.auth import application, require
from phloem.server.models import Body, Out

router = APIRouter(prefix="/pools", tags=["pools"])

PoolName = Annotated[str, Path(max_length=250, pattern=r"^[^\x00-\x1f/]+$")]


class PoolOut(Out):
    name: str
    slots: int
    #: slots taken now by queued and running tasks
    used: int


class PoolIn(Body):
    slots: int = Field(ge=0, le=1_000_000, description="How many slots may be taken at once.")
    description: str | None = Field(default=None, max_length=1000)


@router.get("", dependencies=[Depends(require(Role.VIEWER))])
def list_pools(ph: Phloem = Depends(application)) -> list[PoolOut]:
    """Every pool, its size and the slots in use."""
    sizes, used = ph.store.pools(), ph.store.pool_usage()
    return [PoolOut(name=n, slots=s, used=used.get(n, 0)) for n, s in sorted(sizes.items())]


@router.put("/{name}", dependencies=[Depends(require(Role.ADMIN))])
def set_pool(name: PoolName, body: PoolIn, ph: Phloem = Depends(application)) -> PoolOut:
    """Create or resize a pool."""
    ph.store.set_pool(name, body.slots, body.description)
    return PoolOut(name=name, slots=body.slots, used=ph.store.pool_usage().get(name, 0))


__all__ = ["router"]
