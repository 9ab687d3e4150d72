"""What ``phloem users`` / ``phloem tokens`` and the server's admin endpoints do: add and remove
users, create, list and revoke tokens, check a password, create the first admin."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from phloem.accounts.roles import Role
from phloem.accounts.secrets import (
    digest,
    hash_password,
    new_password,
    new_token,
    verify_password,
    waste_a_verify,
)
from phloem.app import Phloem
from phloem.errors import AccountError, AccountNotFound
from phloem.store.accounts import TokenRecord, UserRecord

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@\-]{0,119}$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: the first admin's name, and the file under the home its password is written to
FIRST_ADMIN = "admin"
ADMIN_PASSWORD_FILE = "admin-password"
MIN_PASSWORD = 8


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    created_at: float
    disabled: bool = False


def _name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise AccountError(
            f"{what} name {name[:60]!r} is not valid: use letters, digits and _ . @ - "
            "(at most 120, not starting with . @ or -)"
        )
    return name


def _user(r: UserRecord) -> User:
    return User(r.name, Role(r.role), r.created_at, r.disabled_at is not None)


def add_user(
    app: Phloem, name: str, role: Role | str, password: str, *, replace: bool = False
) -> User:
    """Add a user; with ``replace``, give an existing one this role and password (but the last
    enabled admin keeps its role: :class:`LastAdmin`)."""
    role = role if isinstance(role, Role) else Role.parse(role)
    _name(name, "user")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    now = time.time()
    if not app.store.accounts.add_user(name, role.value, hash_password(password), now,
                                       replace=replace, admin_role=Role.ADMIN.value):
        raise AccountError(
            f"user '{name}' exists already; remove it first, or pass --replace to give it "
            "this role and password"
        )
    return User(name, role, now)


def users(app: Phloem) -> list[User]:
    return [_user(r) for r in app.store.accounts.users()]


def get_user(app: Phloem, name: str) -> User:
    r = app.store.accounts.user(name)
    if r is None:
        raise AccountNotFound(f"no user '{name}' (see `phloem users list`)")
    return _user(r)


def remove_user(app: Phloem, name: str) -> None:
    """Remove a user with its tokens and sessions; the last enabled admin stays
    (:class:`LastAdmin`), or nobody could manage the users any more."""
    if not app.store.accounts.remove_user(name, admin_role=Role.ADMIN.value):
        raise AccountNotFound(f"no user '{name}' (see `phloem users list`)")


def update_user(
    app: Phloem, name: str, *, role: Role | str | None = None, disabled: bool | None = None
) -> User:
    """Give a user another role, or disable (or enable) it: a disabled user keeps its name
    and tokens but cannot log in or use them, and its sessions end at once. The last enabled
    admin can be neither demoted nor disabled (:class:`LastAdmin`), whoever asks: the check is
    here, under the CLI and the API alike, and atomic with the change."""
    if role is not None and not isinstance(role, Role):
        role = Role.parse(role)
    done = app.store.accounts.update_user(
        name,
        time.time(),
        role=role.value if role is not None else None,
        disabled=disabled,
        admin_role=Role.ADMIN.value,
    )
    if not done:
        raise AccountNotFound(f"no user '{name}' (see `phloem users list`)")
    return get_user(app, name)


def check_password(app: Phloem, name: str, password: str) -> User | None:
    """The user if ``password`` is theirs, else None (same cost whether the user exists)."""
    r = app.store.accounts.user(name)
    if r is None:
        waste_a_verify(password)
        return None
    return _user(r) if verify_password(r.password_hash, password) else None


def parse_expiry(text: str | None) -> timedelta | None:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s``; None or ``never`` for no expiry."""
    if text is None or text.strip().lower() in ("", "never"):
        return None
    m = _DURATION.match(text.lower())
    if not m or int(m.group(1)) <= 0:
        raise AccountError(
            f"expiry {text!r} is not a duration: write a number and a unit, like 30d, 12h, "
            "90m, 2w (or `never`)"
        )
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def create_token(
    app: Phloem, name: str, user: str, expires: timedelta | None = None
) -> tuple[str, TokenRecord]:
    """A new token for ``user``; the token itself is returned here only, never stored."""
    _name(name, "token")
    get_user(app, user)
    token = new_token()
    now = time.time()
    until = None if expires is None else now + expires.total_seconds()
    if not app.store.accounts.add_token(name, user, digest(token), now, until):
        raise AccountError(
            f"a token named '{name}' exists already; revoke it first (`phloem tokens revoke "
            f"{name}`) or pick another name"
        )
    return token, TokenRecord(name, user, now, until, None)


def tokens(app: Phloem, user: str | None = None) -> list[TokenRecord]:
    return app.store.accounts.tokens(user)


def revoke_token(app: Phloem, name: str) -> None:
    if not app.store.accounts.revoke_token(name, time.time()):
        raise AccountNotFound(f"no token '{name}' that is not revoked (see `phloem tokens list`)")


def ensure_admin(app: Phloem) -> tuple[str, Path] | None:
    """With no user at all, create ``admin`` with a random password, written to a file only
    its owner can read under the home; returns (password, file) then, else None."""
    accounts = app.store.accounts
    if accounts.users():
        return None
    password = new_password()
    if not accounts.add_first_user(
        FIRST_ADMIN, Role.ADMIN.value, hash_password(password), time.time()
    ):
        return None  # another server made the first user meanwhile
    app.settings.ensure_dirs()
    path = app.home / ADMIN_PASSWORD_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password, path


__all__ = [
    "ADMIN_PASSWORD_FILE",
    "FIRST_ADMIN",
    "User",
    "add_user",
    "check_password",
    "create_token",
    "ensure_admin",
    "get_user",
    "parse_expiry",
    "remove_user",
    "revoke_token",
    "tokens",
    "update_user",
    "users",
]
