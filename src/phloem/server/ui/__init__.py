"""phloem's web UI: pages rendered on the server from the store, with small islands of script.

Why this shape
--------------
- **Server-side templates (Jinja2), served by the same FastAPI app under ``/``.** The data a
  page shows is already in the server's process: a page is a few store reads and one template,
  with no JSON round trips, no client-side state to keep in sync and nothing to build. The
  graph of a run is laid out here too (``layout``) and sent as SVG, so a run with a thousand
  tasks is drawn at once, with no layout library in the browser.
- **One hand-written script (``static/ui.js``) and one stylesheet, no framework.** The script
  adds what a page cannot do alone: send actions to the REST API with the CSRF token, check
  the trigger form before it is sent, follow a run's states from the events stream, tail a
  running attempt's log, fold groups in the grid. Without it every page still reads. There is
  no third-party asset, so nothing is fetched from a CDN and nothing needs a package manager
  at build time; templates and static files sit inside the package, so the wheel carries
  them (hatch ships every file under ``src/phloem``). A page weighs tens of kilobytes.
- **Escaping**: autoescape is on for every template; data reaches the script as ``data-*``
  attributes or ``|tojson``, and the script inserts text with ``textContent`` only. A strict
  Content-Security-Policy (scripts and styles from this server only, no inline script) stands
  behind that.
- **Roles**: pages only read; each declares its rule like an API endpoint
  (:func:`phloem.server.ui.access.page`), and every action goes through the REST API, whose
  rules decide. A viewer's pages show no action buttons.

Modules: ``access`` (page rules, HTML errors), ``site`` (templates, per-server state),
``pages`` (the routes), ``overview`` / ``runview`` / ``taskview`` / ``metricsview`` /
``modelview`` / ``admin`` (what each page reads), ``specs`` (the graphs, from the server's
cache), ``layout`` (the graph's layers), ``charts`` (SVG charts), ``forms`` (the trigger
form's fields), ``render`` (templates, filters, static files), ``badges`` (a state's colour,
icon and words).
"""

from __future__ import annotations

from phloem.server.ui.mount import install

__all__ = ["install"]
