"""``create_app``: the FastAPI application around one :class:`phloem.app.Phloem`."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.server import problems
from phloem.server.auth import Authenticator, rule_of
from phloem.server.limits import DEFAULT_MAX_BODY, DEFAULT_THREADS, BodyLimit, NoSniff, ThreadLimit
from phloem.server.proxies import TrustedProxies
from phloem.server.sessions import LoginLimits
from phloem.server.specs import SpecCache

API_PREFIX = "/api/v1"


def create_app(
    app: Phloem,
    *,
    authenticator: Authenticator | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    cookie_secure: bool = False,
    login_limits: LoginLimits | None = None,
    ui: bool = True,
    metrics_settle: float = 5.0,
    trusted_proxies: Iterable[str] | None = None,
    threads: int = DEFAULT_THREADS,
) -> FastAPI:
    """The REST API over ``app``'s store. ``authenticator`` reads credentials (default: the
    accounts in ``app``'s store); request bodies over ``max_body_bytes`` get a 413;
    ``cookie_secure`` marks the session cookie Secure (set it when served over HTTPS);
    ``ui`` serves the web UI's pages under ``/`` as well (``phloem.server.ui``);
    ``/metrics`` counters wait ``metrics_settle`` seconds for late commits;
    ``trusted_proxies`` (default: the settings' ``PHLOEM_TRUSTED_PROXIES``) are the reverse
    proxies whose ``X-Forwarded-For`` names the client (``phloem.server.proxies``); at most
    ``threads`` endpoints run at once."""
    from phloem import __version__
    from phloem.server.routes import ROUTERS

    api = FastAPI(
        title="phloem",
        version=__version__,
        description="The REST API of a phloem server: pipelines, runs, their logs and outputs.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    if authenticator is None:
        from phloem.server.sessions import StoreAuthenticator

        authenticator = StoreAuthenticator(app, cookie_secure=cookie_secure)
    api.state.phloem = app
    api.state.authenticator = authenticator
    api.state.cookie_secure = cookie_secure
    api.state.login_limits = login_limits or LoginLimits()
    api.state.trusted_proxies = TrustedProxies(
        app.settings.trusted_proxies if trusted_proxies is None else trusted_proxies
    )
    api.state.specs = SpecCache()
    #: set when the server stops: open event streams end, so the stop does not wait on them
    api.state.stopping = threading.Event()
    problems.install(api)
    api.add_middleware(ThreadLimit, threads=threads)
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    api.add_middleware(NoSniff)
    for router in ROUTERS:
        api.include_router(router, prefix=API_PREFIX)
    from phloem.server.metrics import registry
    from phloem.server.routes import metrics

    api.state.metrics = registry(app, settle=metrics_settle)
    api.include_router(metrics.router)  # where Prometheus looks: /metrics

    if ui:
        from phloem.server.ui import install

        install(api, API_PREFIX)
    return api


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One API route as the security test sees it: where, which methods, and the access rules
    its dependencies declare (``phloem.server.auth``)."""

    path: str
    methods: frozenset[str]
    rules: tuple[Role | str, ...]
    name: str


def _rules(dependant: Any) -> list[Role | str]:
    found: list[Role | str] = []
    for dep in dependant.dependencies:
        rule = rule_of(dep.call)
        if rule is not None:
            found.append(rule)
        found.extend(_rules(dep))
    return found


def endpoints(
    routes: Iterable[Any], prefix: str = "", inherited: tuple[Any, ...] = ()
) -> Iterator[Endpoint | Any]:
    """Every route reachable from ``routes``: an :class:`Endpoint` for each API route, the
    route itself for any other (the OpenAPI document...). Routers included lazily (newer
    FastAPI keeps them as a branch) are walked into."""
    for route in routes:
        if isinstance(route, APIRoute):
            rules = [r for d in inherited if (r := rule_of(d.dependency)) is not None]
            yield Endpoint(
                prefix + route.path,
                frozenset(route.methods or ()),
                tuple(rules + _rules(route.dependant)),
                route.name,
            )
        elif hasattr(route, "original_router"):
            ctx = getattr(route, "include_context", None)
            yield from endpoints(
                route.original_router.routes,
                prefix + str(getattr(ctx, "prefix", "")),
                inherited + tuple(getattr(ctx, "dependencies", ())),
            )
        else:
            yield route


__all__ = ["API_PREFIX", "Endpoint", "create_app", "endpoints"]
