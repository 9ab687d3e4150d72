"""The REST API, the client and the remote CLI against a real server: uvicorn in its own
process on a free port, over a SQLite file and over PostgreSQL.

The CLI's read commands must print the same thing with ``--server URL`` as on the machine that
holds the store: each is run both ways against one store and the outputs compared.
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import live_server
from conftest import _pg_schema_url
from live_server import LiveServer
from phloem.cli.main import app as cli_app
from phloem.errors import (
    BadCursor,
    PhloemError,
    RunBusy,
    RunNotFound,
    ServerError,
    TaskNotFound,
)
from processes import Processes

PIPELINE = '''
import time
from pathlib import Path

import pandas as pd

from phloem import pipeline, task

HERE = Path(__file__).parent


@task
def numbers() -> list[int]:
    print("making <script>alert(1)</script> numbers")
    return [1, 2, 3]


@task
def square(x: int) -> int:
    print(f"square {x}")
    return x * x


@task
def table(xs: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"x": xs, "label": [f"<b>{x}</b>" for x in xs]})


@task
def flaky(squares: list[int]) -> int:
    print("checking the fix")
    if not (HERE / "fixed").exists():
        raise ValueError("not fixed yet")
    return sum(squares)


@pipeline(name="demo")
def demo():
    xs = numbers()
    table(xs)
    flaky(square.expand(x=xs))


@task
def chatty() -> str:
    n = 0
    while not (HERE / "quiet").exists() and n < 600:
        print(f"line {n}", flush=True)
        n += 1
        time.sleep(0.1)
    return "done"


@pipeline(name="talk")
def talk():
    chatty()


@pipeline(name="daily", schedule="0 3 * * *", start_date="2026-01-01")
def daily():
    numbers()


@task
def sleepy() -> None:
    time.sleep(120)


@pipeline(name="slow")
def slow():
    sleepy()


@task
def shaped() -> dict:
    import phloem

    frame = pd.DataFrame({"x": [1, 2]})
    return {"frame": phloem.Output(frame, metadata={"source": "demo"}), "n": 2, "t": (1, "a")}


@pipeline(name="shaped")
def shaped_outputs():
    shaped()
'''

runner = CliRunner()


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("live")
    folder = base / "pipelines"
    folder.mkdir()
    (folder / "flows.py").write_text(textwrap.dedent(PIPELINE))
    home = base / "home"
    procs = Processes()
    try:
        if request.param == "sqlite":
            home.mkdir()
            yield live_server.start(procs, home, f"sqlite:///{home / 'phloem.db'}", folder)
        else:
            for url in _pg_schema_url():
                server = live_server.start(procs, home, url, folder)
                yield server
                procs.stop(server.proc)
    finally:
        procs.close()


def local(live: LiveServer, *args: str) -> Any:
    env = {k: v for k, v in live.env.items() if k.startswith("PHLOEM_")}
    return runner.invoke(cli_app, list(args), env=env)


def remote(live: LiveServer, *args: str, role: str = "viewer", tmp: Path | None = None) -> Any:
    """The command run as a laptop would: another home, the server's URL and a token."""
    env = {
        "PHLOEM_HOME": str(tmp or Path("/nonexistent-phloem-home")),
        "PHLOEM_DB_URL": "sqlite:////nonexistent-phloem-home/never.db",
        "PHLOEM_TOKEN": live.tokens[role],
    }
    return runner.invoke(cli_app, [*args, "--server", live.url], env=env)


@pytest.fixture(scope="module")
def demo_run(live: LiveServer) -> str:
    """A run of ``demo`` that failed (flaky is not fixed yet), made on the server's store."""
    folder = live.folder
    r = local(live, "run", f"{folder / 'flows.py'}:demo", "--executor", "inline", "--json")
    assert r.exit_code == 1, r.output
    return str(json.loads(r.stdout)["run_id"])


def same(live: LiveServer, *args: str, role: str = "viewer") -> Any:
    mine, theirs = local(live, *args), remote(live, *args, role=role)
    assert (mine.exit_code, mine.stdout) == (theirs.exit_code, theirs.stdout), args
    return mine


def test_read_commands_print_the_same_through_the_server(live: LiveServer, demo_run: str) -> None:
    assert "demo" in same(live, "runs", "list").stdout
    same(live, "runs", "list", "--json")
    same(live, "runs", "list", "--pipeline", "demo", "--state", "failed", "-n", "1")
    shown = same(live, "runs", "show", demo_run)
    assert "square (x3)" in shown.stdout and "not fixed yet" in shown.stdout
    same(live, "runs", "show", demo_run[:10], "--json")
    assert "<script>" in same(live, "logs", demo_run, "numbers").stdout
    same(live, "logs", demo_run, "square", "--map-index", "2")
    same(live, "logs", demo_run, "flaky", "--try", "1")
    assert same(live, "output", demo_run, "numbers").stdout.strip().startswith("[")
    same(live, "output", demo_run, "square", "-i", "1")
    frame = same(live, "output", demo_run, "table")
    assert "first 3 rows" in frame.stdout and "<b>1</b>" in frame.stdout
    same(live, "output", demo_run, "table", "--json")


def test_structured_outputs_and_metadata_read_the_same_through_the_server(
    live: LiveServer,
) -> None:
    r = local(live, "run", f"{live.folder / 'flows.py'}:shaped", "--executor", "inline", "--json")
    assert r.exit_code == 0, r.output
    run_id = json.loads(r.stdout)["run_id"]
    shown = same(live, "output", run_id, "shaped").stdout
    assert "dict of 3 values" in shown and "source:   demo" in shown and "rows:     2" in shown
    doc = json.loads(same(live, "output", run_id, "shaped", "--json").stdout)
    assert doc["structure"] == "dict" and doc["values"]["['n']"] == {"value": 2}
    assert doc["values"]["['t']"]["structure"] == "tuple"
    meta = json.loads(same(live, "output", run_id, "shaped", "--metadata").stdout)
    assert meta["['frame']"]["source"] == "demo" and meta["['frame']"]["rows"] == 2


def test_steer_commands_do_the_same_through_the_server(live: LiveServer, demo_run: str) -> None:
    listed = local(live, "pipelines", "list", "--pipelines", str(live.folder))
    assert "daily" in listed.stdout, listed.output
    assert same(live, "pipelines", "pause", "daily", role="operator").stdout == "paused daily\n"
    assert same(live, "pipelines", "unpause", "daily", role="operator").exit_code == 0
    args = ("trigger", "demo", "--key", "k-1", "--logical-date", "2026-03-01", "--json")
    mine, theirs = local(live, *args), remote(live, *args, role="operator")
    assert mine.exit_code == theirs.exit_code == 0, (mine.output, theirs.output)
    made, again = json.loads(mine.stdout), json.loads(theirs.stdout)
    assert (made.pop("created"), again.pop("created")) == (True, False)
    assert made == again
    bad = ("trigger", "demo", "--param", "nope=1", "--logical-date", "2026-03-02")
    mine, theirs = local(live, *bad), remote(live, *bad, role="operator")
    assert mine.exit_code == theirs.exit_code == 2 and mine.stderr == theirs.stderr
    window = ("backfill", "daily", "--start", "2026-01-01", "--end", "2026-01-03")
    planned = same(live, *window, "--dry-run")
    assert planned.stdout.count("will run (new)") == 2
    created = remote(live, *window, "--json", role="operator")
    assert [i["action"] for i in json.loads(created.stdout)] == ["new"] * 2
    kept = same(live, *window, "--dry-run", "--json")
    assert [i["action"] for i in json.loads(kept.stdout)] == ["running"] * 2  # queued, kept
    with live.client("viewer") as c:
        assert len(c.runs(pipeline="daily", run_types=["backfill"]).items) == 2
    denied = remote(live, *window, role="viewer")
    assert denied.exit_code == 2 and "operator role" in denied.stderr


def test_errors_are_the_same_through_the_server(live: LiveServer, demo_run: str) -> None:
    for args in [
        ("runs", "show", "no-such-run"),
        ("logs", demo_run, "no_such_task"),
        ("logs", demo_run, "square"),  # mapped: which instance?
        ("logs", demo_run, "numbers", "--try", "7"),
        ("output", demo_run, "flaky"),  # failed: no output
        ("output", demo_run, "square", "-i", "9"),
    ]:
        mine, theirs = local(live, *args), remote(live, *args)
        assert mine.exit_code == theirs.exit_code == 2, (args, mine.output, theirs.output)
        assert mine.stderr == theirs.stderr, args
        assert mine.stderr.startswith("error: ")


def test_lineage_reads_the_same_through_the_server(live: LiveServer, demo_run: str) -> None:
    table = f"task:{demo_run}/table"
    doc = json.loads(same(live, "lineage", demo_run, "table", "--downstream", "--json").stdout)
    assert doc["roots"] == [table] and doc["truncated"] is None
    (frame,) = [n for n in doc["nodes"] if n["kind"] == "artifact"]  # the DataFrame it wrote
    assert {"from": table, "to": frame["id"], "role": "output"} in doc["edges"]
    up = json.loads(same(live, "lineage", frame["digest"][:12], "--json").stdout)
    assert up["roots"] == [frame["id"]] and table in {n["id"] for n in up["nodes"]}
    tree = same(live, "lineage", frame["digest"][:12]).stdout
    assert "demo.table" in tree and "sha256:" in tree
    same(live, "lineage", demo_run, "square", "-i", "1", "--json")
    with live.client("viewer") as c:
        both = c.lineage([demo_run, "table"], direction="both", max_depth=10**6)
        assert both["direction"] == "both" and both["roots"] == [table]
        assert {n["id"] for n in doc["nodes"]} <= {n["id"] for n in both["nodes"]}
        assert c.lineage(frame["digest"]) == up
        with pytest.raises(TaskNotFound):
            c.lineage(f"{demo_run} nothing_here")
    for args in [
        ("lineage", "abcdef0123"),
        ("lineage", demo_run, "no_such_task"),
        ("lineage", demo_run[:3]),
        ("lineage", demo_run, "square", "-i", "9"),
    ]:
        mine, theirs = local(live, *args), remote(live, *args)
        assert mine.exit_code == theirs.exit_code == 2, (args, mine.output, theirs.output)
        assert mine.stderr == theirs.stderr and mine.stderr.startswith("error: "), args


def test_without_credentials_or_server_the_cli_says_what_to_do(
    live: LiveServer, tmp_path: Path
) -> None:
    env = {"PHLOEM_HOME": str(tmp_path), "PHLOEM_TOKEN": "phl_wrong"}
    r = runner.invoke(cli_app, ["runs", "list", "--server", live.url], env=env)
    assert r.exit_code == 2 and "error: " in r.stderr and "token" in r.stderr.lower()
    nowhere = f"http://127.0.0.1:{live_server.free_port()}"
    r = runner.invoke(cli_app, ["runs", "list"], env={**env, "PHLOEM_SERVER_URL": nowhere})
    assert r.exit_code == 2 and "cannot reach the phloem server" in r.stderr


def test_client_pages_filters_and_refuses_bad_input(live: LiveServer, demo_run: str) -> None:
    with live.client("viewer") as c:
        first = c.runs(limit=1)
        assert len(first.items) == 1
        assert [r.run_id for r in c.iter_runs(pipeline="demo")].count(demo_run) == 1
        assert c.runs(pipeline="demo", run_types=["backfill"]).items == []
        assert demo_run in [r.run_id for r in c.runs(logical_from="2000-01-01").items]
        with pytest.raises(BadCursor, match="next_cursor"):
            c.runs(cursor="bm90IGEgY3Vyc29y")
        with pytest.raises(ServerError) as huge:
            c.runs(limit=10**9)
        assert huge.value.status == 422
        with pytest.raises(PhloemError, match="not an ISO 8601"):
            c.runs(logical_from="1' OR '1'='1")
        with pytest.raises(RunNotFound):
            c.run("no-such-run")
        detail = c.run_detail(demo_run)
        order = detail.task_order or []
        assert sorted(order) == ["flaky", "numbers", "square", "table"]
        assert order.index("numbers") < order.index("square") < order.index("flaky")
        square = next(t for t in detail.tasks if t.task_id == "square")
        assert square.mapped and square.instances == 3 and square.states == {"success": 3}
        instances = c.instances(demo_run, limit=2)
        assert len(instances.items) == 2 and instances.next_cursor
        assert len(c.all_instances(demo_run)) == 6
        assert [a.try_number for a in c.attempts(demo_run, task_id="flaky")] == [1]
        out = c.output(demo_run, "table", rows=1)
        assert out.kind == "artifact" and out.artifact is not None
        assert len(out.artifact["head"]) == 1
        buf = io.BytesIO()
        assert c.download(demo_run, "table", buf) == out.artifact["size"] > 0
        assert buf.getvalue()[:4] == b"PAR1"
        with pytest.raises(PhloemError, match="JSON value"):
            c.download(demo_run, "numbers", io.BytesIO())


def test_no_request_can_choose_a_path(live: LiveServer, demo_run: str) -> None:
    with live.client("viewer") as c:
        for task in ("../../../../etc/passwd", "..", "numbers/../../x", "/etc/passwd"):
            with pytest.raises((TaskNotFound, ServerError)):
                b"".join(c.log(demo_run, task))
        with pytest.raises((RunNotFound, ServerError)) as up:
            b"".join(c.log("../" + demo_run, "numbers"))
        assert getattr(up.value, "status", 404) == 404
    headers = {"Authorization": f"Bearer {live.tokens['viewer']}"}
    for path in (
        f"/api/v1/runs/{demo_run}/tasks/..%2F..%2Fetc%2Fpasswd/logs",
        "/api/v1/runs/..%2F..%2F..%2Fetc/tasks/passwd/logs",
        f"/api/v1/runs/{demo_run}/tasks/%2e%2e/artifact",
        "/api/v1/runs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    ):
        r = httpx.get(live.url + path, headers=headers)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert "root:" not in r.text


def test_connection_passwords_are_write_only(live: LiveServer) -> None:
    secret = "pw-Zq81-never-shown"
    seen: list[str] = []
    with live.client("admin") as c:
        uri = f"postgresql://ana:{secret}@db:5432/dw?token={secret}x"
        made = c.set_connection("warehouse", uri)
        seen.append(json.dumps(made))
        assert made["has_password"] is True and made["login"] == "ana"
        seen.append(json.dumps(c.connections()))
        one = httpx.get(
            f"{live.url}/api/v1/connections/warehouse",
            headers={"Authorization": f"Bearer {live.tokens['admin']}"},
        )
        seen.append(one.text)
        with pytest.raises(PhloemError) as bad:
            c.set_connection("broken", f"postgresql://ana:{secret}@db:notaport/dw")
        seen.append(str(bad.value))
        seen.append(httpx.get(f"{live.url}/api/v1/openapi.json").text)
        c.delete_connection("warehouse")
        assert c.connections() == []
    with live.client("operator") as c, pytest.raises(ServerError) as denied:
        c.connections()
    assert denied.value.status == 403
    assert all(secret not in text for text in seen)


def test_pools_variables_and_assets(live: LiveServer) -> None:
    with live.client("admin") as c:
        c.set_pool("gpu", 2, "two cards")
        assert c.pools()["gpu"]["slots"] == 2
        c.set_variable("threshold", {"auc": 0.8}, "gate")
        assert c.variable("threshold") == {"auc": 0.8}
        assert [v["key"] for v in c.variables()] == ["threshold"]
        c.delete_variable("threshold")
        with pytest.raises(PhloemError):
            c.variable("threshold")
        assert c.assets() == [] and c.asset_events(limit=5).items == []
    with live.client("viewer") as c:
        assert "gpu" in c.pools()
        with pytest.raises(ServerError) as denied:
            c.set_pool("gpu", 9)
        assert denied.value.status == 403


def test_retry_through_the_server_prints_what_a_local_retry_prints(
    live: LiveServer, demo_run: str, tmp_path: Path
) -> None:
    folder = live.folder
    procs = Processes()
    try:
        (folder / "fixed").write_text("yes")
        sched = live_server.scheduler(procs, live, folder)
        r = remote(live, "retry", demo_run, "--json", role="operator")
        assert r.exit_code == 0, r.output
        shown = local(live, "runs", "show", demo_run, "--json")
        assert json.loads(r.stdout) == json.loads(shown.stdout)
        assert json.loads(r.stdout)["state"] == "success"
        viewer = remote(live, "retry", demo_run, role="viewer")
        assert viewer.exit_code == 2 and "operator role" in viewer.stderr
        procs.stop(sched)
    finally:
        (folder / "fixed").unlink(missing_ok=True)
        procs.close()


def test_a_live_log_tail_follows_a_running_attempt(live: LiveServer) -> None:
    folder = live.folder
    procs = Processes()
    try:
        driver = procs.start(
            [sys.executable, "-m", "phloem", "run", f"{folder / 'flows.py'}:talk"],
            env={**live.env, "PYTHONPATH": str(Path(__file__).parent.parent / "src")},
        )
        with live.client("viewer") as c:
            run_id = _wait_for(lambda: _running(c, "talk", "chatty"))
            got: list[bytes] = []
            for chunk in c.follow_log(run_id, "chatty"):
                got.append(chunk)
                if b"line 3" in b"".join(got):
                    (folder / "quiet").write_text("enough")
            text = b"".join(got).decode()
            assert text.startswith("line 0\n") and "line 3\n" in text
            assert text == b"".join(c.log(run_id, "chatty")).decode()
        assert driver.wait(60) == 0
    finally:
        (folder / "quiet").unlink(missing_ok=True)
        procs.close()


def test_cancel_stops_a_run_another_process_drives(live: LiveServer) -> None:
    folder = live.folder
    procs = Processes()
    try:
        driver = procs.start(
            [sys.executable, "-m", "phloem", "run", f"{folder / 'flows.py'}:slow"],
            env={**live.env, "PYTHONPATH": str(Path(__file__).parent.parent / "src")},
        )
        with live.client("operator") as c:
            run_id = _wait_for(lambda: _running(c, "slow", "sleepy"))
            with pytest.raises(RunBusy, match="cancel it first"):
                c.retry(run_id)
            out = c.cancel(run_id, "not needed")
            assert out.cancelled == 1 and out.run.state.value == "failed"
            assert driver.wait(60) == 1  # its attempt stopped, the run failed
            ti = c.instance(run_id, "sleepy")
            assert ti.state.value == "failed"
            assert ti.error == "cancelled by operator: not needed"
            assert c.cancel(run_id).cancelled == 0  # ended already: nothing to do
            again = c.retry(run_id)  # resumable: queued for a scheduler, the task reset
            assert again.reset == 1 and again.run.state.value == "queued"
            c.cancel(run_id, "for good")
        ended = same(live, "cancel", run_id, role="operator")
        assert ended.stdout == f"run {run_id} had ended (failed); nothing to cancel\n"
    finally:
        procs.close()


def _running(c: Any, pipeline: str, task: str) -> str | None:
    for run in c.runs(pipeline=pipeline, states=["running"]).items:
        if c.instance(run.run_id, task).state.value == "running":
            return str(run.run_id)
    return None


def _wait_for(probe: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")
