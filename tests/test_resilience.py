"""Transient database errors are waited out; permanent ones surface at once."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from phloem.store.resilience import is_transient, retrying


def _op(msg: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, sqlite3.OperationalError(msg))


def test_sqlite_lock_is_transient_but_missing_table_is_not() -> None:
    assert is_transient(_op("database is locked"))
    assert not is_transient(_op("no such table: runs"))
    assert not is_transient(_op("attempt to write a readonly database"))


def test_retrying_waits_out_a_blip_and_raises_permanent_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"n": 0}

    @retrying
    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise _op("database is locked")
        return "ok"

    assert flaky() == "ok" and calls["n"] == 3

    tries = {"n": 0}

    @retrying
    def broken() -> None:
        tries["n"] += 1
        raise _op("no such table: runs")

    with pytest.raises(OperationalError):
        broken()
    assert tries["n"] == 1  # raised at once, not retried

    def down() -> None:
        raise _op("database is locked")

    with pytest.raises(OperationalError):
        retrying(down, outage_timeout=0.3)()


def test_postgres_errors_without_a_code_wait_only_for_connection_trouble() -> None:
    class PgError(Exception):
        sqlstate = None

    def pg(msg: str) -> OperationalError:
        return OperationalError("SELECT 1", {}, PgError(msg))

    assert is_transient(pg('connection failed: connection to server at "127.0.0.1" failed'))
    assert not is_transient(pg('connection failed: FATAL: database "nope" does not exist'))
    assert not is_transient(
        pg(
            'connection failed: connection to server at "h", port 5432 failed: FATAL:  '
            'password authentication failed for user "x"'
        )
    )
