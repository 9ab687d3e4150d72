"""The ``phloem`` command: every command, its exit status, its JSON, and its error paths.

Most tests call the Typer app in-process (fast); a few run the installed console script.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from phloem.cli.main import app
from processes import Processes

runner = CliRunner()

BASIC = """
from phloem import pipeline, task

@task
def load(n: int) -> list:
    print("loading", n)
    return list(range(n))

@task
def total(xs: list) -> int:
    return sum(xs)

@task
def report(t: int) -> dict:
    return {"total": t}

@pipeline(schedule="@daily")
def basic(n: int = 3):
    report(total(load(n)))
"""

FLAKY = """
from pathlib import Path
from phloem import pipeline, task

@task
def first() -> int:
    return 1

@task
def gate(x: int, flag: str) -> int:
    if not Path(flag).exists():
        raise ValueError("flag is not set\\nsee the log")
    return x + 1

@task
def last(x: int) -> int:
    return x * 10

@pipeline
def flaky(flag: str = ""):
    last(gate(first(), flag))
"""

MAPPED = """
from phloem import pipeline, task

@task
def items(n: int) -> list:
    return list(range(n))

@task
def square(x: int) -> int:
    if x == 7:
        raise RuntimeError("seven is unlucky")
    return x * x

@task
def add(xs: list) -> int:
    return sum(xs)

@pipeline
def mapped(n: int = 5):
    add(square.expand(x=items(n)))
"""

TWO = """
from phloem import pipeline, task

@task
def one() -> int:
    return 1

@pipeline
def alpha():
    one()

@pipeline
def beta():
    one()
"""

CYCLIC = """
from phloem import pipeline, task

@task
def one() -> int:
    return 1

@task
def two(x: int) -> int:
    return x

@pipeline
def loop():
    a = one()
    b = two(a)
    b >> a
"""

ARTIFACT = """
from phloem import pipeline, task

@task
def blob() -> set:
    return {1, 2, 3}

@pipeline
def artifact():
    blob()
"""


def write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def cli(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args: str, code: int = 0) -> dict:
    result = cli("run", *args, "--executor", "inline", "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def states(record: dict) -> dict[str, str]:
    return {
        t["task_id"] + ("" if t["map_index"] is None else f"[{t['map_index']}]"): t["state"]
        for t in record["tasks"]
    }


def tries(record: dict) -> dict[str, int]:
    return {t["task_id"]: t["try_number"] for t in record["tasks"] if t["map_index"] is None}


# -- startup -------------------------------------------------------------------------------------


def test_help_does_not_load_the_store() -> None:
    """``phloem --help`` loads no store or API (how long it takes: benchmarks/imports.py)."""
    code = (
        "import sys\n"
        "from phloem.cli.main import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print('typer' in sys.modules, 'sqlalchemy' in sys.modules, 'phloem.api' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-3:] == ["True", "False", "False"]


def test_one_command_builds_only_that_command() -> None:
    """The console script builds the click command of the one command it runs (typer builds
    every registered one otherwise); its help is the same, and anything else gets the app."""
    from phloem.cli.main import for_argv

    for args in (["run", "--help"], ["runs", "--help"], ["runs", "list", "--help"]):
        lean = for_argv(args)
        assert lean is not app
        assert len(lean.registered_commands) + len(lean.registered_groups) == 1
        assert runner.invoke(lean, args).stdout == runner.invoke(app, args).stdout
    for args in ([], ["--help"], ["--version"], ["nosuch"]):
        assert for_argv(args) is app


def test_version(home: Path) -> None:
    import phloem

    for args in (["version"], ["--version"]):
        result = cli(*args)
        assert result.exit_code == 0
        assert result.stdout.strip() == f"phloem {phloem.__version__}"


# -- run -----------------------------------------------------------------------------------------


def test_run_prints_progress_and_summary(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "basic.py", BASIC)
    result = cli("run", path, "--param", "n=4", "--executor", "inline")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "of basic: 3 tasks" in out
    for task in ("load", "total", "report"):
        assert f"success    {task}" in out
    assert "task" in out and "tries" in out and "duration" in out
    assert "success in" in out
    assert result.stderr == ""


def test_progress_lines_follow_only_what_changed(home: Path, tmp_path: Path) -> None:
    """The line reporter is told which tasks each decision changed and looks at those only;
    a reporter whose ``update`` takes ``(snap, now)`` still works, and both print the same."""
    import phloem
    from phloem.cli.progress import LineReporter

    told: list[object] = []

    class Lines(LineReporter):
        def update(self, snap: Any, now: float, changed: Any = None) -> None:
            told.append(changed)
            super().update(snap, now, changed)

    class Whole:  # an older reporter: every turn looks at every task
        def __init__(self) -> None:
            self.inner = LineReporter(lines_b.append)

        def update(self, snap: Any, now: float) -> None:
            self.inner.update(snap, now)

        def finish(self, snap: Any, now: float) -> None:
            self.inner.finish(snap, now)

    lines_a: list[str] = []
    lines_b: list[str] = []
    path = write(tmp_path, "mapped.py", MAPPED)
    for day, reporter in (("2026-01-01", Lines(lines_a.append)), ("2026-01-02", Whole())):
        result = phloem.run(
            path, params={"n": 9}, executor="inline", reporter=reporter, logical_date=day
        )
        assert not result.succeeded
    assert any(isinstance(c, set) for c in told)  # told what changed, not only None

    def same(lines: list[str]) -> list[str]:  # without run ids and durations
        return [re.sub(r"\(\d+\.\d+s\)", "", x) for x in lines if not x.startswith("run ")]

    assert same(lines_a) == same(lines_b)
    assert any("square[7]: RuntimeError: seven is unlucky" in line for line in lines_a)


def test_run_json_shape(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "basic.py", BASIC)
    rec = run_json(path, "--param", "n=4", "--logical-date", "2026-01-31")
    assert set(rec) == {
        "run_id",
        "pipeline",
        "state",
        "logical_date",
        "params",
        "started_at",
        "ended_at",
        "code_version",
        "run_type",
        "triggered_by",
        "tasks",
    }
    assert rec["pipeline"] == "basic" and rec["state"] == "success"
    assert rec["params"] == {"n": 4}  # coerced to the declared int
    assert rec["logical_date"].startswith("2026-01-31T00:00:00")
    assert [t["task_id"] for t in rec["tasks"]] == ["load", "total", "report"]  # topological
    for t in rec["tasks"]:
        assert set(t) == {
            "task_id",
            "map_index",
            "state",
            "try_number",
            "started_at",
            "ended_at",
            "duration_s",
            "error",
            "attempts",
        }
        assert t["map_index"] is None and t["error"] is None and t["try_number"] == 1
        assert [(a["try"], a["state"]) for a in t["attempts"]] == [(1, "success")]
        start, end = datetime.fromisoformat(t["started_at"]), datetime.fromisoformat(t["ended_at"])
        assert start.utcoffset().total_seconds() == 0 and end >= start
        assert t["duration_s"] >= 0
    for key in ("started_at", "ended_at"):
        assert datetime.fromisoformat(rec[key]).utcoffset().total_seconds() == 0


def test_run_by_pipeline_name_and_several_pipelines(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", TWO)
    result = cli("run", path, "--executor", "inline")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "alpha, beta" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert run_json(f"{path}:beta")["pipeline"] == "beta"
    result = cli("run", f"{path}:gamma")
    assert result.exit_code == 2 and "gamma" in result.stderr and "alpha, beta" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--param", "n=many"], "must be int"),
        (["--param", "m=1"], "no parameter 'm'"),
        (["--param", "n"], "KEY=VALUE"),
        (["--logical-date", "yesterday"], "ISO 8601"),
    ],
)
def test_run_bad_arguments_exit_2(
    home: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    path = write(tmp_path, "basic.py", BASIC)
    result = cli("run", path, *args, "--executor", "inline")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert "Traceback" not in result.output


def test_run_definition_errors_exit_2(home: Path, tmp_path: Path) -> None:
    result = cli("run", write(tmp_path, "loop.py", CYCLIC))
    assert result.exit_code == 2
    assert "cycle" in result.stderr and "loop.py:" in result.stderr
    result = cli("run", str(tmp_path / "missing.py"))
    assert result.exit_code == 2 and "no such pipeline file" in result.stderr
    result = cli("run", write(tmp_path, "broken.py", "import nothing_here_at_all\n"))
    assert result.exit_code == 2 and "ModuleNotFoundError" in result.stderr


def test_run_twice_for_one_logical_date_is_refused(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "basic.py", BASIC)
    first = run_json(path, "--logical-date", "2026-02-01T00:00:00+00:00")
    result = cli("run", path, "--logical-date", "2026-02-01", "--executor", "inline")
    assert result.exit_code == 2
    assert "already has a run" in result.stderr and first["run_id"] in result.stderr


def test_run_usage_errors_exit_2(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "basic.py", BASIC)
    assert cli("run", path, "--executor", "nope").exit_code == 2
    assert cli("run", path, "--workers", "0").exit_code == 2
    assert cli("run").exit_code == 2


def test_failed_run_exits_1_with_the_error(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "flaky.py", FLAKY)
    result = cli("run", path, "-p", f"flag={tmp_path / 'flag'}", "--executor", "inline")
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "failed     gate: ValueError: flag is not set" in out
    assert "upstream_failed last" in out
    assert "phloem retry " in out
    rec = json.loads(cli("runs", "list", "--json").stdout)[0]
    assert rec["state"] == "failed"


def test_mapped_run_is_summarized_not_listed(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "mapped.py", MAPPED)
    result = cli("run", path, "-p", "n=300", "--executor", "inline")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) < 30, result.stdout
    assert "mapped     square: 300 instances" in result.stdout
    assert "failed     square[7]: RuntimeError: seven is unlucky" in result.stdout
    row = next(ln for ln in lines if ln.startswith("square (x300)"))
    assert "1 failed, 299 success" in row and "300" in row
    rec = json.loads(
        cli(
            "runs", "show", json.loads(cli("runs", "list", "--json").stdout)[0]["run_id"], "--json"
        ).stdout
    )
    squares = [t for t in rec["tasks"] if t["task_id"] == "square"]
    assert [t["map_index"] for t in squares] == list(range(300))
    assert squares[7]["error"] == "RuntimeError: seven is unlucky"


# -- runs ----------------------------------------------------------------------------------------


def test_runs_list_and_show(home: Path, tmp_path: Path) -> None:
    assert cli("runs", "list").stdout.strip() == "no runs"
    assert json.loads(cli("runs", "list", "--json").stdout) == []
    basic = write(tmp_path, "basic.py", BASIC)
    two = write(tmp_path, "two.py", TWO)
    first = run_json(basic)
    second = run_json(f"{two}:alpha")
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert all("tasks" not in r for r in listed)
    assert {k: listed[1][k] for k in listed[1]} == {k: v for k, v in first.items() if k != "tasks"}
    only = json.loads(cli("runs", "list", "--pipeline", "basic", "--json").stdout)
    assert [r["run_id"] for r in only] == [first["run_id"]]
    assert len(json.loads(cli("runs", "list", "--limit", "1", "--json").stdout)) == 1

    human = cli("runs", "list")
    assert human.exit_code == 0
    assert first["run_id"] in human.stdout and "alpha" in human.stdout

    shown = cli("runs", "show", first["run_id"], "--json")
    assert json.loads(shown.stdout) == first
    prefix = cli("runs", "show", first["run_id"][:-2], "--json")  # a unique prefix will do
    assert json.loads(prefix.stdout)["run_id"] == first["run_id"]
    human = cli("runs", "show", first["run_id"])
    assert human.exit_code == 0
    for text in (first["run_id"], "basic", "success", "load", "report", "basic.py:basic"):
        assert text in human.stdout


def test_runs_show_orders_by_task_id_when_the_code_is_gone(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "gone.py", BASIC.replace("def basic", "def gone"))
    rec = run_json(path)
    os.remove(path)
    shown = json.loads(cli("runs", "show", rec["run_id"], "--json").stdout)
    assert [t["task_id"] for t in shown["tasks"]] == ["load", "report", "total"]


def test_unknown_run_id(home: Path) -> None:
    for args in (
        ["runs", "show", "nope"],
        ["logs", "nope", "t"],
        ["output", "nope", "t"],
        ["retry", "nope"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("error: no run 'nope'"), result.stderr
        assert "Traceback" not in result.output


# -- logs and output -----------------------------------------------------------------------------


def test_logs(home: Path, tmp_path: Path) -> None:
    rid = run_json(write(tmp_path, "basic.py", BASIC), "-p", "n=2")["run_id"]
    result = cli("logs", rid, "load")
    assert result.exit_code == 0 and result.stdout == "loading 2\n"
    assert cli("logs", rid, "load", "--try", "1").stdout == "loading 2\n"
    silent = cli("logs", rid, "total")
    assert silent.exit_code == 0 and silent.stdout == ""
    assert "wrote no log output" in silent.stderr
    unknown = cli("logs", rid, "lod")
    assert unknown.exit_code == 2
    assert "no task 'lod'" in unknown.stderr and "load, report, total" in unknown.stderr
    beyond = cli("logs", rid, "load", "--try", "2")
    assert beyond.exit_code == 2 and "no try 2" in beyond.stderr
    not_mapped = cli("logs", rid, "load", "--map-index", "0")
    assert not_mapped.exit_code == 2 and "not mapped" in not_mapped.stderr


def test_logs_of_retries_and_mapped_instances(home: Path, tmp_path: Path) -> None:
    path = write(
        tmp_path, "mapped.py", MAPPED.replace("@task\ndef square", "@task(retries=1)\ndef square")
    )
    rec = run_json(path, "-p", "n=9", code=1)
    rid = rec["run_id"]
    no_index = cli("logs", rid, "square")
    assert (
        no_index.exit_code == 2 and "--map-index" in no_index.stderr and "0..8" in no_index.stderr
    )
    latest = cli("logs", rid, "square", "--map-index", "7")
    assert latest.exit_code == 0 and "RuntimeError: seven is unlucky" in latest.stdout
    first = cli("logs", rid, "square", "-i", "7", "--try", "1")
    assert first.exit_code == 0 and "seven is unlucky" in first.stdout
    missing = cli("logs", rid, "square", "-i", "9")
    assert missing.exit_code == 2 and "no instance 9" in missing.stderr
    never = cli("logs", rid, "add")
    assert never.exit_code == 2 and "has not started" in never.stderr


def test_output(home: Path, tmp_path: Path) -> None:
    rid = run_json(write(tmp_path, "basic.py", BASIC), "-p", "n=3")["run_id"]
    result = cli("output", rid, "report")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"total": 3}
    assert json.loads(cli("output", rid, "load").stdout) == [0, 1, 2]
    unknown = cli("output", rid, "nothing")
    assert unknown.exit_code == 2 and "load, report, total" in unknown.stderr

    rid = run_json(write(tmp_path, "mapped.py", MAPPED), "-p", "n=9", code=1)["run_id"]
    assert json.loads(cli("output", rid, "square", "--map-index", "3").stdout) == 9
    failed = cli("output", rid, "square", "-i", "7")
    assert failed.exit_code == 2 and "it is failed" in failed.stderr
    upstream = cli("output", rid, "add")
    assert upstream.exit_code == 2 and "it is upstream_failed" in upstream.stderr
    assert cli("output", rid, "square").exit_code == 2


def test_output_of_an_artifact(home: Path, tmp_path: Path) -> None:
    rid = run_json(write(tmp_path, "artifact.py", ARTIFACT))["run_id"]
    result = cli("output", rid, "blob")
    assert result.exit_code == 0, result.output
    fields = dict(
        (k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in result.stdout.splitlines())
    )
    assert fields["artifact"] == "set"
    assert fields["serializer"] and fields["size"].endswith(" bytes")
    digest = fields["digest"].removeprefix("sha256:")
    assert len(digest) == 64
    location = Path(fields["location"])
    assert location.is_file() and digest in location.name
    assert str(home) in str(location)


# -- retry ---------------------------------------------------------------------------------------


def test_retry_after_a_fix_reruns_only_what_failed(home: Path, tmp_path: Path) -> None:
    from phloem.store import SqlStore

    path = write(tmp_path, "flaky.py", FLAKY)
    flag = tmp_path / "flag"
    failed = run_json(path, "-p", f"flag={flag}", code=1)
    rid = failed["run_id"]
    assert states(failed) == {"first": "success", "gate": "failed", "last": "upstream_failed"}

    flag.touch()
    result = cli("retry", rid, "--executor", "inline", "--json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["run_id"] == rid and done["state"] == "success"
    assert set(states(done).values()) == {"success"}
    assert tries(done) == {"first": 1, "gate": 2, "last": 1}

    store = SqlStore(f"sqlite:///{home / 'phloem.db'}")
    attempts = store.attempts(rid)
    events = store.events(rid)
    again = cli("retry", rid[:12], "--executor", "inline", "--json")
    assert again.exit_code == 0
    assert tries(json.loads(again.stdout)) == {"first": 1, "gate": 2, "last": 1}
    assert store.attempts(rid) == attempts and store.events(rid) == events
    assert len(json.loads(cli("runs", "list", "--json").stdout)) == 1
    assert json.loads(cli("output", rid, "last").stdout) == 20
    store.close()


def test_retry_a_task_and_its_downstream(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "basic.py", BASIC)
    rid = run_json(path)["run_id"]
    result = cli("retry", rid, "--task", "total", "--downstream", "--executor", "inline")
    assert result.exit_code == 0, result.output
    assert "success    total" in result.stdout and "success    report" in result.stdout
    assert "success    load" not in result.stdout
    rec = json.loads(cli("runs", "show", rid, "--json").stdout)
    assert tries(rec) == {"load": 1, "total": 2, "report": 2}
    one = cli("retry", rid, "--task", "load", "--executor", "inline", "--json")
    assert tries(json.loads(one.stdout)) == {"load": 2, "total": 2, "report": 2}


def test_retry_usage_errors(home: Path, tmp_path: Path) -> None:
    rid = run_json(write(tmp_path, "basic.py", BASIC))["run_id"]
    result = cli("retry", rid, "--downstream")
    assert result.exit_code == 2 and "--downstream needs --task" in result.stderr
    result = cli("retry", rid, "--task", "totl", "--executor", "inline")
    assert result.exit_code == 2 and "totl" in result.stderr and "Traceback" not in result.output


# -- validate and db -----------------------------------------------------------------------------


def test_validate(home: Path, tmp_path: Path) -> None:
    basic, two = write(tmp_path, "basic.py", BASIC), write(tmp_path, "two.py", TWO)
    result = cli("validate", basic, two)
    assert result.exit_code == 0, result.output
    rows = {ln.split()[1]: ln.split()[2:] for ln in result.stdout.splitlines()[1:]}
    assert rows == {"basic": ["3", "@daily"], "alpha": ["1", "-"], "beta": ["1", "-"]}
    assert not (home / "phloem.db").exists()  # validating runs nothing and stores nothing

    cyclic = write(tmp_path, "loop.py", CYCLIC)
    result = cli("validate", basic, cyclic)
    assert result.exit_code == 2
    assert "cycle" in result.stderr and "loop.py:" in result.stderr
    assert "basic" in result.stdout  # the good file is still listed

    empty = write(tmp_path, "empty.py", "x = 1\n")
    result = cli("validate", empty)
    assert result.exit_code == 2 and "defines no pipeline" in result.stderr
    assert cli("validate", f"{two}:beta").exit_code == 0
    assert cli("validate").exit_code == 2


def test_db_upgrade(home: Path) -> None:
    from phloem.store.migrate import HEAD

    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"revision {HEAD}" in result.stdout and "was empty" in result.stdout
    assert (home / "phloem.db").exists()
    again = cli("db", "upgrade")
    assert again.exit_code == 0 and "unchanged" in again.stdout


@pytest.mark.postgres
def test_db_upgrade_and_runs_on_postgres(
    home: Path, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phloem.store.migrate import HEAD

    monkeypatch.setenv("PHLOEM_DB_URL", pg_url)
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"revision {HEAD}" in result.stdout and "postgresql" in result.stdout
    rid = run_json(write(tmp_path, "basic.py", BASIC))["run_id"]
    assert [r["run_id"] for r in json.loads(cli("runs", "list", "--json").stdout)] == [rid]
    assert not (home / "phloem.db").exists()


# -- progress on a terminal ----------------------------------------------------------------------


def test_live_reporter_renders(home: Path, tmp_path: Path) -> None:
    from rich.console import Console

    import phloem
    from phloem.cli.progress import LiveReporter

    buf = io.StringIO()
    reporter = LiveReporter(Console(file=buf, force_terminal=True, width=100))
    path = write(tmp_path, "mapped.py", MAPPED)
    with reporter:
        result = phloem.run(path, params={"n": 9}, executor="inline", reporter=reporter)
    assert not result.succeeded
    shown = io.StringIO()
    Console(file=shown, width=100).print(reporter)
    text = shown.getvalue()
    assert "mapped" in text and "11/11 done" in text and "1 failed" in text
    assert "failed     square[7]: RuntimeError: seven is unlucky" in buf.getvalue()


# -- the installed command -----------------------------------------------------------------------


def _phloem() -> str:
    exe = Path(sys.executable).with_name("phloem")
    return str(exe) if exe.exists() else (shutil.which("phloem") or "phloem")


def test_console_script_exit_codes_and_json(home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PHLOEM_HOME": str(home)}
    flaky = write(tmp_path, "flaky.py", FLAKY)
    flag = tmp_path / "flag"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_phloem(), *args], env=env, capture_output=True, text=True, timeout=120
        )

    failed = run("run", flaky, "--param", f"flag={flag}", "--workers", "2", "--json")
    assert failed.returncode == 1, failed.stderr
    rec = json.loads(failed.stdout)
    assert rec["state"] == "failed" and states(rec)["gate"] == "failed"
    assert rec["tasks"][1]["error"].startswith("ValueError: flag is not set")

    flag.touch()
    ok = run("run", flaky, "--param", f"flag={flag}", "--workers", "2", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["state"] == "success" and ok.stderr == ""

    bad = run("run", flaky, "--param", "nope=1", "--json")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "error: pipeline 'flaky' has no parameter 'nope' (its parameters: flag)"
    ]
    plain = run("run", flaky, "--param", f"flag={flag}", "--workers", "2")
    assert plain.returncode == 0 and "success    last" in plain.stdout


SLOW = """
import time
from pathlib import Path
from phloem import pipeline, task

@task
def first() -> int:
    return 1

@task
def wait(x: int, gate: str) -> int:
    while not Path(gate).exists():
        time.sleep(0.02)
    return x + 1

@pipeline
def slow(gate: str = ""):
    wait(first(), gate)
"""


def test_ctrl_c_leaves_the_run_resumable(home: Path, tmp_path: Path, processes: Processes) -> None:
    env = {**os.environ, "PHLOEM_HOME": str(home)}
    path = write(tmp_path, "slow.py", SLOW)
    gate = tmp_path / "gate"
    proc = processes.start(
        [_phloem(), "run", path, "-p", f"gate={gate}", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # plain progress lines: wait until the slow task runs
        if line.startswith("started    wait") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rid = err.split("interrupted: run ", 1)[1].split()[0]
    assert f"can be resumed with phloem retry {rid}" in err and "Traceback" not in err

    gate.touch()
    resumed = subprocess.run(
        [_phloem(), "retry", rid, "--workers", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    rec = json.loads(resumed.stdout)
    assert rec["state"] == "success"
    assert tries(rec)["first"] == 1
