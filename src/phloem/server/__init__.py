"""phloem's HTTP server: the REST API under ``/api/v1`` (and later the web UI), built on FastAPI.

Only this package imports FastAPI and uvicorn. :func:`create_app` wraps one application
object (:class:`phloem.app.Phloem`) in a FastAPI app; ``phloem server`` serves it with uvicorn
beside the scheduler (see ``phloem.server.process``).

Adding a resource (a router)
----------------------------
1. Write ``phloem/server/routes/<resource>.py`` holding ``router = APIRouter(prefix="/<resource>",
   tags=["<resource>"])``. Endpoints are plain ``def`` functions (FastAPI runs them on its thread
   pool, so a store call never blocks the event loop).
2. Give EVERY endpoint its access rule as a dependency: ``dependencies=[Depends(require(Role.
   VIEWER))]`` (or OPERATOR, ADMIN; ``public()`` for the rare endpoint anyone may call), or take
   the caller as a parameter: ``who: Principal = Depends(require(Role.OPERATOR))``. A test
   (tests/test_server_security.py) enumerates the routes and fails on one without a rule, and
   calls each with every kind of credential.
3. Take the application with ``ph: Phloem = Depends(application)``; bodies are models derived
   from :class:`phloem.server.models.Body` (unknown fields are refused); list endpoints take
   ``limit: Limit`` and a ``cursor`` and return :class:`phloem.server.paging.Page`.
4. Raise phloem's own errors (``RunNotFound``...): one handler (``phloem.server.problems``)
   turns them into ``application/problem+json`` with the right status; add a status for a new
   error class to ``problems.STATUS``.
5. Add the module to ``ROUTERS`` in ``phloem/server/routes/__init__.py``.
"""

from __future__ import annotations

from phloem.server.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
