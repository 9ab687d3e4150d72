"""One router per resource; ``ROUTERS`` is what ``create_app`` mounts under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from phloem.server.routes import auth, events, health, pipelines

ROUTERS: list[APIRouter] = [health.router, auth.router, pipelines.router, events.router]

__all__ = ["ROUTERS"]
