"""``phloem.outputs.latest``: a task reads another run's output, in worker processes, under
``phloem run``, with lineage recorded; and says clearly what exists when there is none."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.cli.main import app
from phloem.errors import OutputNotFound
from phloem.outputs import find_latest
from phloem.states import RunState
from phloem.store import open_store

DAILY = """
import pandas as pd
import phloem
from phloem import pipeline, task

@task
def stats(n: int) -> dict:
    return {"count": n, "rows": pd.DataFrame({"x": list(range(n))})}

@task
def previous() -> object:
    try:
        prev = phloem.outputs.latest("daily", "stats")
    except phloem.OutputNotFound:
        return None
    return prev["count"]

@task
def shards(n: int) -> list:
    return list(range(n))

@task
def double(x: int) -> int:
    return 2 * x

@pipeline
def daily(n: int = 1):
    s = stats(n)
    s >> previous()
    double.expand(x=shards(n))
"""

MONITOR = """
import phloem
from phloem import pipeline, task

@task
def compare(day: str = "") -> dict:
    today = phloem.outputs.latest("daily", "stats")
    before = phloem.outputs.latest("daily", "stats", logical_date="2026-03-01")
    doubled = phloem.outputs.latest("daily", "double")
    second = phloem.outputs.latest("daily", "double", map_index=1)
    return {"today": today["count"], "rows": len(today["rows"]),
            "before": before["count"], "doubled": doubled, "second": second}

@task
def missing(what: str) -> str:
    pipeline, task = what.split("/")
    try:
        phloem.outputs.latest(pipeline, task)
    except phloem.OutputNotFound as exc:
        return str(exc)
    return "found"

@pipeline
def monitor(what: str = "daily/nothere"):
    compare()
    missing(what)
"""

runner = CliRunner()


def cli_run(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["run", *args, "--json"])
    assert result.exit_code == 0, result.output
    rec: dict[str, Any] = json.loads(result.stdout)
    return rec


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    daily = tmp_path / "daily.py"
    daily.write_text(textwrap.dedent(DAILY))
    monitor = tmp_path / "monitor.py"
    monitor.write_text(textwrap.dedent(MONITOR))
    return str(daily), str(monitor)


def test_tasks_in_worker_processes_read_other_runs_outputs(
    home: Path, files: tuple[str, str]
) -> None:
    daily, monitor = files
    first = cli_run(daily, "--param", "n=2", "--logical-date", "2026-03-01",
                    "--executor", "local")  # fmt: skip
    second = cli_run(daily, "--param", "n=3", "--logical-date", "2026-03-02",
                     "--executor", "local")  # fmt: skip
    assert first["state"] == second["state"] == "success"
    store = Phloem.open().store
    # inside its own pipeline, "latest" is an earlier run, never the calling one
    out1 = store.get_instance(first["run_id"], "previous").output
    out2 = store.get_instance(second["run_id"], "previous").output
    assert json.loads(out1 or "0") is None and json.loads(out2 or "0") == 2

    mon = cli_run(monitor, "--logical-date", "2026-03-05", "--executor", "local")
    assert mon["state"] == "success", mon
    got = json.loads(store.get_instance(mon["run_id"], "compare").output or "{}")
    assert got == {"today": 3, "rows": 3, "before": 2, "doubled": [0, 2, 4], "second": 2}
    message = json.loads(store.get_instance(mon["run_id"], "missing").output or '""')
    assert "pipeline 'daily' has no task 'nothere'" in message
    assert "double, previous, shards, stats" in message

    # lineage: the frame read from the other run is an input of the reading task
    _, stats2 = find_latest(store, "daily", "stats", logical_date="2026-03-02")
    assert isinstance(stats2, str)
    frame_digest = json.loads(stats2)["items"][1]["digest"]
    inputs = {u.digest for u in store.artifact_uses(mon["run_id"])
              if u.task_id == "compare" and u.role == "input"}  # fmt: skip
    assert frame_digest in inputs
    producers = store.lineage.writers_of([frame_digest])
    assert [(u.run_id, u.task_id) for u in producers] == [(second["run_id"], "stats")]


@task
def boom() -> None:
    raise ValueError("no")


@task
def fine() -> int:
    return 1


@pipeline
def flaky() -> None:
    boom()
    fine()


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_no_output_says_what_exists(store_url: str, tmp_path: Path) -> None:
    r = phloem.run(flaky, executor="inline", store=store_url, home=tmp_path,
                   logical_date="2026-03-01")  # fmt: skip
    assert r.state is RunState.FAILED
    store = r.app.store
    with pytest.raises(OutputNotFound, match=r"pipeline 'nope' has no runs .*pipelines with runs: "
                       r"flaky"):  # fmt: skip
        find_latest(store, "nope", "fine")
    with pytest.raises(OutputNotFound, match=r"has no task 'fien': its latest run .* boom, fine"):
        find_latest(store, "flaky", "fien")
    with pytest.raises(OutputNotFound, match=r"has a successful task 'boom'; its latest runs: "
                       r".*\(2026-03-01.*\): failed"):  # fmt: skip
        find_latest(store, "flaky", "boom")
    with pytest.raises(OutputNotFound, match="for logical date 2026-03-02"):
        find_latest(store, "flaky", "fine", logical_date="2026-03-02")
    with pytest.raises(OutputNotFound, match=r"task 'fine' \[3\].*check the map index"):
        find_latest(store, "flaky", "fine", map_index=3)
    run, stored = find_latest(store, "flaky", "fine")
    assert run.run_id == r.run_id and stored == "1"


def test_outside_a_task_the_configured_store_is_read(home: Path, files: tuple[str, str]) -> None:
    daily, _ = files
    cli_run(daily, "--param", "n=4", "--executor", "inline")
    value = phloem.outputs.latest("daily", "stats")
    assert value["count"] == 4 and isinstance(value["rows"], pd.DataFrame)
    assert phloem.outputs.latest("daily", "double") == [0, 2, 4, 6]


@task
def reads_latest() -> Any:
    return phloem.outputs.latest("anything", "at_all")


@pipeline
def private() -> None:
    reads_latest()


def test_a_private_store_is_a_clear_error(tmp_path: Path) -> None:
    r = phloem.run(private, executor="inline", store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    error = r.app.store.get_instance(r.run_id, "reads_latest").error or ""
    assert "phloem.outputs needs a shared store" in error


def test_find_latest_on_a_fresh_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(OutputNotFound, match="the store has no runs"):
            find_latest(store, "daily", "stats")
    finally:
        store.close()
