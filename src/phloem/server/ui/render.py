"""Templates and static files of the web UI, and how a page answers a failure.

Every template is rendered with autoescaping on (not only ``.html`` files): whatever a
pipeline, task, parameter or log says is shown as text, never read as markup. Scripts get
data through ``data-*`` attributes or ``|tojson`` (which escapes ``<``, ``>`` and ``&``), never
by pasting text into code.

A page that needs a login redirects to ``/login``; any other failure is an HTML page with
the same status and message the API would give.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from phloem.records import RunRecord
from phloem.server.ui import badges

#: shown where there is no value (an en dash)
NONE = "\u2013"

HERE = Path(str(resources.files("phloem.server.ui")))
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: the static files the UI serves, and their media types; nothing else is served
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def when(ts: float | None) -> str:
    """A time for people: UTC, to the second."""
    if ts is None:
        return NONE
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def day(iso: str | None) -> str:
    """A logical date, shortened (its time only when it has one)."""
    if not iso:
        return NONE
    text = iso.replace("T", " ")
    text = text.split(".")[0].removesuffix("+00:00")
    return text.removesuffix(" 00:00:00")


def seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return NONE
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def span(start: float | None, end: float | None) -> str:
    if start is None:
        return NONE
    if end is None:
        return "running"
    return seconds(end - start)


def size(n: int | None) -> str:
    if n is None:
        return NONE
    if n < 1024:
        return f"{n} B"
    if n < 2**20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"


def cost(attempt: object) -> str:
    """What an attempt cost, where its executor measured it: CPU time, peak memory and the
    GPU time reserved for it (on Ray)."""
    parts = []
    cpu = getattr(attempt, "cpu_seconds", None)
    if cpu is not None:
        parts.append(f"{seconds(cpu)} CPU")
    rss = getattr(attempt, "peak_rss", None)
    if rss is not None:
        parts.append(f"{size(rss)} peak")
    gpu = getattr(attempt, "gpu_seconds", None)
    if gpu:
        parts.append(f"{seconds(gpu)} GPU reserved")
    return " · ".join(parts) or NONE


def shown(value: object) -> str:
    """A parameter's value as people read it: text as it is, anything else as JSON (the
    template escapes both)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def grid_cells(cells: list[badges.Summary | None], mapped: bool) -> Markup:
    """A grid row's cells, built here rather than cell by cell in the template (a grid is
    thousands of them). Only fixed words, icons and numbers go in, never text from a
    pipeline; the page's script makes a cell a link to its task instance."""
    out = []
    for c in cells:
        if c is None:
            out.append('<td class="c none"></td>')
        elif mapped:
            done = c.counts.get("success", 0) + c.counts.get("cached", 0)
            out.append(
                f'<td class="c s-{c.state}">{badges.icon(c.state)}<small>{done}/{c.total}'
                "</small></td>"
            )
        else:
            out.append(f'<td class="c s-{c.state}">{badges.icon(c.state)}</td>')
    return Markup("".join(out))


_PLAIN = re.compile(r"^[A-Za-z0-9_.:~+-]*$")


def url_part(text: str) -> str:
    """``text`` quoted for a URL path segment (fast for the usual plain run ids)."""
    return text if _PLAIN.match(text) else quote(text, safe="")


def squares(runs: list[RunRecord]) -> Markup:
    """The runs as small squares linking to each run, their state as an icon and, in the
    title, a date and a word. Built here rather than run by run in the template (the
    pipelines page shows 25 per pipeline); every piece of text is escaped."""
    if not runs:
        return Markup('<span class="note">no runs</span>')
    out = []
    for r in runs:
        st = r.state.value
        out.append(
            f'<a class="sq s-{st}" href="/runs/{escape(url_part(r.run_id))}" '
            f'title="{escape(day(r.logical_date))} {badges.words(st)}">{badges.icon(st)}</a>'
        )
    return Markup("".join(out))


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when, day=day, seconds=seconds, span=span, size=size, shown=shown, cost=cost
    )
    env.globals.update(
        icon=badges.icon,
        words=badges.words,
        fmt_metric=_fmt_metric,
        grid_cells=grid_cells,
        squares=squares,
    )
    return env


def _fmt_metric(v: float | None) -> str:
    from phloem.server.ui.charts import fmt

    return NONE if v is None else fmt(v)


def static_versions() -> dict[str, str]:
    """Each static file's content hash, appended to its URL so browsers may cache it forever
    and still get a new file after an upgrade."""
    out = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in STATIC_TYPES:
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return out


__all__ = [
    "STATIC",
    "STATIC_TYPES",
    "TEMPLATES",
    "day",
    "environment",
    "seconds",
    "static_versions",
    "when",
]
