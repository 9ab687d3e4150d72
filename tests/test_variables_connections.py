"""Variables and connections: the store API on every backend, the task API, the CLI, and a
canary secret that must never appear in plain text anywhere phloem writes."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from typer.testing import CliRunner

import phloem
from phloem import pipeline, task
from phloem.cli.main import app
from phloem.errors import ConnectionNotFound, PhloemError, SecretError, VariableNotFound
from phloem.secrets import KEY_ENV, Cipher
from phloem.states import RunState, TaskState
from phloem.store import SqlStore
from phloem.store import schema as s
from phloem.store.settings_store import SettingsStore
from phloem.tasks.shell import run_command
from phloem.variables import Connection, close_stores, settings_store
from processes import Processes

KEY = Fernet.generate_key().decode()
runner = CliRunner()


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, KEY)
    yield
    close_stores()


@pytest.fixture
def settings(store: SqlStore) -> SettingsStore:
    return SettingsStore(store)


def cli(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=stdin)


# -- variables in the store ----------------------------------------------------------------------


def test_variables_round_trip(settings: SettingsStore) -> None:
    values = {"s": "text", "i": 3, "f": 0.5, "b": True, "n": None, "l": [1, "a"], "d": {"k": [1]}}
    for key, value in values.items():
        settings.set_variable(key, value)
    assert {k: settings.get_variable(k) for k in values} == values
    settings.set_variable("i", 4, description="replaced")
    assert settings.get_variable("i") == 4
    listed = settings.list_variables()
    assert [v.key for v in listed] == sorted(values)
    assert next(v for v in listed if v.key == "i").description == "replaced"
    assert settings.delete_variable("i") is True
    assert settings.delete_variable("i") is False
    assert settings.get_variable("i", default=None) is None


def test_a_missing_variable_says_how_to_set_it(settings: SettingsStore) -> None:
    settings.set_variable("threshold", 0.9)
    with pytest.raises(VariableNotFound) as info:
        settings.get_variable("treshold")
    msg = str(info.value)
    assert "variable 'treshold' is not set" in msg
    assert "did you mean 'threshold'?" in msg
    assert "`phloem variables set treshold VALUE`" in msg
    assert settings.get_variable("treshold", default=1) == 1


def test_bad_variable_keys_and_values(settings: SettingsStore) -> None:
    for bad in ("", "has space", "-dash", "x" * 251):
        with pytest.raises(PhloemError, match="not valid"):
            settings.set_variable(bad, 1)
    with pytest.raises(PhloemError, match="JSON-serializable"):
        settings.set_variable("obj", object())


# -- connections in the store --------------------------------------------------------------------


def test_connections_round_trip(settings: SettingsStore) -> None:
    uri = "postgresql+psycopg://ana:pw-secret@db:5432/dw"
    assert settings.add_connection("warehouse", uri) is False
    settings.add_connection("api", "https://api.example/v1?token=tok-secret")
    assert settings.get_connection_uri("warehouse") == uri
    assert [c.name for c in settings.list_connections()] == ["api", "warehouse"]
    with pytest.raises(PhloemError, match=r"exists already.*--replace"):
        settings.add_connection("warehouse", "sqlite:///x.db")
    assert settings.add_connection("warehouse", "sqlite:///x.db", replace=True) is True
    assert settings.get_connection_uri("warehouse") == "sqlite:///x.db"
    assert settings.delete_connection("warehouse") is True
    assert settings.delete_connection("warehouse") is False
    with pytest.raises(ConnectionNotFound, match="`phloem connections add warehouse URI`"):
        settings.get_connection_uri("warehouse")


def test_connections_are_encrypted_at_rest(settings: SettingsStore, store: SqlStore) -> None:
    settings.add_connection("warehouse", "postgresql://ana:pw-at-rest@db/dw")
    with store.engine.connect() as conn:
        (stored,) = conn.execute(select(s.connections.c.secret)).one()
    assert "pw-at-rest" not in stored and "db/dw" not in stored
    assert Cipher(KEY).decrypt(stored) == "postgresql://ana:pw-at-rest@db/dw"
    other = SettingsStore(store, cipher=Cipher(Fernet.generate_key()))
    with pytest.raises(
        SecretError, match="connection 'warehouse' cannot be decrypted with the configured key"
    ):
        other.get_connection_uri("warehouse")


def test_a_bad_uri_is_refused_without_echoing_it(settings: SettingsStore) -> None:
    with pytest.raises(PhloemError, match="needs a URI") as info:
        settings.add_connection("warehouse", "ana:pw-not-echoed@db")
    assert "pw-not-echoed" not in str(info.value)


# -- parsing -------------------------------------------------------------------------------------


def test_connection_parts_and_masked_repr() -> None:
    c = Connection.from_uri(
        "wh", "postgresql+psycopg://ana:p%40ss%3Aword@db.internal:6543/dw?sslmode=require"
    )
    assert (c.conn_type, c.scheme, c.host, c.port) == (
        "postgresql+psycopg",
        "postgresql+psycopg",
        "db.internal",
        6543,
    )
    assert (c.login, c.password, c.schema) == ("ana", "p@ss:word", "dw")
    assert c.extras == {"sslmode": "require"}
    for text in (repr(c), str(c), c.masked_uri, json.dumps(c.public_dict())):
        assert "p@ss" not in text and "p%40ss" not in text
    assert "password='***'" in repr(c)
    assert c.masked_uri == "postgresql+psycopg://ana:***@db.internal:6543/dw?sslmode=require"


def test_connection_without_password_and_secret_extras() -> None:
    lite = Connection.from_uri("lite", "sqlite:////var/data/x.db")
    assert (lite.host, lite.port, lite.login, lite.password) == (None, None, None, None)
    assert lite.schema == "/var/data/x.db"
    assert lite.secrets == ()  # nothing to hide: its logs stay readable
    api = Connection.from_uri("api", "https://bot@api.example/v1?token=tok-1234&page=2")
    assert api.login == "bot" and api.password is None
    assert api.extras == {"token": "tok-1234", "page": "2"}
    assert "tok-1234" not in repr(api) and "tok-1234" not in api.masked_uri
    assert set(api.secrets) == {"tok-1234", api.uri}


def test_an_unparsable_uri_is_a_clear_error() -> None:
    with pytest.raises(PhloemError, match="cannot be parsed") as info:
        Connection.from_uri("wh", "postgresql://ana:pw-hidden@db:notaport/dw")
    assert "pw-hidden" not in str(info.value)


# -- phloem.variable() and phloem.connection() ---------------------------------------------------


def test_outside_a_task_they_read_the_configured_store(home: Path) -> None:
    settings_store().set_variable("region", "eu")
    settings_store().add_connection("wh", "postgresql://ana:pw-config@db/dw")
    assert phloem.variable("region") == "eu"
    assert phloem.variable("absent", default=[]) == []
    assert phloem.connection("wh").password == "pw-config"
    assert (home / "phloem.db").exists()
    with pytest.raises(VariableNotFound, match="absent"):
        phloem.variable("absent")


@task
def read_config() -> dict:
    c = phloem.connection("warehouse")
    return {
        "threshold": phloem.variable("threshold"),
        "fallback": phloem.variable("unset", default="dflt"),
        "conn": [c.conn_type, c.host, c.port, c.login, c.schema, len(c.password or "")],
    }


@pipeline
def uses_config() -> None:
    read_config()


def test_tasks_read_the_run_store(store: SqlStore, store_url: str, tmp_path: Path) -> None:
    if store_url != "memory":
        SettingsStore(store).set_variable("threshold", 0.75)
        SettingsStore(store).add_connection("warehouse", "postgresql://ana:pw-run@wh:5433/dw")
    r = phloem.run(uses_config, store=store, home=tmp_path, executor="local", workers=1)
    if store_url == "memory":  # private to the driver's process: a clear error, not a hang
        assert r.state is RunState.FAILED
        assert "need a shared store" in (r.tasks[("read_config", -1)].error or "")
        return
    assert r.state is RunState.SUCCESS, r.tasks[("read_config", -1)].error
    assert r.output("read_config") == {
        "threshold": 0.75,
        "fallback": "dflt",
        "conn": ["postgresql", "wh", 5433, "ana", "dw", 6],
    }


@task
def needs_missing() -> None:
    phloem.variable("not_there")


@pipeline
def missing_variable() -> None:
    needs_missing()


def test_a_missing_variable_fails_the_task_with_the_fix(home: Path) -> None:
    r = phloem.run(missing_variable, executor="inline")
    ti = r.tasks[("needs_missing", -1)]
    assert ti.state is TaskState.FAILED
    assert ti.error is not None
    assert ti.error.startswith("VariableNotFound: variable 'not_there' is not set")
    assert "phloem variables set not_there VALUE" in ti.error


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_variables(home: Path) -> None:
    assert cli("variables", "set", "region", "eu-west").exit_code == 0
    r = cli("variables", "set", "limits", '{"rows": 10}', "--json", "-d", "row limits")
    assert r.exit_code == 0, r.output
    assert cli("variables", "get", "region").stdout == "eu-west\n"
    assert json.loads(cli("variables", "get", "limits").stdout) == {"rows": 10}
    assert json.loads(cli("variables", "get", "region", "--json").stdout) == "eu-west"
    listed = cli("variables", "list").stdout
    assert "region" in listed and '{"rows": 10}' in listed and "row limits" in listed
    rows = json.loads(cli("variables", "list", "--json").stdout)
    assert [(v["key"], v["value"]) for v in rows] == [
        ("limits", {"rows": 10}),
        ("region", "eu-west"),
    ]
    bad = cli("variables", "set", "x", "{nope", "--json")
    assert bad.exit_code == 2 and "not valid JSON" in bad.stderr
    missing = cli("variables", "get", "nope")
    assert missing.exit_code == 2
    assert "error: variable 'nope' is not set" in missing.stderr
    assert cli("variables", "delete", "region").exit_code == 0
    assert cli("variables", "delete", "region").exit_code == 2
    assert cli("variables", "list").stdout.splitlines()[1].startswith("limits")


def test_cli_connections_never_print_the_password(home: Path) -> None:
    pw = "pw-" + secrets.token_hex(6)
    uri = f"postgresql://ana:{pw}@db:5432/dw?sslmode=require&api_key={pw}x"
    r = cli("connections", "add", "warehouse", "-", stdin=uri + "\n")
    assert r.exit_code == 0 and "connection warehouse added" in r.stdout
    again = cli("connections", "add", "warehouse", uri)
    assert again.exit_code == 2 and "--replace" in again.stderr
    outputs = [
        cli("connections", "get", "warehouse"),
        cli("connections", "get", "warehouse", "--json"),
        cli("connections", "list"),
        cli("connections", "list", "--uri"),
        cli("connections", "list", "--uri", "--json"),
    ]
    for out in outputs:
        assert out.exit_code == 0, out.output
        assert pw not in out.output
    shown = json.loads(outputs[1].stdout)
    assert shown["password"] == "***" and shown["host"] == "db" and shown["schema"] == "dw"
    assert shown["extras"] == {"sslmode": "require", "api_key": "***"}
    assert "postgresql://ana:***@db:5432/dw" in outputs[3].stdout
    assert settings_store().get_connection_uri("warehouse") == uri
    assert cli("connections", "delete", "warehouse").exit_code == 0
    assert cli("connections", "list").stdout == "no connections\n"
    assert cli("connections", "get", "warehouse").exit_code == 2


def test_cli_wrong_key_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("connections", "add", "wh", "postgresql://a:pw-key@h/d").exit_code == 0
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    r = cli("connections", "get", "wh")
    assert r.exit_code == 2
    assert "connection 'wh' cannot be decrypted with the configured key" in r.stderr


def test_cli_creates_the_key_file_when_no_key_is_set(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    assert cli("connections", "add", "wh", "postgresql://a:pw-file@h/d").exit_code == 0
    assert (home / "secret.key").stat().st_mode & 0o777 == 0o600
    assert json.loads(cli("connections", "get", "wh", "--json").stdout)["login"] == "a"


# -- the canary ----------------------------------------------------------------------------------

CANARY = "canary-" + secrets.token_hex(8)


@task
def leak_everywhere() -> None:
    c = phloem.connection("warehouse")
    print("the password is", c.password)
    print("the uri is", c.uri)
    print("the connection is", c)
    phloem.context().log.info("logging the password %s", c.password)
    phloem.context().log.warning("and the uri %s", c.uri)
    sys.stderr.write(f"stderr: {c.password}\n")
    raise RuntimeError(f"could not connect with password {c.password} to {c.uri}")


@task(retries=1)
def leak_from_a_command() -> None:
    c = phloem.connection("warehouse")
    run_command(f"echo out {c.password}; echo err {c.password} >&2; exit 3")


@pipeline
def leaky() -> None:
    leak_everywhere()
    leak_from_a_command()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_canary_secret_appears_nowhere(executor: str, home: Path) -> None:
    uri = f"postgresql+psycopg://ana:{CANARY}@warehouse.internal:5432/dw"
    assert cli("connections", "add", "warehouse", uri).exit_code == 0
    r = phloem.run(leaky, executor=executor)
    assert r.state is RunState.FAILED
    errors = {t: ti.error or "" for (t, _), ti in r.tasks.items()}
    assert errors["leak_everywhere"].startswith("RuntimeError: could not connect with password ***")
    assert errors["leak_from_a_command"].startswith("CommandFailed: command exited with code 3")
    assert "err ***" in errors["leak_from_a_command"]

    store = SqlStore(f"sqlite:///{home / 'phloem.db'}")
    try:
        stored = [a.error or "" for a in store.attempts(r.run_id)]
        stored += [e.reason or "" for e in store.events(r.run_id)]
        assert len(store.attempts(r.run_id)) == 3  # one retry of the command task
    finally:
        store.close()

    logs = sorted((home / "logs" / r.run_id).glob("*.log"))
    assert len(logs) == 3
    log_text = "\n".join(p.read_text() for p in logs)
    assert "the password is ***" in log_text
    assert "logging the password ***" in log_text
    assert "out ***" in log_text and "err ***" in log_text
    assert "password='***'" in log_text

    shown = [
        cli("runs", "show", r.run_id, "--json"),
        cli("runs", "show", r.run_id),
        cli("logs", r.run_id, "leak_everywhere"),
        cli("logs", r.run_id, "leak_from_a_command"),
        cli("logs", r.run_id, "leak_from_a_command", "--try", "1"),
        cli("connections", "list", "--uri"),
        cli("connections", "get", "warehouse"),
        cli("connections", "get", "warehouse", "--json"),
    ]
    assert all(out.exit_code in (0, 1) for out in shown)
    cli_text = "\n".join(out.output for out in shown)
    assert "the password is ***" in cli_text

    for text in (*errors.values(), *stored, log_text, cli_text):
        assert CANARY not in text
    close_stores()
    for path in home.rglob("*"):  # the database (and its WAL), logs, artifacts, the key
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


# -- settings commands while another process writes ----------------------------------------------

#: holds SQLite's write lock, says so, and commits a second later: a settings command that
#: read before it and writes after it must wait for the lock, not fail with "database is locked"
_WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("CREATE TABLE IF NOT EXISTS churn (x INTEGER)")
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO churn VALUES (1)")
print("locked", flush=True)
time.sleep(1.0)
db.execute("COMMIT")
"""


@pytest.mark.parametrize(
    "command",
    [
        ("connections", "add", "warehouse", "postgresql://u:pw@db/dw"),
        ("variables", "set", "threshold", "0.5"),
        ("pools", "set", "gpu", "2"),
        ("connections", "delete", "old"),
        ("variables", "delete", "old"),
    ],
)
def test_settings_commands_wait_for_a_concurrent_writer(
    home: Path, command: tuple[str, ...], processes: Processes
) -> None:
    import subprocess

    assert cli("connections", "add", "old", "sqlite:///x.db").exit_code == 0  # creates the store
    assert cli("variables", "set", "old", "1").exit_code == 0
    writer = processes.start(
        [sys.executable, "-c", _WRITER, str(home / "phloem.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
    result = cli(*command)
    assert result.exit_code == 0, result.output
    assert writer.wait(30) == 0
