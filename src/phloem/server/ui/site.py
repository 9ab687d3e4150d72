"""The UI of one server: its templates, the graphs it has read, its static files, and what
every page's frame needs (the user, their role, the CSRF token for the page's scripts)."""

from __future__ import annotations

import gzip
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from phloem.accounts.roles import Role
from phloem.server.auth import Principal
from phloem.server.specs import SpecCache
from phloem.server.ui.overview import NextRuns
from phloem.server.ui.render import environment, static_versions
from phloem.server.ui.specs import Graphs

#: pages smaller than this go as they are (compressing them would save less than a packet)
COMPRESS_FROM = 1400


def compressed(request: Request, body: bytes) -> tuple[bytes, dict[str, str]]:
    """``body`` gzipped when the browser takes it and it is worth it: a grid or a pipelines
    page of 200 KB of repetitive markup goes as some 20 KB, for about a millisecond of CPU."""
    headers = {"Vary": "Accept-Encoding"}
    if len(body) < COMPRESS_FROM or "gzip" not in request.headers.get("accept-encoding", ""):
        return body, headers
    headers["Content-Encoding"] = "gzip"
    return gzip.compress(body, 5, mtime=0), headers


class Site:
    def __init__(self, api_prefix: str, specs: SpecCache) -> None:
        self.env: Environment = environment()
        self.graphs = Graphs(specs)
        self.next_runs = NextRuns()
        self.versions = static_versions()
        self.api_prefix = api_prefix

    def static(self, name: str) -> str:
        return f"/ui/static/{name}?v={self.versions.get(name, '0')}"

    def base(self, request: Request, who: Principal | None) -> dict[str, Any]:
        role = who.role if who else None
        return {
            "who": who,
            "can_operate": bool(role and role.allows(Role.OPERATOR)),
            "is_admin": bool(role and role.allows(Role.ADMIN)),
            "csrf": (who.csrf if who else None) or "",
            "api": self.api_prefix,
            "static": self.static,
            "path": request.url.path,
        }

    def render(
        self,
        request: Request,
        who: Principal | None,
        name: str,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**self.base(request, who), **context)
        body, encoding = compressed(request, html.encode())
        return HTMLResponse(
            body,
            status_code=status,
            headers={
                **encoding,
                "Cache-Control": "no-store",
                # scripts and styles come only from this server; no inline script runs
                "Content-Security-Policy": (
                    "default-src 'self'; script-src 'self'; style-src 'self'; "
                    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                    "form-action 'self'"
                ),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
            },
        )


__all__ = ["Site", "compressed"]
