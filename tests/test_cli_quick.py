"""``phloem run``'s quick path: plain arguments are parsed without typer and the run's end is
printed without rich where output is not a terminal; what it prints, and what typer hands the
command, are the same as on typer's path. How long it takes: benchmarks/run.py --only hello.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from phloem.cli import quick, run_cmd
from phloem.cli.main import for_argv
from phloem.cli.tables import plain_summary, plain_table, print_summary, summary_table
from phloem.cli.views import RUN_END_ROWS, Row, run_end_rows, summary_rows
from phloem.records import TI
from phloem.states import ExecutorKind, TaskState

#: modules a one-task ``phloem run`` on SQLite has no use for: the CLI framework and what it
#: validates with, the table printer (output is a pipe), migrations, the server, Ray, data
HEAVY = (
    "typer",
    "click",
    "pydantic",
    "rich",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "ray",
    "pandas",
    "numpy",
)

#: phloem's own modules such a run has no use for either: alerting beyond checking for rules,
#: the cache's keys and lookups (no task caches), breakers, the model registry, watermarks,
#: the rows the store's readers hand out (attempts, events, pipelines, lineage), and what the
#: server, scheduler, accounts and lineage use; they load when a run needs them
UNUSED = (
    "phloem.accounts",
    "phloem.alerting.messages",
    "phloem.alerting.sender",
    "phloem.alerting.transport",
    "phloem.alerting.watch",
    "phloem.breakers",
    "phloem.caching.fingerprint",
    "phloem.caching.hashing",
    "phloem.caching.keys",
    "phloem.caching.lookup",
    "phloem.caching.verify",
    "phloem.lineage",
    "phloem.models",
    "phloem.scheduler",
    "phloem.server",
    "phloem.store.accounts",
    "phloem.store.breakers",
    "phloem.store.deliveries",
    "phloem.store.lineage",
    "phloem.store.models",
    "phloem.store.read_types",
    "phloem.store.watermarks",
    "phloem.watermarks",
)

HELLO = """
from phloem import pipeline, task

@task
def say_hello() -> str:
    return "hello"

@task
def shout(s: str, fail: str) -> str:
    if fail:
        raise ValueError("asked to")
    return s.upper()

@pipeline
def hello(fail: str = ""):
    shout(say_hello(), fail)
"""

FAILS = """
from phloem import pipeline, task

@task
def boom() -> int:
    raise RuntimeError("[red]no[/] :smile: way")

@pipeline
def fails():
    boom()
"""

#: runs ``main()`` as the console script does; QUICK=0 sends every command to typer, and the
#: modules loaded by the end (in this process, not its workers) go to MODULES
SCRIPT = """
import json, os, sys
pid = os.getpid()
real_exit = os._exit

def leave(code):
    if os.getpid() == pid and os.environ.get("MODULES"):
        with open(os.environ["MODULES"], "w") as f:
            json.dump(sorted(sys.modules), f)
    real_exit(code)

os._exit = leave
from phloem.cli import main, quick
if os.environ.get("QUICK") == "0":
    quick.parse_run = lambda args: None
sys.argv = ["phloem", *sys.argv[1:]]
main.main()
"""


def write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def phloem(home: Path, *args: str, quick_path: bool = True, modules: Path | None = None) -> Any:
    env = {**os.environ, "PHLOEM_HOME": str(home), "QUICK": "1" if quick_path else "0"}
    for var in ("PHLOEM_DB_URL", "PHLOEM_ARTIFACTS_URL", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(var, None)
    if modules is not None:
        env["MODULES"] = str(modules)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=120
    )


def _same(text: str) -> str:
    """Output with what differs between two runs of one pipeline blanked: ids, times, costs,
    workers, and whether a task's start was seen before its end (they may share a message)."""
    text = re.sub(r"\d{8}T\d{6}-[0-9a-f]+", "RUN", text)
    text = re.sub(r"\d+(\.\d+)?(s|m\d\ds|h\d\dm)\b", "T", text)
    text = re.sub(r'": "?\d[^,\n]*', '": N', text)
    text = re.sub(r'"worker": "[^"]*"', '"worker": W', text)
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("started "))


def test_a_run_loads_no_heavy_module(home: Path, tmp_path: Path) -> None:
    """A plain ``phloem run`` imports neither typer (nor click, pydantic), nor rich when its
    output is a pipe, nor migrations, the server, Ray or data libraries, nor the parts of
    phloem only some runs need."""
    path = write(tmp_path, "hello.py", HELLO)
    listing = tmp_path / "modules.json"
    done = phloem(home, "run", path, "--workers", "1", modules=listing)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(listing.read_text()))
    assert "sqlalchemy" in loaded and "phloem.api" in loaded  # the check sees the run's imports
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"phloem run loads {heavy}; import them where they are first used"
    unused = sorted(m for m in loaded if any(m == u or m.startswith(u + ".") for u in UNUSED))
    assert unused == [], f"phloem run loads {unused}; import them where they are first used"


def test_the_readers_rows_are_still_found_where_they_were() -> None:
    """The rows moved to ``store.read_types`` (made when first asked for) keep their names in
    ``store.types``, ``store`` and ``store.catalog``."""
    from phloem import store
    from phloem.store import catalog, read_types, types

    for name in read_types.__all__:
        assert getattr(types, name) is getattr(read_types, name)
    assert store.AttemptRow is read_types.AttemptRow and store.EventRow is read_types.EventRow
    assert catalog.PipelineInfo is read_types.PipelineInfo
    assert catalog.PipelineRow is read_types.PipelineRow
    for module in (types, store, catalog):
        with pytest.raises(AttributeError):
            module.NoSuchRow  # noqa: B018


@pytest.mark.parametrize(
    "args",
    [
        ["run", "hello.py"],
        ["run", "hello.py:hello", "--json"],
        ["run", "hello.py", "--param", "fail=yes"],  # a task fails: rich lists it
        ["run", "hello.py", "-p", "nope=1"],  # a parameter it does not have
        ["run", "nosuch.py"],
        ["run", "fails.py", "-w", "1"],  # a failure to list: rich prints it
        ["run", "hello.py", "--no-cache", "--refresh-cache"],
        ["run", "hello.py", "--workers", "0"],  # typer's error, via the fallback
        ["run", "--help"],
    ],
)
def test_the_quick_path_prints_what_typer_s_path_prints(
    home: Path, tmp_path: Path, args: list[str]
) -> None:
    write(tmp_path, "hello.py", HELLO)
    write(tmp_path, "fails.py", FAILS)
    args = [
        str(tmp_path / a) if a.startswith(("hello.py", "fails.py", "nosuch")) else a for a in args
    ]
    fast = phloem(tmp_path / "a", *args)
    slow = phloem(tmp_path / "b", *args, quick_path=False)
    assert fast.returncode == slow.returncode, (fast.stderr, slow.stderr)
    assert _same(fast.stdout) == _same(slow.stdout)
    assert _same(fast.stderr) == _same(slow.stderr)


# -- the parser against typer's --------------------------------------------------------------


def typer_args(args: list[str], monkeypatch: pytest.MonkeyPatch) -> quick.RunArgs | None:
    """What typer hands ``run_cmd.run`` for ``args`` (None: it did not call it)."""
    seen: list[quick.RunArgs] = []

    def record(*a: Any) -> None:
        seen.append(quick.RunArgs(*a))
        raise SystemExit(0)

    monkeypatch.setattr(run_cmd, "run", record)
    CliRunner().invoke(for_argv(args), args)
    return seen[0] if seen else None


@pytest.mark.parametrize(
    "args",
    [
        ["run", "p.py"],
        ["run", "p.py:pipe"],
        ["run", "--json", "p.py"],
        ["run", "p.py", "-p", "a=1", "--param", "b=2", "--param=c=3=4"],
        ["run", "p.py", "-e", "inline", "-w", "3"],
        ["run", "p.py", "--executor=local", "--workers=12"],
        ["run", "p.py", "--logical-date", "2026-01-31", "--rerun"],
        ["run", "p.py", "--logical-date=", "--no-cache"],
        ["run", "p.py", "--refresh-cache", "--json"],
        ["run", "", "-p", "="],
    ],
)
def test_plain_arguments_parse_as_typer_parses_them(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = quick.parse_run(args)
    assert parsed is not None
    assert parsed == typer_args(args, monkeypatch)
    assert parsed.executor is None or isinstance(parsed.executor, ExecutorKind)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["runs", "list"],
        ["--version", "run", "p.py"],
        ["run"],
        ["run", "--help"],
        ["run", "p.py", "--help"],
        ["run", "p.py", "q.py"],
        ["run", "p.py", "--"],
        ["run", "--", "p.py"],
        ["run", "-x.py"],
        ["run", "p.py", "-w", "0"],
        ["run", "p.py", "-w", "01"],
        ["run", "p.py", "-w", "two"],
        ["run", "p.py", "-w2"],
        ["run", "p.py", "-w", "1", "-w", "2"],
        ["run", "p.py", "-e", "LOCAL"],
        ["run", "p.py", "-e", "nowhere"],
        ["run", "p.py", "-e=local"],
        ["run", "p.py", "-pa=1"],
        ["run", "p.py", "--param"],
        ["run", "p.py", "--param", "-a=1"],
        ["run", "p.py", "--json=1"],
        ["run", "p.py", "--json", "--json"],
        ["run", "p.py", "--jso"],
        ["run", "p\udcff.py"],
    ],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert quick.parse_run(args) is None


# -- the plain table against rich's ------------------------------------------------------------

_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)
_rows = st.lists(
    st.builds(
        Row,
        task=st.one_of(st.from_regex(r"[a-z_][a-z0-9_.]{0,40}", fullmatch=True), _text),
        state=st.one_of(st.sampled_from(["success", "cached", "failed", "skipped"]), _text),
        tries=st.integers(0, 10**6),
        duration=st.one_of(st.none(), st.floats(0, 10**6)),
        mapped=st.one_of(st.none(), st.integers(0, 10**6)),
    ),
    max_size=6,
)


def _rich(rows: list[Row], lines: list[str]) -> str:
    buf = io.StringIO()
    out = Console(
        file=buf, highlight=False, soft_wrap=False, width=200, force_terminal=False, _environ={}
    )
    out.print(summary_table(rows))
    for line in lines:
        out.print(line)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    rows=_rows, lines=st.lists(st.one_of(_text, st.just("run 1-a success in 0.01s")), max_size=2)
)
def test_the_plain_table_is_what_rich_prints_to_a_pipe(rows: list[Row], lines: list[str]) -> None:
    plain = plain_table(rows, *lines)
    if plain is not None:
        assert plain == _rich(rows, lines)


def test_the_plain_table_covers_a_run_s_usual_summary() -> None:
    rows = [
        Row("load", "success", 1, 0.01),
        Row("train", "success", 2, 75.0),
        Row("score", "success 3 (x3)", 1, None, mapped=3),
    ]
    line = "run 20260131T020000-0123456789ab success in 1m15s"
    assert plain_table(rows, line) == _rich(rows, [line])


# -- the end of a long run ------------------------------------------------------------------------

_END_STATES = [TaskState.SUCCESS, TaskState.CACHED, TaskState.FAILED, TaskState.SKIPPED]


def _instances(states: list[TaskState]) -> list[TI]:
    return [TI(f"t{i:03d}", state=s, try_number=1) for i, s in enumerate(states)]


@settings(max_examples=200, deadline=None)
@given(states=st.lists(st.sampled_from(_END_STATES), max_size=60), limit=st.integers(1, 30))
def test_the_end_of_a_run_shows_the_troubled_tasks_first(
    states: list[TaskState], limit: int
) -> None:
    tis = _instances(states)
    rows = summary_rows(tis, None)
    shown, more = run_end_rows(rows, tis, "r-1", limit)
    order = [r.task for r in rows]
    assert [order.index(r.task) for r in shown] == sorted(order.index(r.task) for r in shown)
    if len(rows) <= limit:
        assert shown == rows and more is None
        return
    assert len(shown) == limit and more is not None
    troubled = [ti.task_id for ti in tis if ti.state not in (TaskState.SUCCESS, TaskState.CACHED)]
    names = {r.task for r in shown}
    assert set(troubled[:limit]) <= names
    hidden = [r.task for r in rows if r.task not in names]
    fine = sum(1 for t in hidden if t not in troubled)
    how = "all succeeded" if fine == len(hidden) else f"{fine} of them succeeded"
    listed = "(phloem runs show r-1 lists every task)"
    assert more == f"... and {len(hidden)} more tasks, {how} {listed}"


def test_a_long_run_s_end_is_printed_alike_with_and_without_rich() -> None:
    states = [TaskState.SUCCESS] * 200
    states[150] = TaskState.SKIPPED
    tis = _instances(states)
    ended = "run r-1 success in 0.50s"
    plain = plain_summary(tis, None, ended, run_id="r-1")
    assert plain is not None
    lines = plain.splitlines()
    assert len(lines) == 1 + RUN_END_ROWS + 2  # header, rows, the count, the end
    assert lines[RUN_END_ROWS].split()[:2] == ["t150", "skipped"]  # after the first 24
    assert lines[-2] == (
        "... and 175 more tasks, all succeeded (phloem runs show r-1 lists every task)"
    )
    buf = io.StringIO()
    out = Console(
        file=buf, highlight=False, soft_wrap=False, width=200, force_terminal=False, _environ={}
    )
    print_summary(out, tis, None, run_id="r-1")
    out.print(ended)
    assert buf.getvalue() == plain
    everything = io.StringIO()
    print_summary(Console(file=everything, width=200, _environ={}), tis, None)
    assert len(everything.getvalue().splitlines()) == 201  # ``runs show``: every task


def test_the_count_stays_one_line_on_a_narrow_terminal() -> None:
    tis = _instances([TaskState.SUCCESS] * 30)
    buf = io.StringIO()
    out = Console(file=buf, width=60, force_terminal=True, _environ={})
    print_summary(out, tis, None, run_id="20260131T020000-0123456789ab")
    assert buf.getvalue().splitlines()[-1].startswith("... and 5 more tasks")
