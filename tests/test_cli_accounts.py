"""``phloem users`` and ``phloem tokens``: the token is printed once and works, a role or a
duration that is wrong is one clear error line, and nothing is written then."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from phloem.cli.main import app

runner = CliRunner()


def test_users_and_tokens_round_trip(home: Path) -> None:
    r = runner.invoke(app, ["users", "add", "ana", "--role", "operator", "--password-stdin"],
                      input="a long password\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["users", "list", "--json"])
    assert [(u["name"], u["role"]) for u in json.loads(r.stdout)] == [("ana", "operator")]
    r = runner.invoke(app, ["tokens", "create", "ci", "--user", "ana", "--expires", "30d"])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[0]
    assert token.startswith("phl_")
    from phloem.accounts.secrets import digest
    from phloem.app import Phloem

    with Phloem.open(None, home) as ph:
        found = ph.store.accounts.token_by_hash(digest(token))
        assert found is not None and found[1].name == "ana"
    r = runner.invoke(app, ["tokens", "list", "--json"])
    listed = json.loads(r.stdout)
    assert listed[0]["state"] == "valid" and token not in r.stdout
    assert runner.invoke(app, ["tokens", "revoke", "ci"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["tokens", "list", "--json"]).stdout)[0]["state"] == (
        "revoked"
    )
    r = runner.invoke(app, ["users", "set-role", "ana", "viewer"])
    assert r.exit_code == 0 and "ana: viewer" in r.stdout
    assert runner.invoke(app, ["users", "disable", "ana"]).exit_code == 0
    assert "(disabled)" in runner.invoke(app, ["users", "list"]).stdout
    (ana,) = json.loads(runner.invoke(app, ["users", "list", "--json"]).stdout)
    assert ana["role"] == "viewer" and ana["disabled"] is True
    assert runner.invoke(app, ["users", "enable", "ana"]).exit_code == 0
    (ana,) = json.loads(runner.invoke(app, ["users", "list", "--json"]).stdout)
    assert ana["disabled"] is False
    r = runner.invoke(app, ["users", "set-role", "ana", "root"])
    assert r.exit_code == 2 and "'root' is not a role" in r.output
    assert runner.invoke(app, ["users", "disable", "nobody"]).exit_code == 2
    assert runner.invoke(app, ["users", "remove", "ana"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["users", "list", "--json"]).stdout) == []


def test_bad_input_is_one_error_line_and_changes_nothing(home: Path) -> None:
    r = runner.invoke(app, ["users", "add", "ana", "--role", "root", "--password-stdin"],
                      input="a long password\n")
    assert r.exit_code == 2 and "'root' is not a role" in r.output
    r = runner.invoke(app, ["users", "add", "ana", "--role", "viewer", "--password-stdin"],
                      input="\n")
    assert r.exit_code == 2 and "no password" in r.output
    r = runner.invoke(app, ["tokens", "create", "ci", "--expires", "soon"])
    assert r.exit_code == 2 and "like 30d" in r.output
    r = runner.invoke(app, ["tokens", "create", "ci", "--user", "nobody"])
    assert r.exit_code == 2 and "no user 'nobody'" in r.output
    r = runner.invoke(app, ["users", "remove", "nobody"])
    assert r.exit_code == 2 and "no user 'nobody'" in r.output
    assert json.loads(runner.invoke(app, ["users", "list", "--json"]).stdout) == []


def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_removed(home: Path) -> None:
    for name, role in (("ana", "admin"), ("bob", "viewer")):
        r = runner.invoke(app, ["users", "add", name, "--role", role, "--password-stdin"],
                          input="a long password\n")
        assert r.exit_code == 0, r.output
    refusals = (
        ["users", "set-role", "ana", "operator"],
        ["users", "disable", "ana"],
        ["users", "remove", "ana"],
        ["users", "add", "ana", "--role", "viewer", "--replace", "--password-stdin"],
    )
    for args in refusals:
        r = runner.invoke(app, args, input="a long password\n")
        assert r.exit_code == 2, (args, r.output)
        (line,) = r.stderr.splitlines()
        assert line.startswith("error: cannot ") and "'ana': it is the last enabled admin" in line
        assert "phloem users set-role NAME admin" in line
    listed = json.loads(runner.invoke(app, ["users", "list", "--json"]).stdout)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [
        ("ana", "admin", False), ("bob", "viewer", False)
    ]
    # a disabled admin does not count; an enabled one does
    assert runner.invoke(app, ["users", "set-role", "bob", "admin"]).exit_code == 0
    assert runner.invoke(app, ["users", "disable", "bob"]).exit_code == 0
    assert runner.invoke(app, ["users", "disable", "ana"]).exit_code == 2
    assert runner.invoke(app, ["users", "enable", "bob"]).exit_code == 0
    assert runner.invoke(app, ["users", "disable", "ana"]).exit_code == 0
    assert runner.invoke(app, ["users", "remove", "bob"]).exit_code == 2
    assert runner.invoke(app, ["users", "enable", "ana"]).exit_code == 0
    assert runner.invoke(app, ["users", "remove", "bob"]).exit_code == 0
