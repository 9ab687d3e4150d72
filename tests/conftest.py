"""Shared fixtures: every store test runs on memory, SQLite and the real PostgreSQL server;
processes tests start are killed with their group; a run that leaves a process behind fails."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes import Processes, ProcInfo, carrying, descendants, kill_all, wait_gone

PG_URL = os.environ.get("PHLOEM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_schema_url() -> Iterator[str]:
    """A fresh schema on the real server for one test, dropped afterwards."""
    import sqlalchemy as sa

    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL, pool_pre_ping=True)
    deadline = time.monotonic() + 60  # a restart (the outage tests make one) takes seconds
    while True:
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            break
        except sa.exc.OperationalError as exc:  # CI must not silently skip these
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
            time.sleep(0.5)
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        _drop(admin, schema, deadline=time.monotonic() + 60)
        admin.dispose()


def _drop(admin: object, schema: str, deadline: float) -> None:
    import sqlalchemy as sa

    assert isinstance(admin, sa.engine.Engine)
    while True:
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_schema_url()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new SQLite file, then a fresh schema on the real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'phloem.db'}"
    else:
        yield from _pg_schema_url()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'phloem.db'}"
    else:
        yield from _pg_schema_url()


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    from phloem.store import open_store

    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated PHLOEM_HOME (SQLite store, artifacts and logs) for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("PHLOEM_HOME", str(h))
    monkeypatch.delenv("PHLOEM_DB_URL", raising=False)
    monkeypatch.delenv("PHLOEM_ARTIFACTS_URL", raising=False)
    return h


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Start commands in process groups of their own, all killed (with whatever they started)
    when the test ends, however it ends."""
    procs = Processes()
    try:
        yield procs
    finally:
        procs.close()


# -- no process outlives the suite ----------------------------------------------------------------

#: every process the suite starts inherits this (with a value unique to the session), so even
#: an orphan adopted by init is known as ours
SESSION_VAR = "PHLOEM_TEST_SESSION"


def pytest_sessionstart(session: pytest.Session) -> None:
    os.environ[SESSION_VAR] = secrets.token_hex(8)


def _left_behind() -> list[ProcInfo]:
    found = {p.pid: p for p in descendants(os.getpid())}
    found.update((p.pid, p) for p in carrying(SESSION_VAR, os.environ[SESSION_VAR]))
    return sorted(found.values(), key=lambda p: p.pid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process the suite started still runs (a grace period lets the
    dying finish dying); kill what is left so it does not outlive the run."""
    if SESSION_VAR not in os.environ or not os.path.isdir("/proc"):
        return
    left = wait_gone(_left_behind, 10.0)
    if not left:
        return
    kill_all(left)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(left)} process(es) started by the tests outlived them (now killed):"]
    lines += [f"  {p}" for p in left]
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "processes left running", red=True)
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- the server's fixtures (tests/server_fixtures.py) ------------------------------------------
from browser_fixtures import chromium, ui_server  # noqa: E402, F401
from server_fixtures import api, api_on_store  # noqa: E402, F401

# -- the web UI's fixtures (tests/ui_fixtures.py) -------------------------------------------------
from ui_fixtures import ui  # noqa: E402, F401
