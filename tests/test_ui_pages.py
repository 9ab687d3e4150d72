"""The web UI's pages, read as a browser reads them (session cookie): who sees what, what each
page shows, that text from pipelines, params, logs and errors is shown as text, and that bad
input gets a clear page instead of a crash."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ui_fixtures import EVIL, UiApp, make_ui

PAGES = [
    "/",
    "/pipelines/demo",
    "/runs/{run}",
    "/runs/{run}/tasks/load",
    "/runs/{run}/tasks/report",
    "/runs/{run}/tasks/calc.square",
    "/runs/{run}/tasks/calc.square?map_index=1",
]


def _pages(u: UiApp) -> list[str]:
    return [p.format(run=u.run_id) for p in PAGES]


def _no_raw_markup(html: str) -> None:
    # the only script elements are the UI's own (by src), and no injected bold
    assert "<script>alert" not in html
    assert "<b>x</b>" not in html
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))


def test_a_page_without_a_session_sends_the_browser_to_the_login_form(ui: UiApp) -> None:
    from fastapi.testclient import TestClient

    with TestClient(ui.api.app) as anon:
        r = anon.get(f"/runs/{ui.run_id}?x=1", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == f"/login?next=%2Fruns%2F{ui.run_id}%3Fx%3D1"
        login = anon.get(r.headers["location"])
        assert login.status_code == 200 and 'id="login"' in login.text
        assert f'data-next="/runs/{ui.run_id}?x=1"' in login.text


def test_the_login_form_never_sends_anyone_off_the_site(ui: UiApp) -> None:
    from fastapi.testclient import TestClient

    with TestClient(ui.api.app) as anon:
        for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
            page = anon.get("/login", params={"next": target})
            assert 'data-next="/"' in page.text


def test_every_page_renders_for_a_viewer_without_action_buttons(ui: UiApp) -> None:
    viewer = ui.browser("viewer")
    for path in _pages(ui):
        r = viewer.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "data-action" not in r.text, path
        assert "Trigger…" not in r.text
        _no_raw_markup(r.text)


def test_operators_get_the_action_buttons(ui: UiApp) -> None:
    op = ui.browser("operator")
    home = op.get("/").text
    assert "/api/v1/pipelines/demo/pause" in home and "Trigger…" in home
    run = op.get(f"/runs/{ui.run_id}").text
    assert f"/api/v1/runs/{ui.run_id}/retry" in run
    assert "Retry from here" in run
    assert "Admin" not in op.get("/").text.split("<main")[0]


def test_a_viewer_is_refused_the_trigger_form_with_a_page_not_a_crash(ui: UiApp) -> None:
    r = ui.browser("viewer").get("/pipelines/demo/trigger")
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "operator" in r.text


def test_html_in_pipeline_param_log_and_error_text_is_shown_as_text(ui: UiApp) -> None:
    admin = ui.browser("admin")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"
    home = admin.get("/").text
    assert escaped in home  # the description
    log = admin.get(f"/runs/{ui.run_id}/tasks/load").text
    assert escaped + " loading 4" in log
    failed = admin.get(f"/runs/{ui.run_id}/tasks/report").text
    assert escaped + " in report" in failed
    run = admin.get(f"/runs/{ui.run_id}").text
    assert "&lt;script&gt;" in run  # the param value and the error
    form = admin.get("/pipelines/demo/trigger").text
    assert f'value="{escaped}"' in form
    for page in (home, log, failed, run, form):
        _no_raw_markup(page)


def test_the_pipelines_page_shows_schedule_runs_and_import_errors(ui: UiApp) -> None:
    import time

    bad = ui.file.parent / "broken.py"
    ui.ph.store.catalog.import_failed(
        str(bad),
        f'Traceback:\n  File "{bad}", line 12, in <module>\nNameError: {EVIL}',
        time.time(),
    )
    html = ui.browser("viewer").get("/").text
    assert "@daily" in html
    assert f"{bad}:12" in html and "line 12" in html
    assert "NameError: &lt;script&gt;" in html
    # the run as a square with its state as an icon and as words
    assert re.search(r'class="sq s-failed"[^>]*title="[^"]+ failed">✗</a>', html)


def test_the_grid_has_groups_mapped_counts_and_filters(ui: UiApp) -> None:
    viewer = ui.browser("viewer")
    html = viewer.get("/pipelines/demo").text
    assert 'data-fold="calc"' in html
    assert "4/4" in html  # the mapped task as one cell with its counts
    assert f'data-run="{ui.run_id}"' in html and 'data-id="report"' in html
    assert '<td class="c s-failed">✗</td>' in html  # a state as an icon, not only a colour
    assert "No runs match" in viewer.get("/pipelines/demo?state=success").text
    assert "4/4" in viewer.get("/pipelines/demo?state=failed&from=2000-01-01").text
    assert "No runs match" in viewer.get("/pipelines/demo?to=2000-01-01").text


def test_bad_filters_and_unknown_things_get_a_page_that_says_what_to_do(ui: UiApp) -> None:
    viewer = ui.browser("viewer")
    r = viewer.get("/pipelines/demo?state=green")
    assert r.status_code == 400 and "is not a run state" in r.text and "success" in r.text
    r = viewer.get("/pipelines/demo?from=yesterday")
    assert r.status_code == 400 and "ISO 8601" in r.text
    r = viewer.get("/pipelines/nope")
    assert r.status_code == 404 and "nope" in r.text
    r = viewer.get("/runs/nope")
    assert r.status_code == 404 and "nope" in r.text
    r = viewer.get(f"/runs/{ui.run_id}/tasks/lod")
    assert r.status_code == 404 and "its tasks: " in r.text
    r = viewer.get(f"/runs/{ui.run_id}/tasks/calc.square?map_index=99")
    assert r.status_code == 404 and "0..3" in r.text
    r = viewer.get(f"/runs/{ui.run_id}/tasks/load?try=7")
    assert r.status_code == 400 and "no try 7" in r.text
    for r in (viewer.get("/pipelines/nope"), viewer.get("/runs/nope")):
        assert r.headers["content-type"].startswith("text/html")


def test_the_run_page_draws_the_graph_with_groups_and_mapped_counts(ui: UiApp) -> None:
    html = ui.browser("viewer").get(f"/runs/{ui.run_id}").text
    assert '<svg class="graph"' in html
    assert html.count('class="node ') == 4
    assert 'data-task="calc.square"' in html and "4/4 success" in html
    assert '<g class="group-box">' in html and ">calc</text>" in html
    assert html.count('class="edge"') == 3
    assert 'class="lane"' in html  # the timeline


def test_the_live_states_and_the_log_by_offset(ui: UiApp) -> None:
    viewer = ui.browser("viewer")
    live = viewer.get(f"/runs/{ui.run_id}/live").json()
    assert live["run"]["state"] == "failed"
    assert live["tasks"]["calc.square"]["text"] == "4/4 success"
    assert live["tasks"]["report"] == {"state": "failed", "icon": "✗", "text": "failed"}
    url = f"/runs/{ui.run_id}/tasks/load/log"
    whole = viewer.get(url, params={"try": 1, "offset": 0}).json()
    assert whole["text"].startswith(EVIL) and whole["growing"] is False
    assert whole["end"] == whole["size"]
    rest = viewer.get(url, params={"try": 1, "offset": 5}).json()
    assert rest["text"] == whole["text"][5:]
    assert viewer.get(url, params={"try": 1, "offset": 10**9}).json()["text"] == ""
    assert viewer.get(url, params={"try": 3}).status_code == 400
    assert viewer.get(url, params={"try": 1, "map_index": 5}).status_code == 404
    assert viewer.get(url, params={"try": 0}).status_code == 422


def test_the_trigger_form_has_a_field_per_typed_param(ui: UiApp) -> None:
    html = ui.browser("operator").get("/pipelines/demo/trigger").text
    for name, kind in (("n", "int"), ("note", "str"), ("rate", "float"), ("flag", "bool")):
        assert f'data-param="{name}" data-kind="{kind}"' in html
    assert 'value="4"' in html and 'value="0.5"' in html


def test_static_files_are_a_fixed_list_and_pages_stay_light(ui: UiApp) -> None:
    viewer = ui.browser("viewer")
    css = viewer.get("/ui/static/ui.css")
    js = viewer.get("/ui/static/ui.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
    for bad in ("../pages.py", "..%2Fpages.py", "nope.js", "%2e%2e%2f__init__.py"):
        assert viewer.get(f"/ui/static/{bad}").status_code == 404
    weight = len(css.content) + len(js.content)
    for path in _pages(ui):
        assert weight + len(viewer.get(path).content) < 500_000


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_the_frame_names_the_user_and_role(ui: UiApp, role: str) -> None:
    html = ui.browser(role).get("/").text
    assert f'<span class="role">{role}</span>' in html
    assert ('href="/admin"' in html) == (role == "admin")


def test_a_metric_trend_across_runs_as_a_chart_and_a_table(ui: UiApp) -> None:
    viewer = ui.browser("viewer")
    html = viewer.get("/pipelines/demo/metrics").text
    assert "<option selected>total</option>" in html
    assert html.count("<circle ") == 2  # one point per run that logged it
    table = html.split('<table class="values">')[1]
    assert "<td>14</td>" in table and "<td>5</td>" in table  # squares summed, n=4 and n=3
    assert f'href="/runs/{ui.other_run}"' in html
    r = viewer.get("/pipelines/demo/metrics", params={"key": "auc"})
    assert r.status_code == 400 and "logged no metric &#39;auc&#39;" in r.text and "total" in r.text


def test_runs_side_by_side_with_params_and_metrics(ui: UiApp) -> None:
    viewer = ui.browser("viewer")
    html = viewer.get("/compare", params=[("run", ui.other_run), ("run", ui.run_id)]).text
    assert html.count('class="diff"') == 2  # n and the total differ; the label does not
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    assert html.count('<rect class="bar"') == 2
    r = viewer.get("/compare", params={"run": ui.run_id})
    assert r.status_code == 400 and "two or more runs" in r.text
    r = viewer.get("/compare", params=[("run", ui.run_id), ("run", "nope")])
    assert r.status_code == 404 and "nope" in r.text


def test_the_admin_page_never_shows_a_password(ui: UiApp) -> None:
    ui.ph.variables.add_connection("warehouse", "postgresql://loader:s3cr3t-pw@db.internal:5432/w")
    ui.ph.variables.set_variable("threshold", {"auc": 0.8}, f"a note {EVIL}")
    ui.ph.store.set_pool("gpu", 2)
    html = ui.browser("admin").get("/admin").text
    assert "s3cr3t-pw" not in html
    assert "warehouse" in html and "db.internal" in html and ">set<" in html
    assert "{&#34;auc&#34;: 0.8}" in html and "a note &lt;script&gt;" in html
    assert 'value="2"' in html and "/api/v1/pools/gpu" in html
    for role in ("viewer", "admin"):
        assert f'data-user="{role}"' in html  # the users
    assert "viewer-token" in html and "valid" in html
    _no_raw_markup(html)
    for role in ("viewer", "operator"):
        r = ui.browser(role).get("/admin")
        assert r.status_code == 403 and "admin role" in r.text


def test_the_backfill_form_is_for_operators(ui: UiApp) -> None:
    html = ui.browser("operator").get("/pipelines/demo/backfill").text
    assert 'data-preview="/api/v1/backfills/dry-run"' in html
    assert 'data-create="/api/v1/backfills"' in html
    assert ui.browser("viewer").get("/pipelines/demo/backfill").status_code == 403
    assert ui.browser("operator").get("/pipelines/nope/backfill").status_code == 404


def test_models_versions_aliases_compare_and_promote(ui: UiApp) -> None:
    import phloem.models

    v1 = phloem.models.register(
        "fraud",
        {"w": [1, 2]},
        metrics={"auc": 0.8},
        params={"depth": 3},
        description=EVIL,
        app=ui.ph,
    )
    v2 = phloem.models.register(
        "fraud", {"w": [1, 3]}, metrics={"auc": 0.9}, params={"depth": 4}, app=ui.ph
    )
    phloem.models.set_alias("fraud", v1, "production", reason=EVIL, app=ui.ph)
    viewer = ui.browser("viewer")
    listing = viewer.get("/models").text
    assert 'href="/models/fraud"' in listing and "production → v1" in listing
    page = viewer.get("/models/fraud").text
    assert "Promote" not in page and "Roll back" not in page
    assert "0.8" in page and "0.9" in page and "a_note" not in page
    assert "&lt;script&gt;" in page  # the reason of the move, as text
    _no_raw_markup(page)
    cmp = viewer.get("/models/fraud", params={"a": v1, "b": v2}).text
    assert cmp.count('class="diff"') == 2  # auc and depth
    assert viewer.get("/models/fraud", params={"a": 1, "b": 9}).status_code == 400
    assert viewer.get("/models/nope").status_code == 404
    # an operator promotes v2 through the API, with the session's CSRF token
    op = ui.browser("operator")
    assert "Promote v2" in op.get("/models/fraud").text
    login = {"user": "operator", "password": "correct horse battery"}
    csrf = op.post("/api/v1/auth/login", json=login).json()["csrf_token"]
    r = op.post(
        "/api/v1/models/fraud/aliases/production",
        json={"version": v2},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    assert r.json()["who"] == "operator" and r.json()["previous"] == v1
    assert "production → v2" in viewer.get("/models").text
    r = viewer.post("/api/v1/models/fraud/aliases/production", json={"version": v1})
    assert r.status_code == 403
    r = op.post(
        "/api/v1/models/fraud/aliases/production/rollback", json={}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 200 and r.json()["version"] == v1


def test_the_task_page_says_why_the_cache_was_not_used(ui: UiApp) -> None:
    html = ui.browser("viewer").get(f"/runs/{ui.run_id}/tasks/load").text
    assert "<h2>Cache</h2>" in html and " miss</span>" in html
    assert f'href="/runs/{ui.other_run}"' in html  # the closest earlier entry
    assert "<li>" in html.split("<h2>Cache</h2>")[1].split("<h2>")[0]
    assert "<h2>Cache</h2>" not in ui.browser("viewer").get(f"/runs/{ui.run_id}/tasks/report").text


def test_alert_history_with_webhook_paths_hidden(ui: UiApp) -> None:
    import time

    from phloem.store.alert_book import NewDelivery

    ui.ph.store.alerts.record(
        [
            NewDelivery(
                "r1",
                "demo",
                ui.run_id,
                f"demo failed {EVIL}",
                0,
                "webhook",
                "https://hooks.example/services/T0/SECRET-TOKEN",
                "run failed",
                "demo failed",
                "body",
                {},
            ),
        ],
        time.time(),
    )
    html = ui.browser("viewer").get("/alerts").text
    assert "SECRET-TOKEN" not in html and "https://hooks.example/…" in html
    assert f'href="/runs/{ui.run_id}"' in html and "pending" in html
    _no_raw_markup(html)
    assert (
        "No alert was raised for other"
        in ui.browser("viewer").get("/alerts", params={"pipeline": "other"}).text
    )


def test_the_scripts_json_gets_problem_documents(ui: UiApp) -> None:
    from fastapi.testclient import TestClient

    accept = {"Accept": "application/json"}
    r = ui.browser("viewer").get("/runs/nope/live", headers=accept)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    with TestClient(ui.api.app) as anon:
        r = anon.get(f"/runs/{ui.run_id}/live", headers=accept, follow_redirects=False)
        assert r.status_code == 401 and "log in again" in r.json()["detail"]


def _wide_source(groups: int = 10, per_group: int = 20) -> str:
    lines = ["import phloem", "from phloem import pipeline, task", ""]
    for g in range(groups):
        for t in range(per_group):
            lines += ["@task", f"def s{g}_{t}(x: int = 0) -> int:", "    return x", ""]
    lines += ["@pipeline", "def wide():"]
    for g in range(groups):
        lines.append(f"    with phloem.group('g{g}'):")
        lines.append(f"        prev = s{g}_0()")
        lines += [f"        prev = s{g}_{t}(prev)" for t in range(1, per_group)]
    return "\n".join(lines) + "\n"


def test_big_pages_stay_under_500_kb_and_go_compressed(ui: UiApp) -> None:
    """The issue's large pages: a grid of 25 runs x 200 tasks, the run of a 200-task graph, a
    run with 1,000 mapped instances. Their weight is bytes, not time: asserted here."""
    import time

    from phloem.loading import load_pipeline
    from phloem.records import TI, RunRecord
    from phloem.runs import create_run
    from phloem.states import RunState, RunType, TaskState
    from ui_fixtures import register

    wide = ui.file.parent / "wide.py"
    wide.write_text(_wide_source())
    register(ui.ph, wide)
    spec = load_pipeline(f"{wide}:wide").spec
    runs = [
        create_run(ui.ph.store, spec, {}, f"2026-01-{i + 1:02d}", source=f"{wide}:wide")
        for i in range(25)
    ]
    ui.ph.store.create_run(
        RunRecord(
            run_id="mapped-1000",
            pipeline="demo",
            state=RunState.SUCCESS,
            logical_date="2026-02-01T00:00:00+00:00",
            params={},
            created_at=time.time(),
            run_type=RunType.MANUAL,
        ),
        [
            TI(
                task_id="calc.square",
                map_index=i,
                state=TaskState.SUCCESS if i % 100 else TaskState.FAILED,
            )
            for i in range(1000)
        ],
    )
    viewer = ui.browser("viewer")
    pages = {
        "/": None,
        "/pipelines/wide": None,
        f"/runs/{runs[-1].run_id}": None,
        "/runs/mapped-1000": None,
        "/runs/mapped-1000/tasks/calc.square": None,
    }
    for path in pages:
        r = viewer.get(path, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200, (path, r.text[:300])
        assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
        assert r.num_bytes_downloaded < 100_000, path  # sent
        assert len(r.content) < 500_000, path  # once unpacked
        pages[path] = r.text
    grid = pages["/pipelines/wide"] or ""
    assert grid.count('<td class="c ') == 25 * 200 + 25 * 10  # tasks and their groups' rows
    assert "990/1000 success, 10 failed" in (pages["/runs/mapped-1000"] or "")
    # a client that does not take gzip gets the page as it is
    plain = viewer.get("/pipelines/wide", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text == grid
    js = viewer.get("/ui/static/ui.js", headers={"Accept-Encoding": "gzip"})
    assert js.headers["content-encoding"] == "gzip" and js.num_bytes_downloaded < 10_000


def test_no_page_lets_html_from_data_through(ui: UiApp) -> None:
    """Every page, with HTML in a pipeline's description, a param's default and value, a
    logged param, a log line, an error, a model's description and an alias move's reason, a
    variable's description and an alert's subject: all of it shown as text."""
    import time

    import phloem.models
    from phloem.store.alert_book import NewDelivery

    v1 = phloem.models.register("m", [1], description=EVIL, app=ui.ph)
    phloem.models.register("m", [2], app=ui.ph)
    phloem.models.set_alias("m", v1, "production", reason=EVIL, app=ui.ph)
    ui.ph.variables.set_variable("k", EVIL, EVIL)
    ui.ph.store.alerts.record(
        [
            NewDelivery(
                "r",
                "demo",
                ui.run_id,
                EVIL,
                0,
                "webhook",
                "https://h.example/x",
                EVIL,
                EVIL,
                EVIL,
                {},
            )
        ],
        time.time(),
    )
    admin = ui.browser("admin")
    paths = [
        "/",
        "/pipelines/demo",
        "/pipelines/demo/trigger",
        "/pipelines/demo/backfill",
        f"/runs/{ui.run_id}",
        f"/runs/{ui.run_id}/tasks/load",
        f"/runs/{ui.run_id}/tasks/report",
        f"/runs/{ui.run_id}/tasks/calc.square",
        f"/runs/{ui.run_id}/tasks/calc.total",
        "/pipelines/demo/metrics",
        f"/compare?run={ui.run_id}&run={ui.other_run}",
        "/models",
        "/models/m",
        "/models/m?a=1&b=2",
        "/alerts",
        "/admin",
        "/logout",
    ]
    for path in paths:
        r = admin.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        _no_raw_markup(r.text)
    for path in (
        "/",
        "/pipelines/demo/trigger",
        f"/runs/{ui.run_id}/tasks/report",
        "/models/m",
        "/alerts",
        "/admin",
        f"/compare?run={ui.run_id}&run={ui.other_run}",
    ):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in admin.get(path).text, path
    # an error page repeats what was asked, escaped
    r = admin.get("/runs/<img src=x onerror=alert(1)>")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "<img src=x" not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text


FRAMES = """
import pandas as pd
from phloem import pipeline, task

@task
def make() -> pd.DataFrame:
    return pd.DataFrame({"<b>x</b>": [1, 2, 3], "name": ["<script>alert(1)</script>", "b", "c"]})

@task
def use(df: pd.DataFrame) -> dict:
    return {"rows": len(df)}

@pipeline
def frames():
    use(make())
"""


def test_a_data_frame_output_shows_its_schema_and_first_rows_and_its_lineage(
    ui: UiApp,
) -> None:
    import phloem

    file = ui.file.parent / "frames.py"
    file.write_text(FRAMES)
    run = phloem.run(f"{file}:frames", app=ui.ph, executor="inline")
    viewer = ui.browser("viewer")
    made = viewer.get(f"/runs/{run.run_id}/tasks/make").text
    frame = made.split('<table class="frame">')[1].split("</table>")[0]
    assert "&lt;b&gt;x&lt;/b&gt;" in frame and "int64" in frame  # a column, its type
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in frame  # a first row, as text
    assert frame.count("<tr>") == 4  # the header and three rows
    assert "3 \u00d7 2" in made  # the shape
    used = viewer.get(f"/runs/{run.run_id}/tasks/use").text
    lineage = used.split('<table class="lineage">')[1].split("</table>")[0]
    assert "<td>input</td>" in lineage
    assert f'href="/runs/{run.run_id}/tasks/make"' in lineage  # who wrote what it read
    assert '"rows": 3' in used  # its own output, as JSON
    _no_raw_markup(made)


TRAINS = """
from phloem import models, pipeline, task

@task
def train() -> int:
    version = models.register(
        "churn", {"weights": [1, 2]}, metrics={"auc": 0.91}, params={"note": "<b>x</b>"}
    )
    models.set_alias("churn", version, "staging")
    return version

@pipeline
def trains():
    train()
"""


@pytest.fixture
def ui_on_file(tmp_path: Path) -> Iterator[UiApp]:
    """The UI on a SQLite file (a task registers models only in a store others share)."""
    u = make_ui(tmp_path / "home", store=f"sqlite:///{tmp_path / 'phloem.db'}")
    yield u
    for c in u.clients.values():
        c.close()
    u.api.client.close()
    u.ph.close()


def test_a_task_that_registered_a_model_shows_the_version_its_metrics_and_aliases(
    ui_on_file: UiApp,
) -> None:
    import phloem

    ui = ui_on_file
    file = ui.file.parent / "trains.py"
    file.write_text(TRAINS)
    run = phloem.run(f"{file}:trains", app=ui.ph, executor="inline")
    assert run.succeeded, [a.error for a in ui.ph.store.attempts(run.run_id)]
    page = ui.browser("viewer").get(f"/runs/{run.run_id}/tasks/train").text
    models = page.split("<h2>Models registered</h2>")[1].split("</table>")[0]
    assert '<a href="/models/churn">churn v1</a>' in models
    assert '<span class="tag">staging</span>' in models
    assert "auc = 0.91" in models and "note = &lt;b&gt;x&lt;/b&gt;" in models
    _no_raw_markup(page)
    # a task that registered nothing has no such section
    other = ui.browser("viewer").get(f"/runs/{ui.run_id}/tasks/load").text
    assert "Models registered" not in other


def test_the_task_page_shows_what_each_attempt_cost(ui_on_file: UiApp) -> None:
    """Local workers measure CPU time and peak memory; the page shows both per attempt (and
    the GPU time reserved, which only Ray records)."""
    import phloem
    from phloem.server.ui.render import cost
    from phloem.states import AttemptState
    from phloem.store.types import AttemptRow

    ui = ui_on_file
    file = ui.file.parent / "costs.py"
    file.write_text(
        "from phloem import pipeline, task\n\n"
        "@task\ndef spend() -> int:\n    return sum(range(100_000))\n\n"
        "@pipeline\ndef costs():\n    spend()\n"
    )
    run = phloem.run(f"{file}:costs", app=ui.ph, executor="local", workers=1)
    assert run.succeeded
    (attempt,) = ui.ph.store.attempts(run.run_id, "spend")
    assert attempt.cpu_seconds is not None and attempt.peak_rss
    page = ui.browser("viewer").get(f"/runs/{run.run_id}/tasks/spend").text
    row = page.split('<table class="attempts">')[1].split("</table>")[0]
    assert "<th scope=\"col\">Cost</th>" in row
    assert f"{cost(attempt)}</td>" in row and " CPU · " in row and " MiB peak" in row
    on_ray = AttemptRow("t", -1, 1, AttemptState.SUCCESS, 0.0, 0.0, 3.0, None,
                        cpu_seconds=2.5, peak_rss=3 * 2**20, gpu_seconds=1.5)  # fmt: skip
    assert cost(on_ray) == "2.5 s CPU · 3.0 MiB peak · 1.5 s GPU reserved"
    assert cost(AttemptRow("t", -1, 1, AttemptState.QUEUED, 0.0, None, None, None)) == "\u2013"
