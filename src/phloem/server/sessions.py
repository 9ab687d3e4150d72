"""Credentials checked against the accounts in the store: bearer tokens for scripts and the
CLI, a session cookie (with its CSRF token) for browsers, and the login's rate limits.

Everything is in the store, so several servers on one database accept the same tokens and
sessions, and count failed logins together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request

from phloem.accounts.roles import Role
from phloem.accounts.secrets import csrf_of, digest
from phloem.app import Phloem
from phloem.server.auth import Principal, unauthorized
from phloem.server.problems import Problem

SESSION_COOKIE = "phloem_session"
#: how long a browser session lasts
SESSION_TTL = 12 * 3600.0


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """At most ``per_user`` failed logins for one user name, and ``per_address`` from one
    client address, within ``window`` seconds; past that, logins get 429 until the window
    has passed."""

    per_user: int = 5
    per_address: int = 20
    window: float = 300.0


class StoreAuthenticator:
    def __init__(self, app: Phloem, *, cookie_secure: bool = False) -> None:
        self.app = app
        self.cookie_secure = cookie_secure

    def authenticate(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthorized(
                    "the Authorization header must be `Bearer TOKEN` (create a token with "
                    "`phloem tokens create NAME`)"
                )
            return self._token(token.strip())
        secret = request.cookies.get(SESSION_COOKIE)
        if secret:
            return self._session(secret)
        return None

    def _token(self, token: str) -> Principal:
        found = self.app.store.accounts.token_by_hash(digest(token))
        if found is None:
            raise unauthorized("this token is not known; create one with `phloem tokens create`")
        record, user = found
        if record.revoked_at is not None:
            raise unauthorized(f"token '{record.name}' was revoked; create a new one")
        if record.expires_at is not None and record.expires_at <= time.time():
            raise unauthorized(f"token '{record.name}' has expired; create a new one")
        if user.disabled_at is not None:
            raise unauthorized(f"user '{user.name}' is disabled; an admin can enable it")
        return Principal(user.name, Role(user.role), "token", token=record.name)

    def _session(self, secret: str) -> Principal:
        found = self.app.store.accounts.session(digest(secret))
        if found is None or found[0].expires_at <= time.time():
            raise unauthorized("the session has ended; log in again")
        _, user = found
        if user.disabled_at is not None:  # its sessions end when disabled; this is a backstop
            raise unauthorized(f"user '{user.name}' is disabled; an admin can enable it")
        return Principal(user.name, Role(user.role), "session", csrf=csrf_of(secret))


def check_login_limits(app: Phloem, limits: LoginLimits, user: str, address: str) -> None:
    now = time.time()
    counts = app.store.accounts.login_failures(
        [f"user:{user}", f"addr:{address}"], now - limits.window
    )
    if counts[f"user:{user}"] >= limits.per_user or counts[f"addr:{address}"] >= limits.per_address:
        raise Problem(
            429,
            "too many requests",
            f"too many failed logins; wait {limits.window:g} seconds and try again",
            headers={"Retry-After": str(int(limits.window))},
        )


__all__ = ["SESSION_COOKIE", "SESSION_TTL", "LoginLimits", "StoreAuthenticator",
           "check_login_limits"]
