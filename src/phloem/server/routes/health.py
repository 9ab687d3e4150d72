"""``/health`` (anyone: load balancers and probes) and ``/me`` (who the credentials name)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from phloem.accounts.roles import Role
from phloem.server.auth import Principal, public, require
from phloem.server.models import Out

router = APIRouter(tags=["server"])


class Health(Out):
    status: str
    version: str


class Me(Out):
    user: str
    role: Role
    via: str


@router.get("/health", dependencies=[Depends(public())])
def health() -> Health:
    """The server answers (it says nothing about the store, so probes stay cheap)."""
    from phloem import __version__

    return Health(status="ok", version=__version__)


@router.get("/me")
def me(who: Principal = Depends(require(Role.VIEWER))) -> Me:
    """The user and role the request's credentials name."""
    return Me(user=who.user, role=who.role, via=who.via)
