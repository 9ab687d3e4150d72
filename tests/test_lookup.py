"""Commands that name a pipeline read the pipelines folder when no scheduler has yet."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.main import app

runner = CliRunner()

DAILY = """
from phloem import pipeline, task

@task
def hello(n: int) -> int:
    return n

@pipeline(schedule="@daily", start_date="2026-01-01", owner="ml-platform", tags=["nightly"])
def daily(n: int = 1):
    hello(n)
"""


@pytest.fixture
def folder(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "daily.py").write_text(textwrap.dedent(DAILY))
    (pipelines / "broken.py").write_text("raise ImportError('no such module: warehouse')\n")
    monkeypatch.setenv("PHLOEM_PIPELINES", str(pipelines))
    return pipelines


def cli(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


def test_pipelines_list_reads_the_folder(folder: Path) -> None:
    listed = cli("pipelines", "list", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert [p["name"] for p in data["pipelines"]] == ["daily"]
    (daily,) = data["pipelines"]
    assert (daily["owner"], daily["tags"]) == ("ml-platform", ["nightly"])
    text = cli("pipelines", "list")
    assert "[owner: ml-platform, nightly]" in text.output
    assert "no such module: warehouse" in data["import_errors"][str(folder / "broken.py")]


def test_backfill_and_trigger_before_any_scheduler(folder: Path) -> None:
    planned = cli(
        "backfill", "daily", "--start", "2026-01-01", "--end", "2026-01-02", "--dry-run"
    )
    assert planned.exit_code == 0, planned.output
    assert "2 interval(s)" in planned.output
    made = cli("trigger", "daily", "-p", "n=3", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["params"] == {"n": 3}
    paused = cli("pipelines", "pause", "daily")
    assert paused.exit_code == 0 and "paused daily" in paused.output


def test_file_and_pipeline_are_accepted_as_phloem_run_takes_them(
    home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "elsewhere.py"
    path.write_text(textwrap.dedent(DAILY))
    made = cli("trigger", f"{path}:daily", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["pipeline"] == "daily"
    only = cli("trigger", str(path), "--key", "k1")
    assert only.exit_code == 0, only.output
    wrong = cli("trigger", f"{path}:weekly")
    assert wrong.exit_code == 2
    assert "defines no pipeline 'weekly' (it defines: daily)" in wrong.output


def test_an_unknown_name_says_which_folder_was_read(folder: Path) -> None:
    result = cli("trigger", "dayly")
    assert result.exit_code == 2
    assert "dayly" in result.output and str(folder) in result.output
    assert "broken.py" in result.output  # a file that could not be read may hold it
    assert "Traceback" not in result.output
