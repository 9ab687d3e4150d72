"""The ready-made tasks: shell commands and SQL statements on a connection."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

import phloem
from phloem import pipeline, task
from phloem.errors import DefinitionError
from phloem.secrets import KEY_ENV
from phloem.states import RunState, TaskState
from phloem.tasks import CommandFailed, shell, sql
from phloem.tasks.shell import run_command
from phloem.tasks.sql import run_query, sqlalchemy_url
from phloem.variables import close_stores, settings_store


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    yield
    close_stores()


def read_log(home: Path, r: phloem.RunResult, task_id: str, try_number: int = 1) -> str:
    return (home / "logs" / r.run_id / f"{task_id}.{try_number}.log").read_text()


# -- shell ---------------------------------------------------------------------------------------


@task
def who() -> str:
    return "world"


@task
def settings() -> dict:
    return {"depth": 3, "tags": ["a", "b"]}


@pipeline
def shells() -> None:
    name = who()
    shell("echo first; echo 'hello '$WHO; echo a warning >&2", env={"WHO": name})
    shell([sys.executable, "-c", "print(41 + 1)"])
    shell("printf 'a\\nb\\n'; echo e >&2", capture="all", name="everything")
    shell(
        'test "$DEPTH" = 3 && echo "$CONF"', env={"DEPTH": settings()["depth"], "CONF": settings()}
    )
    shell("true", capture="none", name="quiet")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_shell_outputs_logs_and_env_from_upstream(executor: str, home: Path) -> None:
    r = phloem.run(shells, executor=executor)
    assert r.state is RunState.SUCCESS, {k: ti.error for k, ti in r.tasks.items()}
    assert r.output("shell") == "hello world"
    assert r.output("shell__1") == "42"
    assert r.output("everything") == {"returncode": 0, "stdout": "a\nb\n", "stderr": "e\n"}
    assert r.output("shell__2") == '{"depth": 3, "tags": ["a", "b"]}'
    assert r.output("quiet") is None
    log = read_log(home, r, "shell")
    assert "first\n" in log and "hello world\n" in log and "a warning\n" in log


@pipeline
def failing_shell() -> None:
    shell(
        "echo working; for i in 1 2 3 4; do echo problem $i >&2; done; exit 7",
        retries=1,
        name="fails",
    )


def test_shell_failure_names_the_exit_code_and_the_last_stderr_lines(home: Path) -> None:
    r = phloem.run(failing_shell, executor="inline")
    ti = r.tasks[("fails", -1)]
    assert ti.state is TaskState.FAILED
    assert ti.try_number == 2  # the task option was applied
    assert ti.error == (
        "CommandFailed: command exited with code 7: problem 2 | problem 3 | problem 4"
    )
    log = read_log(home, r, "fails", 2)
    assert "working" in log and "problem 1" in log and "CommandFailed" in log


def test_run_command_directly() -> None:
    assert run_command("echo one; echo; echo two; echo") == "two"
    assert run_command(["echo", "a b"]) == "a b"
    assert run_command("true") is None
    with pytest.raises(CommandFailed) as info:
        run_command("echo bad >&2; kill -TERM $$")
    assert info.value.returncode == -15
    assert str(info.value) == "command was killed by signal 15: bad"
    assert info.value.stderr_tail == ["bad"]


def test_shell_with_cwd(tmp_path: Path) -> None:
    assert run_command("pwd", cwd=str(tmp_path)) == str(tmp_path.resolve())


def test_shell_names_and_bad_capture() -> None:
    @pipeline
    def names() -> None:
        shell("true")
        shell("true")
        shell("true", name="setup")

    assert list(names.spec.tasks) == ["shell", "shell__1", "setup"]

    with pytest.raises(DefinitionError, match=r"test_shell_sql_tasks.py:\d+: duplicate task n"):

        @pipeline
        def twice() -> None:
            shell("true", name="same")
            shell("true", name="same")

    with pytest.raises(phloem.PhloemError, match="capture"):
        shell("true", capture="first")

    with pytest.raises(DefinitionError, match="did you mean 'retries'"):

        @pipeline
        def typo() -> None:
            shell("true", retires=2)


def _wait_dead(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaps counts as exited)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; uses prctl")
@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_timed_out_command_is_killed(executor: str, home: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    @pipeline
    def slow() -> None:
        shell(f"echo $$ > {pidfile}; exec sleep 30", timeout=1, name="slow")

    r = phloem.run(slow, executor=executor)
    slow_ti = r.tasks[("slow", -1)]
    # failed by its timeout (the command itself would have succeeded after 30 s)
    assert slow_ti.state is TaskState.FAILED and "timed out" in (slow_ti.error or "")
    assert _wait_dead(int(pidfile.read_text()))


def test_what_a_command_leaves_in_the_background_ends_with_it(tmp_path: Path) -> None:
    """``cmd &`` keeps the output pipes open: the task must not wait for it to end."""
    import os
    import signal
    import threading

    pidfile = tmp_path / "pid"
    done: list[object] = []
    worker = threading.Thread(
        target=lambda: done.append(run_command(f"sleep 600 & echo $! > {pidfile}; echo hi")),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    try:
        assert done == ["hi"], "the task waited for its background process"
        assert _wait_dead(int(pidfile.read_text()))
    finally:
        if worker.is_alive():  # the bug: end the sleep, so nothing outlives the test
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


# -- sql -----------------------------------------------------------------------------------------

#: Breaks the statement (or worse) if it were pasted into the SQL text instead of bound.
NASTY = "O'Brien'); DROP TABLE customers; --"


@task
def customer_name() -> str:
    return NASTY


@pipeline
def sql_flow() -> None:
    create = sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)", conn="db")
    name = customer_name()
    one = sql(
        "INSERT INTO customers (id, name) VALUES (:id, :name)",
        conn="db",
        params={"id": 1, "name": name},
        name="insert_one",
    )
    many = sql(
        "INSERT INTO customers (id, name) VALUES (:id, :name)",
        conn="db",
        params=[{"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
        name="insert_many",
    )
    lookup = sql(
        "SELECT id, name FROM customers WHERE name = :name",
        conn="db",
        params={"name": name},
        name="lookup",
    )
    count = sql("SELECT count(*) AS n FROM customers", conn="db", name="count")
    create >> one >> many >> lookup >> count


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_sql_binds_parameters_on_sqlite_and_postgres(target_url: str, home: Path) -> None:
    settings_store().add_connection("db", target_url)
    r = phloem.run(sql_flow, executor="local", workers=2)
    assert r.state is RunState.SUCCESS, {k: ti.error for k, ti in r.tasks.items()}
    assert r.output("insert_one") == 1
    assert r.output("lookup") == [{"id": 1, "name": NASTY}]
    assert r.output("count") == [{"n": 3}]


def test_sql_outside_a_pipeline_run(home: Path, tmp_path: Path) -> None:
    settings_store().add_connection("lite", f"sqlite:///{tmp_path / 'x.db'}")
    assert run_query("SELECT :a AS a, :b AS b", conn="lite", params={"a": NASTY, "b": 2}) == [
        {"a": NASTY, "b": 2}
    ]
    with pytest.raises(phloem.PhloemError, match="query is empty"):
        run_query("  ", conn="lite")
    with pytest.raises(phloem.ConnectionNotFound, match="connections add nope"):
        run_query("SELECT 1", conn="nope")


def test_sql_failure_is_one_line_and_the_task_fails(home: Path, tmp_path: Path) -> None:
    settings_store().add_connection("lite", f"sqlite:///{tmp_path / 'x.db'}")

    @pipeline
    def broken() -> None:
        sql("SELECT * FROM no_such_table", conn="lite")

    r = phloem.run(broken, executor="inline")
    error = r.tasks[("sql", -1)].error or ""
    assert error.startswith("OperationalError:") and "no_such_table" in error
    assert "\n" not in error


def test_plain_postgresql_uris_use_the_installed_driver() -> None:
    url = sqlalchemy_url("postgresql://u:p@h/d")
    assert url.startswith("postgresql") and url.endswith("://u:p@h/d")
    assert sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"
    assert sqlalchemy_url("postgresql+psycopg://h/d") == "postgresql+psycopg://h/d"
