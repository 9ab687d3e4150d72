"""The API's skeleton: errors as problem documents (never a 5xx for bad input), the body cap,
browser login with its cookie, CSRF token and rate limits, tokens that expire or are revoked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from phloem.errors import (
    AccountNotFound,
    LastAdmin,
    ParamError,
    PhloemError,
    PipelineNotFound,
    RunConflict,
    RunNotFound,
)
from phloem.server.problems import MEDIA_TYPE, status_of
from server_fixtures import PASSWORD, Api, make_api

PROBLEM = MEDIA_TYPE


def _problem(r: object, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]


def test_phloem_errors_map_to_statuses() -> None:
    assert status_of(RunNotFound("x")) == 404
    assert status_of(PipelineNotFound("x")) == 404
    assert status_of(ParamError("x")) == 422
    assert status_of(RunConflict("x")) == 409
    assert status_of(AccountNotFound("x")) == 404
    assert status_of(LastAdmin("x")) == 409
    assert status_of(PhloemError("x")) == 400


def test_unknown_paths_and_methods_are_problems(api: Api) -> None:
    assert "no such endpoint" in _problem(api.get("admin", "/api/v1/nothing"), 404)["detail"]
    _problem(api.call("admin", "DELETE", "/api/v1/health"), 405)


def test_malformed_json_is_400_and_unknown_fields_422(api: Api) -> None:
    r = api.post(None, "/api/v1/auth/login", content=b'{"user": ',
                 headers={"Content-Type": "application/json"})
    assert "not valid JSON" in _problem(r, 400)["detail"]
    r = api.post(None, "/api/v1/auth/login", json={"user": "a", "password": "b", "pasword": 1})
    body = _problem(r, 422)
    assert body["errors"] == [
        {"where": "body.pasword", "message": "Extra inputs are not permitted"}
    ]
    _problem(api.post(None, "/api/v1/auth/login", json=["a"]), 422)


def test_oversized_bodies_are_refused_declared_or_streamed(tmp_path: Path) -> None:
    a = make_api("memory", tmp_path / "home", max_body_bytes=1000)
    big = b'{"user": "' + b"x" * 5000 + b'", "password": "y"}'
    r = a.post(
        None, "/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"}
    )
    assert "1000 bytes" in _problem(r, 413)["detail"]

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 500

    r = a.post(None, "/api/v1/auth/login", content=chunks(),
               headers={"Content-Type": "application/json"})
    _problem(r, 413)
    a.ph.close()


def test_html_in_input_comes_back_as_json_text(api: Api) -> None:
    r = api.post(None, "/api/v1/auth/login", json={"user": "<script>alert(1)</script>",
                                                   "password": "' OR 1=1 --"})
    body = _problem(r, 401)
    assert "<script>" not in r.text or r.headers["content-type"] == PROBLEM
    assert body["detail"] == "wrong user name or password"


def test_login_cookie_csrf_and_logout(api: Api) -> None:
    r = api.post(None, "/api/v1/auth/login", json={"user": "operator", "password": PASSWORD})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    csrf = r.json()["csrf_token"]
    assert r.json()["role"] == "operator"
    client = api.client  # keeps the cookie
    assert client.get("/api/v1/me").json() == {"user": "operator", "role": "operator",
                                               "via": "session"}
    # a state-changing request with the cookie but without the CSRF token is refused
    r = client.post("/api/v1/auth/logout")
    assert "X-CSRF-Token" in _problem(r, 403)["detail"]
    r = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "wrong"})
    _problem(r, 403)
    r = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    client.cookies.clear()
    # the session is gone from the store: the old cookie no longer works
    secret = cookie.split(";")[0].split("=", 1)[1].strip('"')
    client.cookies.set("phloem_session", secret)
    r = client.get("/api/v1/me")
    _problem(r, 401)


def test_wrong_passwords_are_rate_limited_per_user(tmp_path: Path) -> None:
    from phloem.server.sessions import LoginLimits

    a = make_api("memory", tmp_path / "home", login_limits=LoginLimits(per_user=3,
                                                                        per_address=100))
    for _ in range(3):
        _problem(a.post(None, "/api/v1/auth/login", json={"user": "admin", "password": "no"}), 401)
    r = a.post(None, "/api/v1/auth/login", json={"user": "admin", "password": PASSWORD})
    assert _problem(r, 429) and r.headers["retry-after"] == "300"
    # another user is not locked out by them
    r = a.post(None, "/api/v1/auth/login", json={"user": "viewer", "password": PASSWORD})
    assert r.status_code == 200
    a.ph.close()


def test_failed_logins_count_per_address_across_user_names(tmp_path: Path) -> None:
    from phloem.server.sessions import LoginLimits

    a = make_api("memory", tmp_path / "home", login_limits=LoginLimits(per_user=100,
                                                                        per_address=4))
    for i in range(4):
        _problem(a.post(None, "/api/v1/auth/login", json={"user": f"u{i}", "password": "no"}),
                 401)
    _problem(a.post(None, "/api/v1/auth/login", json={"user": "admin", "password": PASSWORD}),
             429)
    a.ph.close()


@pytest.mark.parametrize("header", ["Basic YWRtaW46eA==", "Bearer", "Bearer phl_unknown"])
def test_bad_authorization_headers_are_401(api: Api, header: str) -> None:
    r = api.client.get("/api/v1/me", headers={"Authorization": header})
    assert _problem(r, 401) and r.headers["www-authenticate"] == "Bearer"


def test_revoked_and_expired_tokens_are_refused_with_their_reason(api: Api) -> None:
    from phloem.accounts import manage

    token, _ = manage.create_token(api.ph, "ci", "viewer")
    assert api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()[
        "user"] == "viewer"
    manage.revoke_token(api.ph, "ci")
    r = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert "revoked" in _problem(r, 401)["detail"]
    from phloem.accounts.secrets import digest

    api.ph.store.accounts.add_token("old", "viewer", digest("phl_old"), time.time() - 10,
                                    time.time() - 5)
    r = api.client.get("/api/v1/me", headers={"Authorization": "Bearer phl_old"})
    assert "expired" in _problem(r, 401)["detail"]


def test_admins_manage_users_and_tokens_over_the_api(api: Api) -> None:
    r = api.post("admin", "/api/v1/users",
                 json={"name": "ana", "role": "operator", "password": "a long password"})
    assert r.status_code == 201 and r.json()["role"] == "operator"
    assert "password" not in r.text
    users = api.get("admin", "/api/v1/users").json()
    assert {u["name"] for u in users} == {"viewer", "operator", "admin", "ana"}
    assert "argon2" not in api.get("admin", "/api/v1/users").text
    r = api.post("admin", "/api/v1/users",
                 json={"name": "ana", "role": "viewer", "password": "a long password"})
    assert r.status_code == 400 and "exists already" in r.json()["detail"]
    r = api.post("admin", "/api/v1/users", json={"name": "bob", "role": "root",
                                                  "password": "a long password"})
    assert r.status_code == 422
    r = api.post("admin", "/api/v1/tokens", json={"name": "ana-ci", "user": "ana",
                                                   "expires": "1d"})
    assert r.status_code == 201
    token = r.json()["token"]
    assert api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()[
        "user"] == "ana"
    listed = api.get("admin", "/api/v1/tokens").text
    assert token not in listed and "ana-ci" in listed
    r = api.post("admin", "/api/v1/tokens", json={"name": "x", "expires": "someday"})
    assert r.status_code == 422 and "like 30d" in r.json()["detail"]
    assert api.call("admin", "DELETE", "/api/v1/tokens/ana-ci").status_code == 204
    assert api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}
                          ).status_code == 401
    assert api.call("admin", "DELETE", "/api/v1/users/ana").status_code == 204
    assert api.call("admin", "DELETE", "/api/v1/users/ana").status_code == 404
    assert api.get("operator", "/api/v1/users").status_code == 403


def test_two_admins_disabling_each_other_at_once_leave_one_enabled(api: Api) -> None:
    """The route's "not yourself" check passes for both when two admins disable each other at
    once; the accounts' rule, checked with the change, refuses the second: 409 LastAdmin."""
    from phloem.accounts import manage
    from phloem.server.sessions import StoreAuthenticator

    class Interleaved(StoreAuthenticator):
        """Authenticates as the store says, then lets the other admin's request (it disables
        this caller) commit before this one goes on with what it proved a moment before."""

        def authenticate(self, request: Any) -> Any:
            who = super().authenticate(request)
            if who is not None and who.user == "admin2":
                assert api.call("admin", "PATCH", "/api/v1/users/admin2",
                                json={"disabled": True}).status_code == 200
            return who

    manage.add_user(api.ph, "admin2", "admin", PASSWORD)
    token, _ = manage.create_token(api.ph, "admin2-token", "admin2")
    api.app.state.authenticator = Interleaved(api.ph)
    r = api.client.patch("/api/v1/users/admin", json={"disabled": True},
                         headers={"Authorization": f"Bearer {token}"})
    detail = _problem(r, 409)["detail"]
    assert "cannot disable user 'admin': it is the last enabled admin" in detail
    assert r.json()["user"] == "admin"
    assert [(u.name, u.disabled) for u in manage.users(api.ph) if u.role.value == "admin"] == [
        ("admin", False), ("admin2", True)
    ]


def test_admins_change_roles_and_disable_users_but_not_themselves(api: Api) -> None:
    from fastapi.testclient import TestClient

    r = api.call("admin", "PATCH", "/api/v1/users/operator", json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert api.get("operator", "/api/v1/me").json()["role"] == "viewer"  # its token follows
    api.call("admin", "PATCH", "/api/v1/users/operator", json={"role": "operator"})
    # a browser session of the user, ended by disabling it
    browser = TestClient(api.app)
    assert browser.post("/api/v1/auth/login",
                        json={"user": "operator", "password": PASSWORD}).status_code == 200
    assert browser.get("/api/v1/me").status_code == 200
    r = api.call("admin", "PATCH", "/api/v1/users/operator", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert browser.get("/api/v1/me").status_code == 401
    assert "disabled" in _problem(api.get("operator", "/api/v1/me"), 401)["detail"]
    r = browser.post("/api/v1/auth/login", json={"user": "operator", "password": PASSWORD})
    assert "disabled" in _problem(r, 403)["detail"]
    assert api.get("admin", "/api/v1/users").json()[1]["disabled"] is True
    api.call("admin", "PATCH", "/api/v1/users/operator", json={"disabled": False})
    assert api.get("operator", "/api/v1/me").status_code == 200
    # nobody locks themselves out, nobody but an admin changes anyone
    for body in ({"role": "viewer"}, {"disabled": True}):
        r = api.call("admin", "PATCH", "/api/v1/users/admin", json=body)
        assert "ask another admin" in _problem(r, 409)["detail"]
    assert _problem(api.call("admin", "DELETE", "/api/v1/users/admin"), 409)
    # nor by replacing itself with another role
    r = api.call("admin", "POST", "/api/v1/users",
                 json={"name": "admin", "role": "viewer", "password": PASSWORD, "replace": True})
    assert "ask another admin" in _problem(r, 409)["detail"]
    assert api.get("admin", "/api/v1/me").json()["role"] == "admin"
    assert api.call("admin", "PATCH", "/api/v1/users/admin", json={"role": "admin"}
                    ).status_code == 200
    assert _problem(api.call("admin", "PATCH", "/api/v1/users/nope", json={"role": "viewer"}),
                    404)
    assert _problem(api.call("admin", "PATCH", "/api/v1/users/viewer", json={}), 422)
    assert api.call("operator", "PATCH", "/api/v1/users/viewer",
                    json={"role": "admin"}).status_code == 403
    browser.close()
