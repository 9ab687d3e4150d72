"""``GET /metrics``: Prometheus's text format (see phloem/server/metrics.py for how each
figure is computed). A viewer's bearer token reads it: give Prometheus one with
``authorization: {credentials_file: ...}`` in its scrape config."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from phloem.accounts.roles import Role
from phloem.server.auth import require

router = APIRouter(tags=["server"])


@router.get("/metrics", dependencies=[Depends(require(Role.VIEWER))], include_in_schema=False)
def metrics(request: Request) -> Response:
    """The server's and the store's figures, for Prometheus."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    reg = request.app.state.metrics
    return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)
