"""The base of request bodies: unknown fields are an error, not silently dropped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Body(BaseModel):
    """A request body: a misspelt field is a 422 naming it, never ignored."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """A response document."""

    model_config = ConfigDict(extra="forbid")


__all__ = ["Body", "Out"]
