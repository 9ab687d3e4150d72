"""Shared fixtures: every store test runs on memory, SQLite and the real PostgreSQL server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("PHLOEM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_schema_url() -> Iterator[str]:
    """A fresh schema on the real server for one test, dropped afterwards."""
    import sqlalchemy as sa

    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL, pool_pre_ping=True)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:  # CI must not silently skip these
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
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
    from phloem.store import SqlStore

    s = SqlStore(store_url)
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
