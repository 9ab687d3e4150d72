"""Errors as ``application/problem+json`` (RFC 9457): one place maps every failure of a request
to a status and a document that says what went wrong and what to do.

- phloem's own errors: by class (``STATUS``; the nearest base class listed wins), with their
  context (pipeline, run, task...) as extra members;
- :class:`Problem`, raised by the server itself (authentication, CSRF, rate limits, cursors);
- request validation: 422 listing each bad field (``errors``), 400 for a body that is not JSON;
- anything else: a 500 problem whose detail names no internals (the traceback is logged).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from phloem.errors import (
    AccountError,
    AccountNotFound,
    ArtifactNotFound,
    BadCursor,
    ConnectionNotFound,
    DefinitionError,
    LastAdmin,
    LineageError,
    ModelNotFound,
    ParamError,
    PhloemError,
    PipelineNotFound,
    PoolNotFound,
    RunBusy,
    RunConflict,
    RunNotFound,
    SecretError,
    StoreError,
    StoreLocked,
    TaskNotFound,
    VariableNotFound,
)

log = logging.getLogger("phloem.server")

MEDIA_TYPE = "application/problem+json"
_RESERVED = frozenset({"type", "title", "status", "detail"})

#: the status of each phloem error class; a class not listed takes its nearest listed base's
STATUS: dict[type[PhloemError], int] = {
    PhloemError: 400,
    DefinitionError: 422,
    ParamError: 422,
    PipelineNotFound: 404,
    RunNotFound: 404,
    TaskNotFound: 404,
    PoolNotFound: 404,
    VariableNotFound: 404,
    ConnectionNotFound: 404,
    ModelNotFound: 404,
    AccountError: 400,
    AccountNotFound: 404,
    LastAdmin: 409,
    RunConflict: 409,
    RunBusy: 409,
    BadCursor: 422,
    LineageError: 422,
    ArtifactNotFound: 404,
    StoreError: 503,
    StoreLocked: 503,
    SecretError: 500,
}

TITLES = {
    400: "bad request",
    401: "not authenticated",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "request body too large",
    415: "unsupported media type",
    422: "invalid request",
    429: "too many requests",
    500: "internal error",
    503: "service unavailable",
}


class Problem(Exception):
    """A failure the server itself reports: ``status``, a short ``title`` and a ``detail`` that
    says what to do; ``headers`` (``WWW-Authenticate``, ``Retry-After``) go with it."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def status_of(exc: PhloemError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body = {
        "type": f"urn:phloem:problem:{title.replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        **{k: v for k, v in (extra or {}).items() if v is not None and k not in _RESERVED},
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _slug(cls: type) -> str:
    name = cls.__name__
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()


async def _phloem_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PhloemError)
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    context = {k: v if isinstance(v, (str, int, float, bool)) else str(v)
               for k, v in exc.context.items()}
    return problem_response(status, _slug(type(exc)), str(exc), extra=context)


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status, exc.title, exc.detail, headers=exc.headers, extra=exc.extra
    )


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts) if parts else "request"


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return problem_response(
                400,
                "malformed json",
                "the request body is not valid JSON "
                f"({err.get('ctx', {}).get('error', 'parse error')}); send a JSON document "
                "with Content-Type: application/json",
            )
        errors.append({"where": _where(err.get("loc", ())), "message": str(err.get("msg", ""))})
    detail = "; ".join(f"{e['where']}: {e['message']}" for e in errors[:5])
    return problem_response(
        422, "invalid request", detail or "invalid request", extra={"errors": errors}
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = TITLES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such endpoint: {request.url.path}; see /api/v1/openapi.json"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(exc.status_code, title, detail, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "internal error", "the server failed to answer this request; its log says why"
    )


def install(api: FastAPI) -> None:
    """Register the handlers on ``api``."""
    api.add_exception_handler(PhloemError, _phloem_error)
    api.add_exception_handler(Problem, _problem)
    api.add_exception_handler(RequestValidationError, _validation)
    api.add_exception_handler(StarletteHTTPException, _http)
    api.add_exception_handler(Exception, _unexpected)


__all__ = ["MEDIA_TYPE", "STATUS", "Problem", "install", "problem_response", "status_of"]
