"""The UI's pages: each reads the store through the view modules and renders a template.

Pages only read. What changes state (trigger, pause, retry, cancel, backfill, admin edits) is
sent by the page's script to the REST API with the session's CSRF token, so the API's rules
decide; a viewer's pages simply have no such buttons.
"""

from __future__ import annotations

import functools
import gzip
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.errors import PhloemError
from phloem.server.auth import Principal, application, public
from phloem.server.ui import overview, runview, taskview
from phloem.server.ui.access import PageRoute, page
from phloem.server.ui.render import STATIC, STATIC_TYPES
from phloem.server.ui.site import Site
from phloem.states import RunState

router = APIRouter(route_class=PageRoute, include_in_schema=False)

VIEWER = Depends(page(Role.VIEWER))
OPERATOR = Depends(page(Role.OPERATOR))
ADMIN = Depends(page(Role.ADMIN))
APP = Depends(application)


def site(request: Request) -> Site:
    ui: Site = request.app.state.ui
    return ui


@functools.cache
def _static_files() -> dict[str, tuple[bytes, bytes, str]]:
    """Each static file: its bytes, gzipped once, and its media type."""
    return {
        p.name: (p.read_bytes(), gzip.compress(p.read_bytes(), 9, mtime=0), STATIC_TYPES[p.suffix])
        for p in STATIC.iterdir()
        if p.suffix in STATIC_TYPES
    }


@router.get("/ui/static/{name}", dependencies=[Depends(public())])
def static_file(request: Request, name: str) -> Response:
    """The UI's own CSS and scripts (a fixed list; no path from the request is opened)."""
    found = _static_files().get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    plain, packed, media_type = found
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type=media_type, headers=headers)
    return Response(plain, media_type=media_type, headers=headers)


@router.get("/login", dependencies=[Depends(public())])
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    return site(request).render(request, None, "login.html", next=target)


@router.get("/")
def pipelines_page(request: Request, who: Principal = VIEWER, ph: Phloem = APP) -> HTMLResponse:
    lines, problems = overview.pipelines(ph.store, site(request).next_runs)
    return site(request).render(request, who, "pipelines.html", pipelines=lines, problems=problems)


def _state(text: str | None) -> RunState | None:
    if not text:
        return None
    try:
        return RunState(text)
    except ValueError:
        raise PhloemError(
            f"state {text!r} is not a run state (use one of {', '.join(s.value for s in RunState)})"
        ) from None


@router.get("/pipelines/{name}")
def grid_page(
    request: Request,
    name: str,
    state: str | None = None,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    who: Principal = VIEWER,
    ph: Phloem = APP,
) -> HTMLResponse:
    row = ph.store.catalog.pipeline(name)
    ui = site(request)
    g = overview.grid(
        ph.store,
        ui.graphs,
        row,
        state=_state(state),
        start=overview.parse_day(start),
        end=overview.parse_day(end, end=True),
    )
    return ui.render(
        request,
        who,
        "grid.html",
        pipeline=row,
        grid=g,
        filters={"state": state or "", "from": start or "", "to": end or ""},
        run_states=[s.value for s in RunState],
    )


@router.get("/pipelines/{name}/trigger")
def trigger_page(
    request: Request, name: str, who: Principal = OPERATOR, ph: Phloem = APP
) -> HTMLResponse:
    from phloem.server.ui.forms import fields_of

    row = ph.store.catalog.pipeline(name)
    ui = site(request)
    spec = ui.graphs.of_pipeline(row)
    if spec is None:
        raise PhloemError(
            f"the code of pipeline '{name}' cannot be read from {row.info.file} now; "
            "fix its import error (see the pipelines page) and try again"
        )
    return ui.render(
        request, who, "trigger.html", pipeline=row, fields=fields_of(dict(spec.params))
    )


@router.get("/pipelines/{name}/backfill")
def backfill_page(
    request: Request, name: str, who: Principal = OPERATOR, ph: Phloem = APP
) -> HTMLResponse:
    row = ph.store.catalog.pipeline(name)
    return site(request).render(request, who, "backfill.html", pipeline=row)


@router.get("/runs/{run_id}")
def run_page(
    request: Request, run_id: str, who: Principal = VIEWER, ph: Phloem = APP
) -> HTMLResponse:
    ui = site(request)
    view = runview.run_page(ph.store, ui.graphs, run_id)
    return ui.render(request, who, "run.html", view=view)


@router.get("/runs/{run_id}/live")
def run_live(run_id: str, ph: Phloem = APP, who: Principal = VIEWER) -> JSONResponse:
    """The run's and its tasks' states now, for the run page's live refresh."""
    return JSONResponse(
        runview.live_states(ph.store, run_id), headers={"Cache-Control": "no-store"}
    )


@router.get("/runs/{run_id}/tasks/{task_id}")
def task_page(
    request: Request,
    run_id: str,
    task_id: str,
    map_index: int | None = None,
    attempt: int | None = Query(None, alias="try"),
    page_no: int = Query(0, alias="page", ge=0),
    who: Principal = VIEWER,
    ph: Phloem = APP,
) -> HTMLResponse:
    view = taskview.task_page(ph, run_id, task_id, map_index, attempt, page_no)
    return site(request).render(
        request,
        who,
        "task.html",
        view=view,
        page_no=page_no,
        page_size=taskview.INSTANCES_PAGE,
    )


@router.get("/runs/{run_id}/tasks/{task_id}/log")
def task_log(
    run_id: str,
    task_id: str,
    map_index: int = -1,
    attempt: int = Query(..., alias="try", ge=1),
    offset: int | None = Query(None, ge=0),
    who: Principal = VIEWER,
    ph: Phloem = APP,
) -> JSONResponse:
    """A piece of an attempt's log from ``offset`` (JSON), and whether it may still grow."""
    from phloem.reading import instance, log_file

    ti = instance(ph.store, run_id, task_id, map_index)
    chunk = taskview.read_log(log_file(ph.logs_dir, run_id, ti, attempt), offset)
    growing = attempt == ti.try_number and not ti.state.is_terminal
    body: dict[str, Any] = {
        "text": chunk.text,
        "start": chunk.start,
        "end": chunk.end,
        "size": chunk.size,
        "growing": growing,
        "state": ti.state.value,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/pipelines/{name}/metrics")
def metrics_page(
    request: Request,
    name: str,
    key: str | None = None,
    who: Principal = VIEWER,
    ph: Phloem = APP,
) -> HTMLResponse:
    from phloem.server.ui.metricsview import trend

    return site(request).render(request, who, "metrics.html", trend=trend(ph.store, name, key))


@router.get("/compare")
def compare_page(
    request: Request,
    run: list[str] = Query(default_factory=list),
    who: Principal = VIEWER,
    ph: Phloem = APP,
) -> HTMLResponse:
    from phloem.server.ui.metricsview import compare

    return site(request).render(request, who, "compare.html", cmp=compare(ph.store, run))


@router.get("/models")
def models_page(request: Request, who: Principal = VIEWER, ph: Phloem = APP) -> HTMLResponse:
    from phloem.server.ui.modelview import models

    return site(request).render(request, who, "models.html", models=models(ph.store))


@router.get("/models/{name}")
def model_page(
    request: Request,
    name: str,
    a: int | None = None,
    b: int | None = None,
    who: Principal = VIEWER,
    ph: Phloem = APP,
) -> HTMLResponse:
    from phloem.server.ui.modelview import model_page as read

    return site(request).render(request, who, "model.html", m=read(ph.store, name, a, b))


@router.get("/alerts")
def alerts_page(
    request: Request,
    pipeline: str | None = None,
    who: Principal = VIEWER,
    ph: Phloem = APP,
) -> HTMLResponse:
    """The alerts raised, newest first (a webhook shown by its host only: its path often
    holds a token)."""
    from phloem.alerts.channels import Channel

    rows = ph.store.alerts.history(pipeline or None, 200)
    shown = [(d, f"{d.kind} {Channel(d.kind, d.target).shown()}") for d in rows]
    return site(request).render(request, who, "alerts.html", alerts=shown, pipeline=pipeline or "")


@router.get("/admin")
def admin_page(request: Request, who: Principal = ADMIN, ph: Phloem = APP) -> HTMLResponse:
    from phloem.server.ui.admin import EXPIRIES
    from phloem.server.ui.admin import admin_page as read

    return site(request).render(request, who, "admin.html", page=read(ph), expiries=EXPIRIES)


@router.get("/logout")
def logout_page(request: Request, who: Principal = VIEWER) -> HTMLResponse:
    """A page whose script ends the session (a POST with the CSRF token) and goes to login."""
    return site(request).render(request, who, "logout.html")


__all__ = ["router"]
