"""Accounts in every store: users and roles, tokens (shown once, kept as hashes) that expire
or are revoked, sessions, failed logins, and the first admin with its 0600 password file."""

from __future__ import annotations

import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest

from phloem.accounts import manage
from phloem.accounts.roles import Role
from phloem.accounts.secrets import digest
from phloem.app import Phloem
from phloem.errors import AccountError, AccountNotFound, LastAdmin


@pytest.fixture
def ph(store_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    app = Phloem.open(store_url, tmp_path / "home")
    yield app
    app.close()


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert Role.parse(" Admin ") is Role.ADMIN
    with pytest.raises(AccountError, match="use one of viewer, operator, admin"):
        Role.parse("root")


def test_users_are_added_listed_replaced_and_removed(ph: Phloem) -> None:
    manage.add_user(ph, "ana", "operator", "a long password")
    assert [(u.name, u.role) for u in manage.users(ph)] == [("ana", Role.OPERATOR)]
    stored = ph.store.accounts.user("ana")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert "a long password" not in stored.password_hash
    with pytest.raises(AccountError, match="exists already"):
        manage.add_user(ph, "ana", "viewer", "another password")
    manage.add_user(ph, "ana", "viewer", "another password", replace=True)
    assert manage.check_password(ph, "ana", "another password") is not None
    assert manage.check_password(ph, "ana", "a long password") is None
    assert manage.check_password(ph, "bob", "whatever it is") is None
    manage.create_token(ph, "ana-ci", "ana")
    manage.remove_user(ph, "ana")
    assert manage.users(ph) == [] and manage.tokens(ph) == []
    with pytest.raises(AccountNotFound):
        manage.remove_user(ph, "ana")


def test_the_last_enabled_admin_stays_one(ph: Phloem) -> None:
    manage.add_user(ph, "ana", "admin", "a long password")
    manage.add_user(ph, "bob", "admin", "a long password")
    manage.update_user(ph, "bob", disabled=True)  # a disabled admin does not count
    for change in (
        lambda: manage.update_user(ph, "ana", role="operator"),
        lambda: manage.update_user(ph, "ana", disabled=True),
        lambda: manage.remove_user(ph, "ana"),
        lambda: manage.add_user(ph, "ana", "viewer", "a long password", replace=True),
    ):
        with pytest.raises(LastAdmin, match="'ana': it is the last enabled admin"):
            change()
    assert manage.get_user(ph, "ana") == manage.User("ana", Role.ADMIN,
                                                     manage.get_user(ph, "ana").created_at)
    manage.update_user(ph, "ana", role="admin")  # no demotion: allowed
    manage.update_user(ph, "ana", disabled=False)
    manage.update_user(ph, "bob", role="viewer")  # not the last: bob is no enabled admin
    manage.add_user(ph, "cy", "admin", "a long password")
    manage.update_user(ph, "ana", disabled=True)
    manage.remove_user(ph, "ana")
    with pytest.raises(LastAdmin):
        manage.update_user(ph, "cy", role="viewer")


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 121, "<script>", "a'; DROP TABLE users"])
def test_bad_user_names_are_refused(ph: Phloem, name: str) -> None:
    with pytest.raises(AccountError, match="not valid"):
        manage.add_user(ph, name, "viewer", "a long password")
    assert manage.users(ph) == []


def test_short_passwords_are_refused(ph: Phloem) -> None:
    with pytest.raises(AccountError, match="at least 8"):
        manage.add_user(ph, "ana", "viewer", "short")


def test_tokens_are_kept_as_hashes_and_can_be_revoked(ph: Phloem) -> None:
    manage.add_user(ph, "ana", "viewer", "a long password")
    token, rec = manage.create_token(ph, "ci", "ana", timedelta(days=30))
    assert token.startswith("phl_") and len(token) > 40
    assert rec.expires_at is not None and rec.expires_at > time.time() + 29 * 86400
    found = ph.store.accounts.token_by_hash(digest(token))
    assert found is not None and found[1].name == "ana"
    with pytest.raises(AccountError, match="exists already"):
        manage.create_token(ph, "ci", "ana")
    manage.revoke_token(ph, "ci")
    with pytest.raises(AccountNotFound):
        manage.revoke_token(ph, "ci")
    assert manage.tokens(ph)[0].revoked_at is not None
    # the name is free again once revoked
    manage.create_token(ph, "ci", "ana")
    with pytest.raises(AccountNotFound, match="no user 'bob'"):
        manage.create_token(ph, "bob-ci", "bob")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 1209600)]
)
def test_expiry_durations(text: str, seconds: int) -> None:
    got = manage.parse_expiry(text)
    assert got is not None and got.total_seconds() == seconds


@pytest.mark.parametrize("text", ["30", "d", "-1d", "0d", "1y", "soon"])
def test_bad_expiry_durations(text: str) -> None:
    with pytest.raises(AccountError, match="like 30d"):
        manage.parse_expiry(text)


def test_sessions_and_login_failures(ph: Phloem) -> None:
    manage.add_user(ph, "ana", "admin", "a long password")
    acc = ph.store.accounts
    now = time.time()
    acc.add_session("h1", "ana", now, now + 60)
    found = acc.session("h1")
    assert found is not None and found[1].role == "admin"
    acc.end_session("h1")
    assert acc.session("h1") is None
    acc.login_failed(["user:ana", "addr:1.2.3.4"], now, keep=300)
    acc.login_failed(["user:ana"], now, keep=300)
    assert acc.login_failures(["user:ana", "addr:1.2.3.4", "user:bob"], now - 10) == {
        "user:ana": 2,
        "addr:1.2.3.4": 1,
        "user:bob": 0,
    }
    acc.forget_login_failures(["user:ana"])
    assert acc.login_failures(["user:ana"], now - 10) == {"user:ana": 0}


def test_the_first_admin_is_made_once_with_a_private_password_file(ph: Phloem) -> None:
    made = manage.ensure_admin(ph)
    assert made is not None
    password, path = made
    assert path.read_text().strip() == password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert manage.check_password(ph, "admin", password) is not None
    assert manage.users(ph)[0].role is Role.ADMIN
    assert manage.ensure_admin(ph) is None
