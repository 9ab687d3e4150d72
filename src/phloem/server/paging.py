"""Cursor pagination: a page of items and an opaque cursor to the next page.

A cursor is the position after the last item given (for example its sort key), encoded so
clients treat it as a token; a cursor that does not decode is a 422, not a 500.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from phloem.server.problems import Problem

#: the most items one page holds; a larger ``limit`` is refused (422) with this number
MAX_PAGE = 500
DEFAULT_PAGE = 50

Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Items per page (1..{MAX_PAGE}).")
]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="The `next_cursor` of the previous page."),
]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    #: pass it as ``cursor`` for the next page; None on the last page
    next_cursor: str | None = None


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, **shape: type) -> dict[str, Any]:
    """The position a cursor holds; ``shape`` names the keys it must have and their types."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict) or any(
        not isinstance(value.get(k), t) for k, t in shape.items()
    ):
        raise Problem(
            422,
            "bad cursor",
            f"cursor {cursor[:40]!r} is not one this server gave; pass the `next_cursor` of "
            "the previous page, or leave it out for the first page"
        )
    return value


__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "Cursor", "Limit", "Page", "decode_cursor",
           "encode_cursor"]
