"""Who is calling, and may they: the access rule every endpoint declares.

An endpoint depends on ``require(Role.X)`` (the caller must be authenticated with role X or
above) or on ``public()`` (anyone). Each rule is a dependency carrying ``RULE_ATTR``, so a test
can read every route's rule off the app and fail on a route that has none.

Credentials are read by an :class:`Authenticator` (the store's accounts in production, see
``phloem.server.sessions``): a bearer token in ``Authorization``, or a session cookie from
the browser login. A request made with a session cookie that changes state (any method but
GET, HEAD, OPTIONS) must also carry the session's CSRF token in ``X-CSRF-Token``; a bearer
token needs none (a browser never sends it on its own).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.server.problems import Problem

#: the attribute that marks a dependency as an endpoint's access rule (a Role, or PUBLIC)
RULE_ATTR = "__phloem_rule__"
PUBLIC = "public"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a user, their role, and how they proved it."""

    user: str
    role: Role
    via: str  # "token" | "session"
    #: the CSRF token a session's state-changing requests must carry (sessions only)
    csrf: str | None = None
    token: str | None = None  # the token's name, for tokens


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Principal | None:
        """The caller the request's credentials prove, None when it carries none; raises a
        401 :class:`Problem` for credentials that are wrong, expired or revoked."""
        ...


def unauthorized(detail: str) -> Problem:
    return Problem(401, "not authenticated", detail, headers={"WWW-Authenticate": "Bearer"})


async def application(request: Request) -> Phloem:
    """The application object the server wraps (a dependency; ``async`` because it does no
    I/O: FastAPI runs it on the event loop instead of handing it to a worker thread)."""
    ph: Phloem = request.app.state.phloem
    return ph


def require(role: Role) -> Callable[[Request], Principal]:
    """The rule "authenticated, with ``role`` or above" as a dependency returning the caller."""

    def rule(request: Request) -> Principal:
        auth: Authenticator = request.app.state.authenticator
        who = auth.authenticate(request)
        if who is None:
            raise unauthorized(
                "this endpoint needs credentials: send `Authorization: Bearer TOKEN` (create "
                "one with `phloem tokens create NAME`) or log in at POST /api/v1/auth/login"
            )
        if not who.role.allows(role):
            raise Problem(
                403,
                "forbidden",
                f"user '{who.user}' is a {who.role.value}; this needs the {role.value} role "
                f"(an admin can change it: `phloem users add {who.user} --role {role.value} "
                "--replace`)",
            )
        if who.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not who.csrf or not hmac.compare_digest(sent.encode(), who.csrf.encode()):
                raise Problem(
                    403,
                    "csrf token missing",
                    f"a request made with the session cookie that changes state must carry "
                    f"the {CSRF_HEADER} header the login returned",
                )
        request.state.principal = who
        return who

    setattr(rule, RULE_ATTR, role)
    rule.__name__ = f"require_{role.value}"
    return rule


def public() -> Callable[[], None]:
    """The rule "anyone, even without credentials" (say so explicitly: health, login)."""

    def rule() -> None:
        return None

    setattr(rule, RULE_ATTR, PUBLIC)
    rule.__name__ = "public"
    return rule


def rule_of(call: object) -> Role | str | None:
    rule = getattr(call, RULE_ATTR, None)
    return rule if isinstance(rule, (Role, str)) else None


__all__ = [
    "CSRF_HEADER",
    "PUBLIC",
    "Authenticator",
    "Principal",
    "application",
    "public",
    "require",
    "rule_of",
    "unauthorized",
]
