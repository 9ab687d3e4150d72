"""``/users`` and ``/tokens``: the accounts, managed by admins over the API as with ``phloem
users`` / ``phloem tokens``. A token's secret is in the answer that creates it, and nowhere
else, ever; passwords are never returned."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import Field

from phloem.accounts import manage
from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.errors import AccountError
from phloem.server.auth import Principal, application, require
from phloem.server.models import Body, Out
from phloem.server.problems import Problem
from phloem.store.accounts import TokenRecord

router = APIRouter(tags=["accounts"])

Name = Annotated[str, Path(max_length=120)]


class UserOut(Out):
    name: str
    role: Role
    created_at: float
    #: a disabled user cannot log in nor use its tokens
    disabled: bool = False

    @classmethod
    def of(cls, u: manage.User) -> UserOut:
        return cls(name=u.name, role=u.role, created_at=u.created_at, disabled=u.disabled)


class UserChange(Body):
    #: the user's new role
    role: Role | None = None
    #: true: disable the user (its sessions end, its tokens are refused); false: enable it
    disabled: bool | None = None


class NewUser(Body):
    name: Annotated[str, Field(max_length=120)]
    role: Role
    password: Annotated[str, Field(min_length=manage.MIN_PASSWORD, max_length=1024)]
    #: give an existing user this role and password
    replace: bool = False


class TokenOut(Out):
    name: str
    user: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    state: str  # "valid" | "expired" | "revoked"

    @classmethod
    def of(cls, t: TokenRecord, now: float) -> TokenOut:
        state = (
            "revoked"
            if t.revoked_at is not None
            else "expired"
            if t.expires_at is not None and t.expires_at <= now
            else "valid"
        )
        return cls(
            name=t.name,
            user=t.user,
            created_at=t.created_at,
            expires_at=t.expires_at,
            revoked_at=t.revoked_at,
            state=state,
        )


class NewToken(Body):
    name: Annotated[str, Field(max_length=120)]
    #: whose token (its role); default: the caller
    user: Annotated[str | None, Field(max_length=120)] = None
    #: a lifetime such as 30d, 12h, 90m, 2w; none: it never expires
    expires: Annotated[str | None, Field(max_length=20)] = None


class CreatedToken(TokenOut):
    #: the token itself: shown in this answer only
    token: str


ADMIN = Depends(require(Role.ADMIN))


@router.get("/users", dependencies=[ADMIN])
def list_users(ph: Phloem = Depends(application)) -> list[UserOut]:
    """Users and their roles."""
    return [UserOut.of(u) for u in manage.users(ph)]


@router.post("/users", status_code=201)
def add_user(
    body: NewUser,
    who: Principal = Depends(require(Role.ADMIN)),
    ph: Phloem = Depends(application),
) -> UserOut:
    """Add a user (or, with ``replace``, change a user's role and password)."""
    if body.replace and body.role != Role.ADMIN:
        _not_yourself(who, body.name, "demote")
    u = manage.add_user(ph, body.name, body.role, body.password, replace=body.replace)
    return UserOut.of(u)


def _not_yourself(who: Principal, name: str, what: str) -> None:
    """An admin does not demote, disable or remove itself over the API: it would cut off the
    very session or token it acts with (the web UI offers no such button), and only another
    admin could undo it. That the server keeps an enabled admin at all is a rule of the
    accounts (:class:`phloem.errors.LastAdmin`, also 409), checked for every caller, the CLI
    too, and atomically: two admins demoting each other at once pass this check, not that."""
    if who.user == name:
        raise Problem(
            409,
            "conflict",
            f"you cannot {what} your own user '{name}'; ask another admin (make one first if "
            "you are the only one)",
        )


@router.patch("/users/{name}")
def change_user(
    name: Name,
    body: UserChange,
    who: Principal = Depends(require(Role.ADMIN)),
    ph: Phloem = Depends(application),
) -> UserOut:
    """Change a user's role, or disable or enable it."""
    if body.role is None and body.disabled is None:
        raise Problem(422, "invalid request", "give a role, or disabled: true or false")
    if body.disabled or (body.role is not None and body.role != Role.ADMIN):
        _not_yourself(who, name, "disable" if body.disabled else "demote")
    return UserOut.of(manage.update_user(ph, name, role=body.role, disabled=body.disabled))


@router.delete("/users/{name}", status_code=204)
def remove_user(
    name: Name,
    who: Principal = Depends(require(Role.ADMIN)),
    ph: Phloem = Depends(application),
) -> Response:
    """Remove a user with its tokens and sessions."""
    _not_yourself(who, name, "remove")
    manage.remove_user(ph, name)
    return Response(status_code=204)


@router.get("/tokens", dependencies=[ADMIN])
def list_tokens(ph: Phloem = Depends(application)) -> list[TokenOut]:
    """Tokens (never their secrets)."""
    now = time.time()
    return [TokenOut.of(t, now) for t in manage.tokens(ph)]


@router.post("/tokens", status_code=201)
def create_token(
    body: NewToken,
    who: Principal = Depends(require(Role.ADMIN)),
    ph: Phloem = Depends(application),
) -> CreatedToken:
    """Create a token; its secret is in this answer only."""
    try:
        lifetime = manage.parse_expiry(body.expires)
    except AccountError as exc:
        raise Problem(422, "invalid request", f"expires: {exc}") from None
    token, rec = manage.create_token(ph, body.name, body.user or who.user, lifetime)
    return CreatedToken(**TokenOut.of(rec, time.time()).model_dump(), token=token)


@router.delete("/tokens/{name}", status_code=204, dependencies=[ADMIN])
def revoke_token(name: Name, ph: Phloem = Depends(application)) -> Response:
    """Revoke a token at once."""
    manage.revoke_token(ph, name)
    return Response(status_code=204)
