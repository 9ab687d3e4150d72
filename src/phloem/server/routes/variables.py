"""``/variables``: the JSON values tasks read with ``phloem.variable``. Admins only: a variable
may hold what only they should see."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import Field

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.errors import VariableNotFound
from phloem.server.auth import application, require
from phloem.server.models import Body, Out

router = APIRouter(prefix="/variables", tags=["variables"])
Admin = Depends(require(Role.ADMIN))
Key = Annotated[str, Path(max_length=250)]


class VariableOut(Out):
    key: str
    value: Any
    description: str | None
    updated_at: float


class VariableIn(Body):
    value: Any = Field(description="Any JSON value.")
    description: str | None = Field(default=None, max_length=1000)


@router.get("", dependencies=[Admin])
def list_variables(ph: Phloem = Depends(application)) -> list[VariableOut]:
    return [
        VariableOut(key=v.key, value=v.value, description=v.description, updated_at=v.updated_at)
        for v in ph.variables.list_variables()
    ]


@router.get("/{key}", dependencies=[Admin])
def get_variable(key: Key, ph: Phloem = Depends(application)) -> VariableOut:
    for v in ph.variables.list_variables():
        if v.key == key:
            return VariableOut(
                key=v.key, value=v.value, description=v.description, updated_at=v.updated_at
            )
    ph.variables.get_variable(key)  # raises VariableNotFound, with a suggestion
    raise VariableNotFound(f"no variable '{key}'")


@router.put("/{key}", dependencies=[Admin])
def set_variable(key: Key, body: VariableIn, ph: Phloem = Depends(application)) -> VariableOut:
    """Create or replace a variable."""
    ph.variables.set_variable(key, body.value, body.description)
    return get_variable(key, ph)


@router.delete("/{key}", status_code=204, dependencies=[Admin])
def delete_variable(key: Key, ph: Phloem = Depends(application)) -> Response:
    if not ph.variables.delete_variable(key):
        raise VariableNotFound(f"no variable '{key}'; nothing deleted")
    return Response(status_code=204)


__all__ = ["router"]
