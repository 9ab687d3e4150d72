"""Transient database errors are waited out; permanent ones surface at once."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from phloem.store.resilience import is_restarting, is_transient, opening_retrying, retrying


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


class _PgError(Exception):
    def __init__(self, msg: str, sqlstate: str | None = None) -> None:
        super().__init__(msg)
        self.sqlstate = sqlstate


def _pg(msg: str, sqlstate: str | None = None) -> OperationalError:
    return OperationalError("SELECT 1", {}, _PgError(msg, sqlstate))


_REFUSED = 'connection to server at "127.0.0.1", port 5432 failed: Connection refused'


def test_opening_waits_out_a_restart_through_the_refusals_that_follow_it() -> None:
    errors = [
        _pg("FATAL:  the database system is shutting down", "57P03"),
        _pg(_REFUSED),
        _pg(_REFUSED),
        _pg("FATAL:  the database system is starting up", "57P03"),
    ]

    def first_use() -> str:
        if errors:
            raise errors.pop(0)
        return "open"

    assert opening_retrying(first_use, outage=60) == "open"
    assert not errors


def test_opening_a_database_nobody_answers_for_fails_at_once() -> None:
    tries = []

    def first_use() -> None:
        tries.append(1)
        raise _pg(_REFUSED)

    with pytest.raises(OperationalError, match="Connection refused"):
        opening_retrying(first_use, outage=60)
    assert len(tries) == 1


def test_opening_gives_up_on_a_restart_after_the_outage_timeout() -> None:
    def first_use() -> None:
        raise _pg("FATAL:  the database system is shutting down", "57P03")

    with pytest.raises(OperationalError, match="shutting down"):
        opening_retrying(first_use, outage=0.3)


def test_a_restart_is_told_apart_from_a_missing_server() -> None:
    assert is_restarting(_pg("terminating connection due to administrator command", "57P01"))
    assert is_restarting(_pg("server closed the connection unexpectedly"))
    assert is_restarting(_op("database is locked"))
    assert not is_restarting(_pg(_REFUSED))
    assert not is_restarting(_pg('FATAL:  database "nope" does not exist', "3D000"))


def test_a_postgresql_that_takes_the_connection_and_never_answers_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts TCP connections and says nothing (stopped, or a proxy whose
    backend is gone) held the opening process for ever: libpq has no connect timeout unless
    it is given one. The store gives it one; the URL's own wins."""
    import socket
    import threading

    from sqlalchemy import event

    from phloem.errors import StoreError
    from phloem.store import SqlStore
    from phloem.store import engine as engines

    monkeypatch.setattr(engines, "CONNECT_TIMEOUT", 1)
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # the kernel completes the handshakes; nobody ever reads or writes
        port = mute.getsockname()[1]
        url = f"postgresql+psycopg://phloem@127.0.0.1:{port}/phloem"
        failed: list[BaseException] = []

        def open_it() -> None:
            try:
                SqlStore(url, outage_timeout=0.5)
            except BaseException as exc:
                failed.append(exc)

        opener = threading.Thread(target=open_it, daemon=True)
        opener.start()
        opener.join(120)  # without a timeout it never returns
        assert not opener.is_alive(), "opening a store on a mute server never returned"
        assert failed and isinstance(failed[0], StoreError), failed
        assert "timeout" in str(failed[0]).lower()

    def connect_params(url: str) -> dict[str, object]:
        engine = engines.make_engine(url)
        seen: dict[str, object] = {}

        @event.listens_for(engine, "do_connect")
        def grab(dialect: object, rec: object, cargs: object, cparams: dict[str, object]) -> None:
            seen.update(cparams)
            raise RuntimeError("seen")

        with pytest.raises(Exception, match="seen"):
            engine.connect()
        engine.dispose()
        return seen

    assert connect_params(url)["connect_timeout"] == 1
    assert str(connect_params(f"{url}?connect_timeout=7")["connect_timeout"]) == "7"


@pytest.mark.postgres
def test_postgresql_connections_give_up_on_a_server_that_vanished(pg_url: str) -> None:
    """A connection waiting on a query whose server is gone (host off, network cut, failover
    to another address) waited for the operating system's keepalive: two hours and more. The
    store sets libpq's keepalive and TCP user timeout on every connection, and a setting the
    URL gives wins. (A real network cut is not made here: it needs root and a network
    namespace; what is checked is what libpq holds on a real connection, and what its socket
    carries.)"""
    import os
    import socket

    from phloem.store import SqlStore
    from phloem.store.engine import TCP_SETTINGS

    def settings(url: str) -> dict[str, str]:
        """libpq's TCP settings on a connection of the store, and its socket's own."""
        store = SqlStore(url)
        try:
            with store.engine.connect() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                given = raw.info.get_parameters()
                out = {k: given[k] for k in TCP_SETTINGS if k in given}
                with socket.socket(fileno=os.dup(raw.fileno())) as sock:
                    for name in ("TCP_KEEPIDLE", "TCP_USER_TIMEOUT"):
                        value = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
                        out[name] = str(value)
            return out
        finally:
            store.close()

    expected = {k: str(v) for k, v in TCP_SETTINGS.items()}
    expected["TCP_KEEPIDLE"] = str(TCP_SETTINGS["keepalives_idle"])
    expected["TCP_USER_TIMEOUT"] = str(TCP_SETTINGS["tcp_user_timeout"])
    assert settings(pg_url) == expected
    own = settings(f"{pg_url}&keepalives_idle=5&tcp_user_timeout=2000")
    assert own["keepalives_idle"] == own["TCP_KEEPIDLE"] == "5"
    assert own["tcp_user_timeout"] == own["TCP_USER_TIMEOUT"] == "2000"
    assert own["keepalives_count"] == str(TCP_SETTINGS["keepalives_count"])
