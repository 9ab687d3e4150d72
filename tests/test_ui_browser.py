"""The web UI in a real Chromium against a real ``phloem server``: log in by keyboard, trigger
a run with params (bad values caught before sending), watch it go green without a reload, open
a failed task's log, retry it, and check a viewer can see but not act. Each page's screenshot
is written to test-output/ui/ for review."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from browser_fixtures import Server, login, shot

pytestmark = pytest.mark.slow


def wait_for_pipeline(page: Any, ui_server: Server) -> None:
    """The scheduler finds the pipeline file within a few seconds."""
    for _ in range(60):
        page.goto(ui_server.url + "/")
        if page.locator('tr[data-pipeline="browser_demo"]').count():
            return
        page.wait_for_timeout(500)
    raise AssertionError("the scheduler did not register browser_demo")


def trigger(page: Any, ui_server: Server, **params: str) -> str:
    page.goto(ui_server.url + "/pipelines/browser_demo/trigger")
    for name, value in params.items():
        page.fill(f'.field[data-param="{name}"] input', value)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/[^/]+$"))
    return str(page.url.rsplit("/", 1)[1])


def run_state(page: Any) -> str:
    return str(page.get_attribute("#run", "data-state"))


def test_trigger_with_params_and_watch_it_go_green_live(ui_server: Server, chromium: Any) -> None:
    page = login(chromium, ui_server, "operator")
    wait_for_pipeline(page, ui_server)
    shot(page, "01-pipelines")
    page.click('a.button[href="/pipelines/browser_demo/trigger"]')
    # a bad value is caught in the page, next to its field, and nothing is sent
    page.fill('.field[data-param="n"] input', "three")
    page.click("button[type=submit]")
    error = page.locator('.field[data-param="n"] .field-error')
    assert error.is_visible() and "whole number" in error.inner_text()
    assert page.url.endswith("/trigger")
    shot(page, "02-trigger-invalid")
    page.fill('.field[data-param="n"] input', "4")
    page.fill('.field[data-param="pause"] input', "1.5")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/[^/]+$"))
    page.evaluate("window.__still_the_same_page = true")
    # the run goes green on this page: states arrive live, the page is never reloaded
    page.wait_for_selector('#run[data-state="running"]', timeout=60_000)
    shot(page, "03-run-running")
    page.wait_for_selector('#run[data-state="success"]', timeout=90_000)
    assert page.evaluate("window.__still_the_same_page === true")
    node = page.locator('.node[data-task="compute.work"]')
    assert "s-success" in str(node.get_attribute("class"))
    assert "4/4 success" in str(node.text_content())
    assert "success" in page.locator("#run-state").inner_text()  # a word, not only a colour
    page.wait_for_selector("#timeline svg.lane")  # the timeline is redrawn as attempts run
    shot(page, "04-run-success")
    assert not page.errors


def test_a_failed_task_shows_its_log_and_a_retry_makes_it_green(
    ui_server: Server, chromium: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.write_text("closed")
    page = login(chromium, ui_server, "operator")
    wait_for_pipeline(page, ui_server)
    trigger(page, ui_server, n="2", pause="0", gate=str(gate))
    page.wait_for_selector('#run[data-state="failed"]', timeout=90_000)
    page.click('.node[data-task="check"]')
    page.wait_for_url(re.compile(r".*/tasks/check$"))
    log = page.locator("pre.log").inner_text()
    assert "checking 2" in log and "<script>no</script>" in log  # shown as text
    assert "gate file" in page.locator("pre.error-text").inner_text()
    shot(page, "05-task-failed-log")
    gate.unlink()
    page.once("dialog", lambda d: d.accept())
    page.click("button:has-text('Retry from here')")
    page.wait_for_url(re.compile(r".*/runs/[^/]+$"))
    page.wait_for_selector('#run[data-state="success"]', timeout=90_000)
    shot(page, "06-run-retried")
    page.click('.node[data-task="check"]')
    assert "2" in page.locator("table.attempts tbody tr").nth(1).inner_text()
    shot(page, "07-task-retried")
    page.goto(ui_server.url + "/pipelines/browser_demo")
    shot(page, "08-grid")
    page.locator("button[data-fold]").first.click()
    assert page.locator('tr[data-group="compute"]').first.is_hidden()
    page.goto(ui_server.url + "/pipelines/browser_demo/metrics")
    shot(page, "09-metrics")
    assert not page.errors


def test_a_viewer_sees_everything_and_can_do_nothing(ui_server: Server, chromium: Any) -> None:
    operator = login(chromium, ui_server, "operator")
    wait_for_pipeline(operator, ui_server)
    trigger(operator, ui_server, n="1", pause="0")  # a run to look at
    page = login(chromium, ui_server, "viewer")
    page.goto(ui_server.url + "/")
    assert page.locator("button[data-action]").count() == 0
    assert page.locator("text=Trigger…").count() == 0
    shot(page, "10-viewer-pipelines")
    page.locator("a.sq").first.click()
    page.wait_for_url(re.compile(r".*/runs/[^/]+$"))
    assert page.locator("button[data-action]").count() == 0
    run_id = page.url.rsplit("/", 1)[1]
    shot(page, "11-viewer-run")
    # the form is refused, and so is the API, even with the session's CSRF token
    r = page.goto(ui_server.url + "/pipelines/browser_demo/trigger")
    assert r is not None and r.status == 403
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', headers: {
             'Content-Type': 'application/json',
             'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
             body: '{}'})).status""",
        f"{ui_server.url}/api/v1/runs/{run_id}/retry",
    )
    assert status == 403
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', headers: {
             'Content-Type': 'application/json',
             'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
             body: '{}'})).status""",
        f"{ui_server.url}/api/v1/pipelines/browser_demo/runs",
    )
    assert status == 403
    assert not page.errors


def test_the_pages_work_from_the_keyboard(ui_server: Server, chromium: Any) -> None:
    page = login(chromium, ui_server, "operator")
    wait_for_pipeline(page, ui_server)
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    # then through the page's links to the pipeline's grid
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == (
            "/pipelines/browser_demo"
        ):
            break
    page.keyboard.press("Enter")
    page.wait_for_url(ui_server.url + "/pipelines/browser_demo")
    fold = page.locator("button[data-fold]").first
    fold.focus()
    page.keyboard.press("Enter")
    assert fold.get_attribute("aria-expanded") == "false"
    page.keyboard.press("Enter")
    # the grid: focus it, move with the arrow keys, open a task instance with Enter
    page.locator("#grid").focus()
    assert "prepare in the run of" in page.locator("#grid-cell").inner_text()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert "compute.work in the run of" in page.locator("#grid-cell").inner_text()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/runs/[^/]+/tasks/compute\.work$"))
    assert page.locator("table.instances").count() == 1


def test_an_admin_sets_a_variable_and_a_connection_whose_password_is_never_shown(
    ui_server: Server, chromium: Any
) -> None:
    page = login(chromium, ui_server, "admin")
    page.click("header nav >> text=Admin")
    page.wait_for_url(ui_server.url + "/admin")
    page.fill("#var-key", "threshold")
    page.fill("#var-value", "{not json")
    page.click("form:has(#var-key) button[type=submit]")
    assert "must be valid JSON" in page.locator("form:has(#var-key) .form-error").inner_text()
    page.fill("#var-value", '{"auc": 0.8}')
    page.click("form:has(#var-key) button[type=submit]")
    page.wait_for_selector("table.variables >> text=threshold")
    page.fill("#conn-name", "warehouse")
    page.fill("#conn-uri", "postgresql://loader:pw-never-shown@db.example:5432/w")
    page.click("form:has(#conn-name) button[type=submit]")
    page.wait_for_selector("table.connections >> text=warehouse")
    assert "pw-never-shown" not in page.content()
    for url in ("/api/v1/connections", "/api/v1/connections/warehouse"):  # nor by the API
        answer = page.evaluate("async (u) => await (await fetch(u)).text()", url)
        assert "warehouse" in answer and "pw-never-shown" not in answer
    shot(page, "12-admin")
    page.goto(ui_server.url + "/pipelines/browser_demo/backfill")
    shot(page, "13-backfill-form")
    assert not page.errors


def test_an_operator_promotes_a_model_version(ui_server: Server, chromium: Any) -> None:
    import phloem.models
    from phloem.app import Phloem

    with Phloem.open(None, ui_server.home) as ph:
        v1 = phloem.models.register("churn", [1], metrics={"auc": 0.71}, app=ph)
        phloem.models.register("churn", [2], metrics={"auc": 0.78}, app=ph)
        phloem.models.set_alias("churn", v1, "production", app=ph)
    page = login(chromium, ui_server, "operator")
    page.click("header nav >> text=Models")
    page.click("a[href='/models/churn']")
    page.fill("#why-2", "better auc on the same data")
    page.click("button:has-text('Promote v2')")
    page.wait_for_selector("table.history >> text=better auc on the same data")
    assert "v2" in page.locator("table.aliases tbody tr").first.inner_text()
    page.select_option("#cmp-a", "1")
    page.select_option("#cmp-b", "2")
    page.click("button:has-text('Compare')")
    assert page.locator("table.compare tr.diff").count() == 1
    shot(page, "14-model")
    viewer = login(chromium, ui_server, "viewer")
    viewer.goto(ui_server.url + "/models/churn")
    assert viewer.locator("button:has-text('Promote')").count() == 0
    assert not page.errors


def _fetch_status(page: Any, method: str, url: str, body: str, csrf: bool = True) -> int:
    """A request from the page's own origin with its session cookie (and CSRF token)."""
    return int(
        page.evaluate(
            """async ([method, url, body, csrf]) => (await fetch(url, {method,
             headers: Object.assign({'Content-Type': 'application/json'}, csrf ? {
             'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content} : {}),
             body})).status""",
            [method, url, body, csrf],
        )
    )


def test_an_admin_manages_users_and_tokens_and_nobody_else_can(
    ui_server: Server, chromium: Any
) -> None:
    import httpx

    from server_fixtures import PASSWORD

    page = login(chromium, ui_server, "admin")
    page.on("dialog", lambda d: d.accept())
    page.goto(ui_server.url + "/admin")
    assert page.locator('tr[data-user="admin"] button').count() == 0  # not on yourself
    tab_through(page)  # every control of the admin page works from the keyboard
    # add a user with a role; a short password is caught before sending
    page.fill("#user-name", "dana")
    page.select_option("#user-role", "operator")
    page.fill("#user-password", "short")
    page.click("#add-user button[type=submit]")
    assert "at least 8" in page.locator("#add-user .form-error").inner_text()
    page.fill("#user-password", "dana has a long password")
    with page.expect_navigation():
        page.click("#add-user button[type=submit]")
    row = page.locator('tr[data-user="dana"]')
    assert row.locator("select").input_value() == "operator"
    assert "enabled" in row.inner_text()
    # change the role
    row.locator("select").select_option("viewer")
    with page.expect_navigation():
        row.locator("button:has-text('Change role')").click()
    assert page.locator('tr[data-user="dana"] select').input_value() == "viewer"
    # a token with an expiry: its secret is shown once, works, and is gone after
    page.fill("#token-name", "dana-ci")
    page.select_option("#token-user", "dana")
    page.select_option("#token-expires", "7d")
    page.click("#new-token button[type=submit]")
    page.wait_for_selector("#token-secret:not([hidden])")
    secret = page.locator("#token-value").input_value()
    assert len(secret) > 20
    me = httpx.get(ui_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["user"] == "dana"
    shot(page, "15-admin-token-once")
    with page.expect_navigation():
        page.click("#token-done")
    assert secret not in page.content()
    token_row = page.locator('tr[data-token="dana-ci"]')
    assert "valid" in token_row.inner_text() and "never" not in token_row.inner_text()
    with page.expect_navigation():
        token_row.locator("button:has-text('Revoke')").click()
    assert "revoked" in page.locator('tr[data-token="dana-ci"]').inner_text()
    me = httpx.get(ui_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 401
    # disable: the login is refused; enable; delete
    with page.expect_navigation():
        page.click('tr[data-user="dana"] button:has-text("Disable")')
    assert "disabled" in page.locator('tr[data-user="dana"]').inner_text()
    r = httpx.post(
        ui_server.url + "/api/v1/auth/login",
        json={"user": "dana", "password": "dana has a long password"},
    )
    assert r.status_code == 403
    with page.expect_navigation():
        page.click('tr[data-user="dana"] button:has-text("Enable")')
    r = httpx.post(
        ui_server.url + "/api/v1/auth/login",
        json={"user": "dana", "password": "dana has a long password"},
    )
    assert r.status_code == 200
    shot(page, "16-admin-users")
    with page.expect_navigation():
        page.click('tr[data-user="dana"] button:has-text("Delete")')
    assert page.locator('tr[data-user="dana"]').count() == 0
    # a pool: added, then resized
    page.fill("#new-pool", "gpu")
    page.fill("#new-pool-slots", "2")
    with page.expect_navigation():
        page.click("form:has(#new-pool) button[type=submit]")
    pool = page.locator("table.pools tr:has(th:text-is('gpu')) input")
    assert pool.input_value() == "2"
    pool.fill("4")
    with page.expect_navigation():
        page.locator("table.pools tr:has(th:text-is('gpu')) button").click()
    assert page.locator("table.pools tr:has(th:text-is('gpu')) input").input_value() == "4"
    # the API wants the session's CSRF token even from an admin's page
    users = f"{ui_server.url}/api/v1/users/viewer"
    assert _fetch_status(page, "PATCH", users, '{"role": "admin"}', csrf=False) == 403
    assert not page.errors
    # an operator and a viewer see no admin page, and the API refuses them
    for role in ("operator", "viewer"):
        other = login(chromium, ui_server, role)
        assert other.locator("header nav >> text=Admin").count() == 0
        r = other.goto(ui_server.url + "/admin")
        assert r is not None and r.status == 403
        assert other.locator("form.api-form").count() == 0
        assert _fetch_status(other, "PATCH", users, '{"role": "admin"}') == 403
        assert (
            _fetch_status(
                other, "POST", f"{ui_server.url}/api/v1/tokens", '{"name": "mine", "user": "admin"}'
            )
            == 403
        )
        assert _fetch_status(other, "DELETE", users, "") == 403
    r = httpx.post(
        ui_server.url + "/api/v1/auth/login", json={"user": "viewer", "password": PASSWORD}
    )
    assert r.json()["role"] == "viewer"


#: what the browser itself says of the page it loaded (Navigation and Resource Timing)
TIMING_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  const sum = (xs, k) => xs.reduce((a, x) => a + (x[k] || 0), 0);
  return {interactive: nav.domContentLoadedEventEnd, transferred: nav.transferSize +
          sum(res, "transferSize"), decoded: nav.decodedBodySize + sum(res, "decodedBodySize"),
          resources: res.map((r) => r.name)};
}"""


def test_every_page_weighs_under_500_kb_in_the_browser(ui_server: Server, chromium: Any) -> None:
    """Bytes, not time: each page and all it loads, from an empty cache, measured by Chromium's
    own timing entries (the large store's figures come from benchmarks/ui_pages.py)."""
    op = login(chromium, ui_server, "operator")
    wait_for_pipeline(op, ui_server)
    other = trigger(op, ui_server, n="3", pause="0")
    op.wait_for_selector('#run[data-state="success"]', timeout=90_000)
    run_id = trigger(op, ui_server, n="2", pause="0")
    op.wait_for_selector('#run[data-state="success"]', timeout=90_000)
    paths = [
        "/",
        f"/compare?run={other}&run={run_id}",
        "/pipelines/browser_demo",
        f"/runs/{run_id}",
        f"/runs/{run_id}/tasks/compute.work",
        f"/runs/{run_id}/tasks/prepare",
        "/pipelines/browser_demo/metrics",
        "/models",
        "/alerts",
        "/pipelines/browser_demo/trigger",
    ]
    for path in paths:
        ctx = chromium.new_context()  # an empty cache: the page's CSS and script count too
        from server_fixtures import PASSWORD

        assert ctx.request.post(
            ui_server.url + "/api/v1/auth/login", data={"user": "operator", "password": PASSWORD}
        ).ok
        page = ctx.new_page()
        r = page.goto(ui_server.url + path, wait_until="load")
        assert r is not None and r.status == 200, path
        m = page.evaluate(TIMING_JS)
        assert m["interactive"] > 0
        assert len(m["resources"]) >= 2, m  # the stylesheet and the script, from this server
        assert all(u.startswith(ui_server.url) for u in m["resources"]), m  # nothing from a CDN
        assert 0 < m["transferred"] < 500_000, (path, m)
        assert m["decoded"] < 500_000, (path, m)
        name = path.replace(run_id, "run").replace(other, "other")
        name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "home"
        shot(page, f"20-page-{name}")
        ctx.close()
    anonymous = chromium.new_context()
    page = anonymous.new_page()
    page.goto(ui_server.url + "/alerts")
    page.wait_for_selector("#login")
    shot(page, "21-login")
    anonymous.close()


FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex='0']"


def tab_through(page: Any) -> int:
    """Tab from the top of the page to its end: every visible control is reached once, each
    with a visible focus, and every field has a label. Returns how many were reached."""
    controls = page.evaluate(
        f"""() => Array.from(document.querySelectorAll("{FOCUSABLE}"))
             .filter((e) => e.getClientRects().length && !e.disabled).length"""
    )
    unlabelled = page.evaluate(
        """() => Array.from(document.querySelectorAll('input, select, textarea'))
             .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length)
                     && !e.getAttribute('aria-label')).map((e) => e.outerHTML.slice(0, 100))"""
    )
    assert unlabelled == [], unlabelled
    page.evaluate(
        "document.activeElement && document.activeElement.blur(); window.__tabbed = new Set()"
    )
    seen: list[str] = []
    for _ in range(3 * controls + 3):
        page.keyboard.press("Tab")
        where, again, same, style, width = page.evaluate(
            """() => { const e = document.activeElement, s = getComputedStyle(e);
                 const same = e === window.__last; window.__last = e;
                 const again = !same && window.__tabbed.has(e); window.__tabbed.add(e);
                 return [e === document.body ? "" : e.outerHTML.slice(0, 160), again, same,
                         s.outlineStyle, s.outlineWidth]; }"""
        )
        if same:  # the next part of a date field: still the same control
            continue
        if not where or again:
            break
        seen.append(where)
        assert style != "none" and width != "0px", f"no visible focus on {where}"
    missed = page.evaluate(
        f"""() => Array.from(document.querySelectorAll("{FOCUSABLE}"))
             .filter((e) => e.getClientRects().length && !e.disabled && !window.__tabbed.has(e))
             .map((e) => e.outerHTML.slice(0, 160))"""
    )
    assert missed == [], f"controls the keyboard cannot reach: {missed}"
    return controls


def test_the_keyboard_reaches_every_control_with_a_visible_focus_and_acts(
    ui_server: Server, chromium: Any
) -> None:
    page = login(chromium, ui_server, "operator")
    wait_for_pipeline(page, ui_server)
    if not page.locator("a.sq").count():
        trigger(page, ui_server, n="1", pause="0")
        page.wait_for_selector('#run[data-state="success"]', timeout=90_000)
        page.goto(ui_server.url + "/")
    run_url = ui_server.url + str(page.locator("a.sq").first.get_attribute("href"))
    for url in (
        ui_server.url + "/pipelines/browser_demo",
        ui_server.url + "/pipelines/browser_demo/trigger",
        run_url,
        run_url + "/tasks/prepare",
        ui_server.url + "/pipelines/browser_demo/metrics",
    ):
        page.goto(url)
        assert tab_through(page) > 3, url
    page.goto(ui_server.url + "/")
    controls = tab_through(page)
    # a control used from the keyboard: pause the pipeline with the switch, then resume it
    toggle = '#main tr[data-pipeline="browser_demo"] button.toggle'
    page.focus("#main a")  # back to the top of the content, then Tab to the switch
    for _ in range(controls):
        if page.evaluate(f"document.activeElement === document.querySelector('{toggle}')"):
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('role')") == "switch"
    with page.expect_navigation():
        page.keyboard.press("Space")
    assert page.get_attribute(toggle, "aria-checked") == "true"
    assert "paused" in page.inner_text(toggle)  # a word, not only a colour
    page.focus(toggle)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_attribute(toggle, "aria-checked") == "false"
    assert not page.errors


def test_states_read_as_icons_and_words_not_only_colours(ui_server: Server, chromium: Any) -> None:
    page = login(chromium, ui_server, "viewer")
    wait_for_pipeline(page, ui_server)
    page.goto(ui_server.url + "/pipelines/browser_demo")
    for where in ("/", "/pipelines/browser_demo"):
        page.goto(ui_server.url + where)
        bare = page.evaluate(
            """() => Array.from(document.querySelectorAll('[class*="s-"]'))
                 .filter((e) => /(^| )s-/.test(e.getAttribute('class')))
                 .filter((e) => !e.classList.contains('none') && !e.textContent.trim())
                 .map((e) => e.outerHTML.slice(0, 100))"""
        )
        assert bare == [], bare  # every coloured state also has an icon or words
        for sq in page.locator("a.sq").all():
            assert re.search(r"(success|failed|running|queued)$", str(sq.get_attribute("title")))


def test_a_backfill_is_previewed_before_it_is_created(ui_server: Server, chromium: Any) -> None:
    page = login(chromium, ui_server, "operator")
    for _ in range(60):
        page.goto(ui_server.url + "/")
        if page.locator('tr[data-pipeline="nightly_demo"]').count():
            break
        page.wait_for_timeout(500)
    page.goto(ui_server.url + "/pipelines/nightly_demo/backfill")
    page.fill("#b-start", "2026-01-03")
    page.fill("#b-end", "2026-01-01")
    page.click("button[name=preview]")
    assert "must not be after" in page.locator("#backfill .form-error").inner_text()
    page.fill("#b-start", "2026-01-01")
    page.fill("#b-end", "2026-01-03")
    page.click("button[name=preview]")
    page.wait_for_selector("#backfill-preview:not([hidden])")
    rows = page.locator("#backfill-preview tbody tr")
    assert rows.count() == 3
    assert "3 intervals" in page.locator("#backfill-summary").inner_text()
    assert "new" in rows.first.inner_text()
    shot(page, "17-backfill-preview")
    # nothing was created by the preview
    assert (
        page.evaluate(
            "async () => (await (await fetch('/api/v1/runs?pipeline=nightly_demo&run_type=backfill'"
            ")).json()).items.length"
        )
        == 0
    )
    with page.expect_navigation():
        page.click("#backfill-create")
    assert page.url.endswith("/pipelines/nightly_demo")
    assert (
        page.evaluate(
            "async () => (await (await fetch('/api/v1/runs?pipeline=nightly_demo&run_type=backfill'"
            ")).json()).items.length"
        )
        == 3
    )
    assert not page.errors


def test_a_running_log_is_followed_live_and_an_operator_cancels_the_run(
    ui_server: Server, chromium: Any
) -> None:
    page = login(chromium, ui_server, "operator")
    page.on("dialog", lambda d: d.accept())
    wait_for_pipeline(page, ui_server)
    run_id = trigger(page, ui_server, n="1", pause="6")
    # the mapped instance's page while it runs: its log grows on the page, never reloaded
    page.goto(f"{ui_server.url}/runs/{run_id}/tasks/compute.work?map_index=0")
    for _ in range(60):
        if page.locator('#log[data-growing="true"]').count():
            break
        page.wait_for_timeout(500)
        page.goto(f"{ui_server.url}/runs/{run_id}/tasks/compute.work?map_index=0")
    page.evaluate("window.__still_the_same_page = true")
    assert "Following the log" in page.locator("#log-tail").inner_text()
    page.locator("pre.log", has_text="finished 0").wait_for(timeout=60_000)
    page.locator("#log-tail", has_text="ended").wait_for(timeout=60_000)
    assert "working on 0" in page.locator("pre.log").inner_text()
    assert page.evaluate("window.__still_the_same_page === true")
    shot(page, "18-task-log-followed")
    # cancel a run that would take long
    run_id = trigger(page, ui_server, n="2", pause="60")
    page.wait_for_selector('#run[data-state="running"]', timeout=60_000)
    page.click("#cancel-run")
    page.wait_for_selector('#run[data-state="failed"]', timeout=90_000)
    assert "failed" in page.locator('tr[data-task="compute.work"]').inner_text()
    page.reload()
    assert "cancelled by operator" in page.locator("table.tasks").inner_text()
    assert page.locator("#cancel-run").is_hidden()
    shot(page, "19-run-cancelled")
    assert not page.errors
