"""Inputs and environments phloem cannot use end in one ``error:`` line and exit 2, never a
traceback: deep parameters, arguments that are not UTF-8, bad database URLs, a read-only
home, and pipeline files whose parser process dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.app import Phloem
from phloem.cli.main import app
from phloem.scheduler import Scheduler, SchedulerConfig

runner = CliRunner()

PIPELINE = textwrap.dedent(
    """
    from phloem import pipeline, task

    @task
    def show(x: list) -> int:
        return len(x)

    @pipeline
    def nested(x: list = [], d: dict = {}):
        show(x)
    """
)


def one_error(result: object, *needles: str) -> str:
    """The command failed with exit 2 and exactly one ``error:`` line holding ``needles``."""
    code, err = result.exit_code, result.stderr  # type: ignore[attr-defined]
    assert code == 2, (code, result.output, result.exception)  # type: ignore[attr-defined]
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "depth"),
    [("x", 101), ("x", 50_000), ("d", 5_000)],
)
def test_a_deeply_nested_json_param(home: Path, tmp_path: Path, param: str, depth: int) -> None:
    path = tmp_path / "nested.py"
    path.write_text(PIPELINE)
    nested = {"x": "[" * depth + "]" * depth, "d": '{"a": ' * depth + "1" + "}" * depth}
    value = nested[param]
    result = runner.invoke(app, ["run", str(path), "--param", f"{param}={value}"])
    one_error(result, f"parameter '{param}'", "nested more than 100 levels")


def test_a_param_just_within_the_depth_limit_runs(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "nested.py"
    path.write_text(PIPELINE)
    value = "[" * 100 + "]" * 100
    result = runner.invoke(app, ["run", str(path), "--param", f"x={value}", "--executor", "inline"])
    assert result.exit_code == 0, result.output


# -- arguments that are not UTF-8 ----------------------------------------------------------------


def test_a_run_id_that_is_not_utf8(home: Path) -> None:
    # what Python makes of the bytes b"\xff\xfe" on a command line (surrogateescape)
    arg = b"\xff\xfe".decode("utf-8", "surrogateescape")
    for args in (["runs", "show", arg], ["logs", arg, "t"], ["output", "ab" + arg, "t"]):
        line = one_error(runner.invoke(app, args), "not valid UTF-8")
        assert "\\xff" in line


def test_a_run_id_that_is_not_utf8_from_a_real_command_line(home: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "phloem", "runs", "show", b"\xff\xfe"],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(b"error: ") and b"not valid UTF-8" in out.stderr
    assert b"Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1


# -- database URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        ("postgresql+psycopg://u:secret@127.0.0.1:abc/x", ["port is not a number", "u:***@"]),
        ("postgresql+psycopg://u:secret@127.0.0.1:99999/x", ["99999", "PHLOEM_DB_URL"]),
        # a password holding the characters that end a URL's parts
        ("postgresql+psycopg://u:se/cret@127.0.0.1:abc/x", ["port is not a number", "u:***@"]),
        ("postgresql+psycopg://u:se@cret@127.0.0.1:1/x", ["u:***@127.0.0.1:1/x"]),
        ("nosuchdriver://u@localhost/x", ["no database driver 'nosuchdriver'"]),
        ("postgresql+nosuch://u@localhost/x", ["no database driver 'postgresql+nosuch'"]),
        ("not a url", ["is not valid", "PHLOEM_DB_URL"]),
    ],
)
def test_a_malformed_db_url(
    home: Path, monkeypatch: pytest.MonkeyPatch, url: str, needles: list[str]
) -> None:
    monkeypatch.setenv("PHLOEM_DB_URL", url)
    for args in (["runs", "list"], ["variables", "set", "k", "1"], ["pools", "set", "p", "1"]):
        line = one_error(runner.invoke(app, args), *needles)
        assert "secret" not in line and "cret" not in line


# -- a read-only home ----------------------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nothing can be created in, root included (an immutable folder), or skip."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        made, undo = subprocess.CompletedProcess([], 0), ["chmod", "755", str(folder)]
    try:
        (folder / "probe").touch()
    except OSError:
        pass
    else:
        subprocess.run(undo, capture_output=True)
        pytest.skip(f"cannot make a read-only folder here ({made.stderr!r})")
    try:
        yield folder
    finally:
        subprocess.run(undo, capture_output=True, check=True)


def test_a_read_only_home(read_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHLOEM_HOME", str(read_only))
    monkeypatch.delenv("PHLOEM_DB_URL", raising=False)
    line = one_error(runner.invoke(app, ["runs", "list"]), str(read_only / "phloem.db"))
    assert "read-only" in line and "PHLOEM_HOME" in line
    # a home that cannot be created at all
    monkeypatch.setenv("PHLOEM_HOME", str(read_only / "sub"))
    one_error(runner.invoke(app, ["variables", "list"]), str(read_only / "sub"), "PHLOEM_HOME")


# -- a parser process that dies ------------------------------------------------------------------

DIES = {
    "exits.py": "import os\nos._exit(3)\n",
    "killed.py": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "exits_zero.py": "import os\nos._exit(0)\n",
}


def test_a_parser_that_dies_is_reported_with_how_it_died(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name, text in DIES.items():
        (folder / name).write_text(text)
    ph = Phloem.open()
    cfg = SchedulerConfig(folder=folder, tick=0.05, parse_interval=0.2, parse_timeout=30.0)
    sched = Scheduler(ph, cfg)
    sched.start()
    try:
        sched.refresh(0.0)
    finally:
        sched.shutdown()
        ph.close()
    result = runner.invoke(app, ["pipelines", "list", "--json"])
    assert result.exit_code == 0, result.output
    errors = json.loads(result.stdout)["import_errors"]
    assert "exited with code 3" in errors[str(folder / "exits.py")]
    assert "killed by SIGKILL" in errors[str(folder / "killed.py")]
    assert "exited with code 0" in errors[str(folder / "exits_zero.py")]
    assert not any("None" in e for e in errors.values()), errors
