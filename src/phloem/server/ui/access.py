"""Who may see a page, and how a page fails.

A page declares its rule like an API endpoint (``page(Role.VIEWER)``), so the route table the
security test reads covers the UI too; the rule is the API's own (``require``), so a page
and the endpoint behind it can never disagree. Where the API answers 401, a page sends the
browser to the login form (and back afterwards); any other failure is an HTML page with the
status and message the API would give.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from phloem.accounts.roles import Role
from phloem.errors import PhloemError
from phloem.server.auth import RULE_ATTR, Principal, require
from phloem.server.problems import Problem, status_of


class LoginNeeded(Exception):
    """The page needs a logged-in user and the request has no (valid) session."""


def page(role: Role) -> Callable[[Request], Principal]:
    """The rule "logged in with ``role`` or above" for a page (a dependency returning the
    user): the API's rule, with a missing or ended session sent to the login form."""
    rule = require(role)

    def page_rule(request: Request) -> Principal:
        try:
            return rule(request)
        except Problem as exc:
            if exc.status == 401:
                raise LoginNeeded() from None
            raise

    setattr(page_rule, RULE_ATTR, role)
    page_rule.__name__ = f"page_{role.value}"
    return page_rule


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="")


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    ui = request.app.state.ui
    who = getattr(request.state, "principal", None)
    html = ui.env.get_template("error.html").render(
        title=title, status=status, detail=detail, **ui.base(request, who)
    )
    return HTMLResponse(html, status_code=status)


class PageRoute(APIRoute):
    """A page's route: failures become HTML (or a redirect to the login form), not the API's
    problem documents."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            # the page's script asks for JSON: its failures are the API's problem documents
            script = "application/json" in request.headers.get("accept", "")
            try:
                return await handler(request)
            except LoginNeeded:
                if script:
                    raise Problem(
                        401, "not authenticated", "the session has ended; log in again"
                    ) from None
                return RedirectResponse(login_url(request), status_code=303)
            except Problem as exc:
                if script:
                    raise
                return error_page(request, exc.status, exc.title, exc.detail)
            except PhloemError as exc:
                if script:
                    raise
                return error_page(request, status_of(exc), "cannot show this page", str(exc))

        return answer


__all__ = ["LoginNeeded", "PageRoute", "error_page", "login_url", "page"]
