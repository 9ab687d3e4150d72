"""``/api/v1/pipelines``: the listing (last runs, next run, paused, import errors), the graph
(tasks, edges, groups, mapped tasks, options, params with their types), pause/unpause and
trigger (params checked, logical date, idempotency key), on every store."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from server_fixtures import Api

PIPELINE = '''
from typing import Literal
import phloem
from phloem import pipeline, task

@task
def load(n: int) -> list:
    return list(range(n))

@task(retries=2, retry_delay=1.5)
def square(x: int) -> int:
    return x * x

@task
def total(xs: list) -> int:
    return sum(xs)

@pipeline(schedule="0 2 * * *", start_date="2026-01-01", tags=["ml"], description="<b>nightly</b>")
def nightly(n: int = 3, mode: Literal["fast", "slow"] = "fast", ratio: float = 0.5):
    with phloem.group("prep"):
        xs = load(n)
    total(square.expand(x=xs))

@pipeline
def manual():
    load(1)
'''


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "pipelines"
    d.mkdir()
    (d / "jobs.py").write_text(textwrap.dedent(PIPELINE))
    (d / "broken.py").write_text("import no_such_module_here\n")
    return d


def _read(api: Api, folder: Path) -> None:
    from phloem.scheduler.lookup import read_folder

    read_folder(api.ph, folder)


def test_list_shows_pipelines_next_run_and_import_errors(api_on_store: Api, folder: Path) -> None:
    api = api_on_store
    _read(api, folder)
    r = api.get("viewer", "/api/v1/pipelines")
    assert r.status_code == 200, r.text
    body = r.json()
    names = [p["name"] for p in body["items"]]
    assert names == ["manual", "nightly"]
    nightly = body["items"][1]
    assert nightly["schedule"] == "0 2 * * *" and nightly["paused"] is False
    assert nightly["next_run_at"] is not None and nightly["next_run_at"].endswith("02:00:00+00:00")
    assert nightly["description"] == "<b>nightly</b>"  # as data, in JSON
    assert r.headers["content-type"] == "application/json"
    assert body["items"][0]["next_run_at"] is None  # manual
    [(file, error)] = body["import_errors"].items()
    assert file.endswith("broken.py") and "no_such_module_here" in error
    r = api.get("viewer", "/api/v1/pipelines", params={"tag": "ml"})
    assert [p["name"] for p in r.json()["items"]] == ["nightly"]
    first = api.get("viewer", "/api/v1/pipelines", params={"limit": 1}).json()
    assert [p["name"] for p in first["items"]] == ["manual"] and first["next_cursor"]
    second = api.get(
        "viewer", "/api/v1/pipelines", params={"limit": 1, "cursor": first["next_cursor"]}
    ).json()
    assert [p["name"] for p in second["items"]] == ["nightly"] and second["next_cursor"] is None


def test_detail_gives_the_graph(api: Api, folder: Path) -> None:
    _read(api, folder)
    r = api.get("viewer", "/api/v1/pipelines/nightly")
    assert r.status_code == 200, r.text
    g = r.json()["graph"]
    tasks = {t["task_id"]: t for t in g["tasks"]}
    assert set(tasks) == {"prep.load", "square", "total"}
    assert tasks["prep.load"]["group"] == "prep"
    assert tasks["square"]["mapped"] is True and tasks["total"]["mapped"] is False
    assert tasks["square"]["options"]["retries"] == 2
    assert tasks["square"]["options"]["retry_delay"] == 1.5
    assert {(e["source"], e["target"]) for e in g["edges"]} == {
        ("prep.load", "square"),
        ("square", "total"),
    }
    assert g["groups"] == ["prep"]
    params = {p["name"]: p for p in g["params"]}
    assert params["n"] == {"name": "n", "type": "int", "default": 3}
    assert "fast" in params["mode"]["type"] and params["mode"]["default"] == "fast"
    assert params["ratio"]["type"] == "float"


def test_unknown_pipelines_are_404_problems(api: Api) -> None:
    for method, path in [
        ("GET", "/api/v1/pipelines/nope"),
        ("POST", "/api/v1/pipelines/nope/pause"),
        ("POST", "/api/v1/pipelines/nope/runs"),
    ]:
        r = api.call("admin", method, path, json={})
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "nope" in r.json()["detail"]


def test_pause_and_unpause(api: Api, folder: Path) -> None:
    _read(api, folder)
    assert api.post("viewer", "/api/v1/pipelines/nightly/pause").status_code == 403
    r = api.post("operator", "/api/v1/pipelines/nightly/pause")
    assert r.status_code == 200 and r.json()["paused"] is True and r.json()["next_run_at"] is None
    r = api.post("operator", "/api/v1/pipelines/nightly/runs", json={})
    assert r.status_code == 409 and "paused" in r.json()["detail"]
    assert api.post("operator", "/api/v1/pipelines/nightly/unpause").json()["paused"] is False


def test_trigger_checks_params_and_repeats_by_key(api_on_store: Api, folder: Path) -> None:
    api = api_on_store
    _read(api, folder)
    url = "/api/v1/pipelines/nightly/runs"
    r = api.post("operator", url, json={"params": {"n": 5, "mode": "slow"},
                                        "logical_date": "2026-03-01T00:00:00Z",
                                        "idempotency_key": "k1"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["params"] == {"n": 5, "mode": "slow", "ratio": 0.5}
    assert run["logical_date"].startswith("2026-03-01T00:00:00") and run["state"] == "queued"
    assert r.headers["location"] == f"/api/v1/runs/{run['run_id']}"
    again = api.post("operator", url, json={"params": {"n": 5, "mode": "slow"},
                                            "logical_date": "2026-03-01T00:00:00Z",
                                            "idempotency_key": "k1"})
    assert again.status_code == 200 and again.json()["run_id"] == run["run_id"]
    # the same logical date without the key: a conflict
    r = api.post("operator", url, json={"logical_date": "2026-03-01T00:00:00Z"})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    for bad, where in [
        ({"params": {"n": "many"}}, "n"),
        ({"params": {"mode": "medium"}}, "mode"),
        ({"params": {"nn": 1}}, "nn"),
        ({"logical_date": "yesterday"}, "logical_date"),
        ({"params": {"n": 1}, "extra": True}, "extra"),
    ]:
        r = api.post("operator", url, json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert where in r.json()["detail"], (bad, r.json())
    assert len(api.ph.store.list_runs("nightly")) == 1  # nothing was queued by bad requests
    assert api.post("viewer", url, json={}).status_code == 403


def test_sql_and_html_looking_names_are_plain_data(api: Api, folder: Path) -> None:
    _read(api, folder)
    for name in ["x'; DROP TABLE runs; --", "<script>alert(1)</script>", "..", "%2e%2e"]:
        r = api.get("viewer", f"/api/v1/pipelines/{name}")
        assert r.status_code in (404, 405), (name, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
    assert [p["name"] for p in api.get("viewer", "/api/v1/pipelines").json()["items"]] == [
        "manual", "nightly"]
