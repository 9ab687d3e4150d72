"""``/connections``: URIs tasks connect with, encrypted at rest. Admins only, and write-only
secrets: a password (or a secret-looking query value) goes in and never comes out; responses
say only whether there is one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import Field

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.errors import ConnectionNotFound
from phloem.server.auth import application, require
from phloem.server.models import Body, Out

router = APIRouter(prefix="/connections", tags=["connections"])
Admin = Depends(require(Role.ADMIN))
Name = Annotated[str, Path(max_length=250)]


class ConnectionOut(Out):
    name: str
    conn_type: str
    host: str | None
    port: int | None
    login: str | None
    #: whether it holds a password (never the password)
    has_password: bool
    schema_: str | None = Field(alias="schema", serialization_alias="schema")
    #: query parameters, secret-looking ones masked
    extras: dict[str, str]
    #: the URI with its secrets masked
    uri: str
    updated_at: float


class ConnectionIn(Body):
    uri: str = Field(max_length=4000, description="The connection's URI, password included.")


def _out(ph: Phloem, name: str, updated_at: float) -> ConnectionOut:
    from phloem.variables import Connection

    c = Connection.from_uri(name, ph.variables.get_connection_uri(name))
    shown = c.public_dict()
    return ConnectionOut(
        name=name,
        conn_type=c.conn_type,
        host=c.host,
        port=c.port,
        login=c.login,
        has_password=c.password is not None,
        schema=c.schema,
        extras=shown["extras"],
        uri=shown["uri"],
        updated_at=updated_at,
    )


@router.get("", dependencies=[Admin])
def list_connections(ph: Phloem = Depends(application)) -> list[ConnectionOut]:
    return [_out(ph, c.name, c.updated_at) for c in ph.variables.list_connections()]


@router.get("/{name}", dependencies=[Admin])
def get_connection(name: Name, ph: Phloem = Depends(application)) -> ConnectionOut:
    for c in ph.variables.list_connections():
        if c.name == name:
            return _out(ph, name, c.updated_at)
    ph.variables.get_connection_uri(name)  # raises ConnectionNotFound, with a suggestion
    raise ConnectionNotFound(f"no connection '{name}'")


@router.put("/{name}", dependencies=[Admin])
def set_connection(
    name: Name, body: ConnectionIn, ph: Phloem = Depends(application)
) -> ConnectionOut:
    """Create or replace a connection; the answer shows it without its secrets."""
    from phloem.variables import Connection

    Connection.from_uri(name, body.uri)  # a URI that cannot be parsed is refused, unseen
    ph.variables.add_connection(name, body.uri, replace=True)
    return get_connection(name, ph)


@router.delete("/{name}", status_code=204, dependencies=[Admin])
def delete_connection(name: Name, ph: Phloem = Depends(application)) -> Response:
    if not ph.variables.delete_connection(name):
        raise ConnectionNotFound(f"no connection '{name}'; nothing deleted")
    return Response(status_code=204)


__all__ = ["router"]
