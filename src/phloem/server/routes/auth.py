"""Browser login and logout: a session cookie (HttpOnly, SameSite=Strict) and the CSRF token
that must come back in ``X-CSRF-Token`` on every state-changing request made with it."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response

from phloem.accounts import manage
from phloem.accounts.roles import Role
from phloem.accounts.secrets import csrf_of, digest, new_secret
from phloem.app import Phloem
from phloem.server.auth import Principal, application, public, require
from phloem.server.models import Body, Out
from phloem.server.problems import Problem
from phloem.server.proxies import client_address
from phloem.server.sessions import (
    SESSION_COOKIE,
    SESSION_TTL,
    LoginLimits,
    check_login_limits,
)

router = APIRouter(prefix="/auth", tags=["auth"])


class Login(Body):
    user: str
    password: str


class LoggedIn(Out):
    user: str
    role: Role
    #: send it back as the X-CSRF-Token header on every request that changes state
    csrf_token: str
    expires_at: float


@router.post("/login", dependencies=[Depends(public())])
def login(
    body: Login, request: Request, response: Response, ph: Phloem = Depends(application)
) -> LoggedIn:
    """Check a user's password and start a browser session (set as a cookie)."""
    limits: LoginLimits = request.app.state.login_limits
    address = client_address(request)  # behind a trusted proxy: X-Forwarded-For's client
    user_name = body.user[:120]
    check_login_limits(ph, limits, user_name, address)
    user = manage.check_password(ph, user_name, body.password)
    if user is None:
        ph.store.accounts.login_failed(
            [f"user:{user_name}", f"addr:{address}"], time.time(), keep=limits.window
        )
        raise Problem(401, "login failed", "wrong user name or password")
    ph.store.accounts.forget_login_failures([f"user:{user_name}"])
    if user.disabled:
        raise Problem(403, "account disabled", f"user '{user.name}' is disabled; ask an admin")
    secret = new_secret()
    now = time.time()
    ph.store.accounts.add_session(digest(secret), user.name, now, now + SESSION_TTL)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_TTL),
        httponly=True,
        samesite="strict",
        secure=bool(request.app.state.cookie_secure),
        path="/",
    )
    return LoggedIn(
        user=user.name, role=user.role, csrf_token=csrf_of(secret), expires_at=now + SESSION_TTL
    )


@router.post("/logout", status_code=204)
def logout(
    request: Request,
    response: Response,
    who: Principal = Depends(require(Role.VIEWER)),
    ph: Phloem = Depends(application),
) -> None:
    """End the browser session of the cookie (a bearer token is not affected)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        ph.store.accounts.end_session(digest(secret))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
