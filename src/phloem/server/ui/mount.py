"""Mounting the UI on the server's FastAPI app (kept apart from the pages and the site so
that neither imports the other)."""

from __future__ import annotations

from fastapi import FastAPI

from phloem.server.ui.pages import router
from phloem.server.ui.site import Site


def install(api: FastAPI, api_prefix: str) -> None:
    """Serve the UI's pages from ``api`` (under ``/``), beside the REST API."""
    api.state.ui = Site(api_prefix, api.state.specs)
    api.include_router(router)


__all__ = ["install"]
