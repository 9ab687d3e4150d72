"""Inspecting runs: code version and attempts in `runs show`, outputs as JSON, data frame
previews, and running a day again with --rerun."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import phloem
from phloem.cli.main import app

runner = CliRunner()

PIPELINE = '''
import numpy as np
import pandas as pd
from phloem import pipeline, task

@task
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"id": range(1000), "score": [i / 10 for i in range(1000)], "region": ["eu"] * 1000}
    )

@task
def array() -> object:
    return np.zeros((3, 4), dtype="float32")

@task
def small() -> dict:
    return {"rows": 1000}

@task(retries=1)
def flaky(marker: str) -> str:
    from pathlib import Path
    p = Path(marker)
    if not p.exists():
        p.write_text("tried")
        raise RuntimeError("first try fails")
    return "ok"

@pipeline
def inspect_me(marker: str = ""):
    frame()
    array()
    small()
    flaky(marker)
'''


def cli(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def finished(home: Path, tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "inspect_me.py"
    path.write_text(textwrap.dedent(PIPELINE))
    result = cli(
        "run", path, "--executor", "inline", "--json", "-p", f"marker={tmp_path / 'marker'}"
    )
    assert result.exit_code == 0, result.output
    return str(path), json.loads(result.stdout)["run_id"]


def test_runs_show_json_has_the_code_version_and_every_attempt(
    finished: tuple[str, str],
) -> None:
    path, run_id = finished
    shown = cli("runs", "show", run_id, "--json")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)
    assert record["code_version"] == phloem.run.__globals__["load_pipeline"](path).spec.code_hash
    tasks = {t["task_id"]: t for t in record["tasks"]}
    tries = tasks["flaky"]["attempts"]
    assert [(a["try"], a["state"]) for a in tries] == [(1, "up_for_retry"), (2, "success")]
    assert "first try fails" in tries[0]["error"]
    assert all(a["started_at"] and a["ended_at"] for a in tries)
    assert [a["try"] for a in tasks["small"]["attempts"]] == [1]
    text = cli("runs", "show", run_id)
    assert "code version" in text.output and record["code_version"] in text.output


def test_output_json_is_always_json(finished: tuple[str, str]) -> None:
    _, run_id = finished
    small = cli("output", run_id, "small", "--json")
    assert json.loads(small.stdout) == {"rows": 1000}
    frame = json.loads(cli("output", run_id, "frame", "--json").stdout)
    assert frame["artifact"] == "pandas.DataFrame" or frame["artifact"].endswith("DataFrame")
    assert frame["present"] is True
    assert frame["shape"] == [1000, 3]
    schema = frame["schema"]
    assert (schema["id"], schema["score"]) == ("int64", "double")
    assert schema["region"] in ("string", "large_string")  # as the pandas version writes it
    assert frame["head"][:2] == [
        {"id": 0, "score": 0.0, "region": "eu"},
        {"id": 1, "score": 0.1, "region": "eu"},
    ]
    assert len(frame["head"]) == 5
    array = json.loads(cli("output", run_id, "array", "--json").stdout)
    assert (array["shape"], array["dtype"]) == ([3, 4], "float32")


def test_output_of_a_frame_shows_shape_schema_and_first_rows(finished: tuple[str, str]) -> None:
    _, run_id = finished
    shown = cli("output", run_id, "frame")
    assert shown.exit_code == 0, shown.output
    assert "1000 x 3" in shown.output
    for word in ("id", "score", "region", "double", "first 5 rows", "0.4"):
        assert word in shown.output


def test_a_day_that_ran_is_offered_rerun_and_rerun_runs_it_again(
    home: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    path = tmp_path / "daily.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from phloem import pipeline, task

            @task
            def count() -> int:
                p = Path({str(counter)!r})
                n = int(p.read_text()) + 1 if p.exists() else 1
                p.write_text(str(n))
                return n

            @pipeline
            def daily():
                count()
            """
        )
    )
    base = ["run", str(path), "--logical-date", "2026-03-01", "--executor", "inline"]
    first = cli(*base, "--json")
    assert first.exit_code == 0, first.output
    run_id = json.loads(first.stdout)["run_id"]
    again = cli(*base)
    assert again.exit_code == 2
    assert "--rerun" in again.output and f"phloem retry {run_id}" in again.output
    assert "Traceback" not in again.output
    rerun = cli(*base, "--rerun", "--json")
    assert rerun.exit_code == 0, rerun.output
    record = json.loads(rerun.stdout)
    assert record["run_id"] == run_id  # the same run, not a duplicate
    assert counter.read_text() == "2"
    changed = cli(*base, "--rerun", "-p", "x=1")
    assert changed.exit_code == 2
    assert "no parameter 'x'" in changed.output
