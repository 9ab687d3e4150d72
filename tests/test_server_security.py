"""Who may call what: every route of the API declares its access rule, and a table calls each
one with no credentials, a viewer, an operator and an admin token, an expired token and a
revoked one, expecting 401 / 403 / a pass for each (a new endpoint without a rule fails here).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phloem.accounts.roles import Role
from phloem.accounts.secrets import digest
from phloem.server.app import Endpoint
from phloem.server.app import endpoints as all_endpoints
from phloem.server.auth import PUBLIC
from server_fixtures import Api, make_api

#: routes that are not API endpoints (the schema and its viewer): readable by anyone
OPEN_DOCS = {"/api/v1/openapi.json", "/api/v1/docs"}

CREDENTIALS = ["none", "viewer", "operator", "admin", "expired", "revoked"]


def endpoints(app: Any) -> list[tuple[str, str, Any]]:
    """(method, path, rule) of every API route; fails on a route with no rule or two."""
    out = []
    for ep in all_endpoints(app.routes):
        if not isinstance(ep, Endpoint):
            path = getattr(ep, "path", repr(ep))
            assert path in OPEN_DOCS, (
                f"route {path} is not an API route: give it an access rule or list it"
            )
            continue
        assert len(ep.rules) == 1, (
            f"{sorted(ep.methods)} {ep.path} declares {len(ep.rules)} access rules; give it "
            "exactly one: Depends(require(Role.X)) or Depends(public())"
        )
        for method in sorted(ep.methods - {"HEAD"}):
            out.append((method, ep.path, ep.rules[0]))
    return out


@pytest.fixture(scope="module")
def table_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from phloem.accounts import manage

    a = make_api("memory", Path(tmp_path_factory.mktemp("home")))
    revoked, _ = manage.create_token(a.ph, "soon-gone", "admin")
    manage.revoke_token(a.ph, "soon-gone")
    # an admin token that expired a second after it was made (an hour ago)
    expired = "phl_expired-" + "x" * 30
    a.ph.store.accounts.add_token("expired", "admin", digest(expired), time.time() - 3600,
                                  time.time() - 3599)
    a.tokens["expired"], a.tokens["revoked"] = expired, revoked
    a.app.state.stopping.set()  # event streams end at once instead of following the store
    yield a
    a.client.close()
    a.ph.close()


def _concrete(path: str) -> str:
    """The path with each parameter filled in (with a value that names nothing)."""
    return re.sub(r"\{[^}]+\}", "nothing-here", path)


def expected(rule: Any, cred: str, path: str = "/api/v1") -> str:
    if rule == PUBLIC:
        return "pass"
    if cred in ("none", "expired", "revoked"):
        # a web UI page sends the browser to its login form instead
        return "401" if is_api(path) else "303"
    return "pass" if Role(cred).allows(rule) else "403"


def is_api(path: str) -> bool:
    """Routes for programs (the API, and /metrics for Prometheus): refusals are problem+json."""
    return path.startswith("/api/") or path == "/metrics"


def test_every_route_declares_one_access_rule(table_api: Api) -> None:
    found = endpoints(table_api.app)
    assert len(found) >= 4
    assert any(rule == PUBLIC for _, _, rule in found)


def test_the_access_table(table_api: Api) -> None:
    failures = []
    rows = 0
    for method, path, rule in endpoints(table_api.app):
        for cred in CREDENTIALS:
            want = expected(rule, cred, path)
            headers = {} if cred == "none" else table_api.headers(cred)
            kw: dict[str, Any] = {"headers": headers, "follow_redirects": False}
            if method in ("POST", "PUT", "PATCH"):
                kw["json"] = {}
            r = table_api.client.request(method, _concrete(path), **kw)
            rows += 1
            got = str(r.status_code)
            ok = got == want if want != "pass" else r.status_code not in (401, 403)
            if r.status_code >= 500 or not ok:
                failures.append(f"{method} {path} as {cred}: {got}, expected {want}")
            if got in ("401", "403"):
                assert r.headers["content-type"] == (
                    "application/problem+json" if is_api(path) else "text/html; charset=utf-8"
                ), f"{method} {path} as {cred}"
            if got == "303":
                assert r.headers["location"].startswith("/login?next=")
    assert not failures, "\n".join(failures)
    assert rows >= 24


def test_lineage_is_for_viewers(table_api: Api) -> None:
    rules = {(m, path): rule for m, path, rule in endpoints(table_api.app)}
    assert rules[("GET", "/api/v1/lineage")] == Role.VIEWER
    r = table_api.get("viewer", "/api/v1/lineage", params={"target": "run-x task"})
    assert r.status_code == 404 and r.json()["title"] == "run not found"


def test_a_route_without_a_rule_fails_the_check(tmp_path: Path) -> None:
    from fastapi import APIRouter

    a = make_api("memory", tmp_path / "home")
    router = APIRouter()

    @router.get("/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    a.app.include_router(router, prefix="/api/v1")
    with pytest.raises(AssertionError, match=r"forgotten.*0 access rules"):
        endpoints(a.app)
    a.ph.close()


# -- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "-1", "501", str(10**12), "abc", "1e9"])
def test_page_sizes_out_of_range_are_422(table_api: Api, limit: str) -> None:
    r = table_api.get("viewer", "/api/v1/pipelines", params={"limit": limit})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "limit" in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "status", "title"),
    [
        ({"target": "abcdef0123"}, 404, "artifact not found"),  # no such hash
        ({"target": "sha256:ffffffffffff"}, 404, "artifact not found"),
        ({"target": "abc"}, 422, "lineage error"),  # prefix too short
        ({"target": "a b c"}, 422, "lineage error"),  # three words
        ({"target": "!!"}, 422, "lineage error"),  # no kind of target
        ({"target": "no-such-run train"}, 404, "run not found"),
        ({"target": "fraud:3"}, 404, "model not found"),
        ({"target": "abcdef0123", "direction": "sideways"}, 422, None),
        ({"target": "abcdef0123", "depth": "0"}, 422, None),
        ({"target": "abcdef0123", "max_nodes": "-1"}, 422, None),
        ({"target": "r t", "map_index": "-1"}, 422, None),
        ({"target": "x" * 301}, 422, None),
        ({}, 422, None),
    ],
)
def test_lineage_targets_that_name_nothing_are_problems_not_failures(
    table_api: Api, params: dict[str, str], status: int, title: str | None
) -> None:
    r = table_api.get("viewer", "/api/v1/lineage", params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if title is not None:
        assert r.json()["title"] == title and r.json()["detail"]


@pytest.mark.parametrize("cursor", ["garbage", "e30", "W10", "%00", "x" * 600])
def test_cursors_the_server_did_not_give_are_422(table_api: Api, cursor: str) -> None:
    r = table_api.get("viewer", "/api/v1/pipelines", params={"cursor": cursor})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pipelines/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/pipelines/%2e%2e",
        "/api/v1/pipelines/..\\..\\secret.key",
        "/api/v1/../../etc/passwd",
        "/api/v1/pipelines/x%00y",
    ],
)
def test_path_traversal_names_nothing(table_api: Api, path: str) -> None:
    r = table_api.get("admin", path)
    assert r.status_code in (404, 422), (path, r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert "root:" not in r.text


@pytest.mark.parametrize(
    "text", ["' OR '1'='1", "x'); DROP TABLE runs; --", "<script>alert(1)</script>", "\u202e"]
)
def test_sql_and_html_looking_input_is_only_data(table_api: Api, text: str) -> None:
    r = table_api.get("viewer", "/api/v1/pipelines", params={"tag": text})
    assert r.status_code == 200 and r.json()["items"] == []
    r = table_api.get("viewer", "/api/v1/events", params={"pipeline": text, "after": 0})
    assert r.status_code == 200
    r = table_api.post(None, "/api/v1/auth/login", json={"user": text, "password": text})
    assert r.status_code == 401
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"] == "application/problem+json"
