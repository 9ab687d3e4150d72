"""Users, API tokens, browser sessions and failed logins of the server, in the store, so that
several servers on one database agree on who may do what (and on how many logins failed).

Only hashes are kept: passwords as argon2 hashes made by ``phloem.accounts``, tokens and
session ids as SHA-256 of their high-entropy secret. Domain terms only; SQL stays in here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.exc import IntegrityError

from phloem.errors import LastAdmin
from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    role: str
    password_hash: str
    created_at: float
    #: when the user was disabled (refused at login and for its tokens); None: enabled
    disabled_at: float | None = None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    user: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    user: str
    created_at: float
    expires_at: float


def _user(r: object) -> UserRecord:
    return UserRecord(
        r.name, r.role, r.password_hash, r.created_at, r.disabled_at  # type: ignore[attr-defined]
    )


def _token(r: object) -> TokenRecord:
    return TokenRecord(
        r.name, r.username, r.created_at, r.expires_at, r.revoked_at  # type: ignore[attr-defined]
    )


def _keep_an_admin(conn: Connection, name: str, admin_role: str, what: str) -> None:
    """Refuse to take ``name`` out of the enabled users of ``admin_role`` when it is the last
    of them: nobody could manage the server's users then. The enabled admins are locked (FOR
    UPDATE on PostgreSQL; SQLite's write transaction is exclusive already), so two admins
    demoting each other at once cannot both pass: the second sees the first's change."""
    u = s.users
    q = (
        select(u.c.name)
        .where(u.c.role == admin_role, u.c.disabled_at.is_(None))
        .with_for_update()
    )
    admins = set(conn.execute(q).scalars())
    if admins == {name}:
        raise LastAdmin(
            f"cannot {what} user '{name}': it is the last enabled {admin_role}, and the server "
            f"would be left with nobody who can manage its users; make another user "
            f"{admin_role} first (`phloem users set-role NAME {admin_role}`)",
            user=name,
        )


@resilient
class AccountsStore:
    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    # -- users ---------------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        role: str,
        password_hash: str,
        now: float,
        *,
        replace: bool = False,
        admin_role: str | None = None,
    ) -> bool:
        """Add a user; with ``replace`` an existing one gets the new role and password.
        Returns False when the name is taken (and not replaced). With ``admin_role``, replacing
        the last enabled user of that role with another role raises :class:`LastAdmin`."""
        u = s.users
        with write_transaction(self.engine) as conn:
            found = conn.execute(select(u.c.name).where(u.c.name == name)).first()
            if found is not None:
                if not replace:
                    return False
                if admin_role is not None and role != admin_role:
                    _keep_an_admin(conn, name, admin_role, "demote")
                conn.execute(
                    u.update()
                    .where(u.c.name == name)
                    .values(role=role, password_hash=password_hash, updated_at=now)
                )
                return True
            conn.execute(
                u.insert().values(
                    name=name,
                    role=role,
                    password_hash=password_hash,
                    created_at=now,
                    updated_at=now,
                )
            )
        return True

    def add_first_user(self, name: str, role: str, password_hash: str, now: float) -> bool:
        """Add ``name`` only if there is no user at all (one of several servers starting at
        once wins); True if it was added."""
        u = s.users
        try:
            with write_transaction(self.engine) as conn:
                if conn.execute(select(func.count()).select_from(u)).scalar_one():
                    return False
                conn.execute(
                    u.insert().values(
                        name=name,
                        role=role,
                        password_hash=password_hash,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    def user(self, name: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(s.users).where(s.users.c.name == name)).first()
        return None if r is None else _user(r)

    def users(self) -> list[UserRecord]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(s.users).order_by(s.users.c.name))]

    def remove_user(self, name: str, *, admin_role: str | None = None) -> bool:
        """Remove a user with its tokens and sessions; False if there was none. With
        ``admin_role``, removing the last enabled user of that role raises :class:`LastAdmin`."""
        with write_transaction(self.engine) as conn:
            if admin_role is not None:
                _keep_an_admin(conn, name, admin_role, "remove")
            gone = conn.execute(delete(s.users).where(s.users.c.name == name)).rowcount
            conn.execute(delete(s.api_tokens).where(s.api_tokens.c.username == name))
            conn.execute(delete(s.sessions).where(s.sessions.c.username == name))
        return bool(gone)

    def update_user(
        self,
        name: str,
        now: float,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        admin_role: str | None = None,
    ) -> bool:
        """Change a user's role and/or disable (or enable) it; disabling ends its sessions
        (its tokens stay, refused while it is disabled). False if there is no such user.
        With ``admin_role``, demoting or disabling the last enabled user of that role raises
        :class:`LastAdmin`."""
        u = s.users
        values: dict[str, object] = {"updated_at": now}
        if role is not None:
            values["role"] = role
        with write_transaction(self.engine) as conn:
            if admin_role is not None and (disabled or (role is not None and role != admin_role)):
                _keep_an_admin(conn, name, admin_role, "disable" if disabled else "demote")
            if disabled is not None:
                found = conn.execute(select(u.c.disabled_at).where(u.c.name == name)).first()
                if found is None:
                    return False
                if disabled and found.disabled_at is None:
                    values["disabled_at"] = now
                elif not disabled:
                    values["disabled_at"] = None
            done = conn.execute(u.update().where(u.c.name == name).values(**values)).rowcount
            if disabled:
                conn.execute(delete(s.sessions).where(s.sessions.c.username == name))
        return bool(done)

    def set_password(self, name: str, password_hash: str, now: float) -> bool:
        """Change a password; the user's sessions end (tokens stay)."""
        u = s.users
        with write_transaction(self.engine) as conn:
            done = conn.execute(
                u.update()
                .where(u.c.name == name)
                .values(password_hash=password_hash, updated_at=now)
            ).rowcount
            conn.execute(delete(s.sessions).where(s.sessions.c.username == name))
        return bool(done)

    # -- tokens --------------------------------------------------------------------------------

    def add_token(
        self, name: str, user: str, token_hash: str, now: float, expires_at: float | None
    ) -> bool:
        """Record a new token; False if a token that is still valid has that name (a revoked
        or expired one is replaced)."""
        t = s.api_tokens
        with write_transaction(self.engine) as conn:
            old = conn.execute(select(t).where(t.c.name == name)).first()
            if old is not None:
                live = old.revoked_at is None and (old.expires_at is None or old.expires_at > now)
                if live:
                    return False
                conn.execute(delete(t).where(t.c.name == name))
            conn.execute(
                t.insert().values(
                    name=name,
                    username=user,
                    token_hash=token_hash,
                    created_at=now,
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
        return True

    def token_by_hash(self, token_hash: str) -> tuple[TokenRecord, UserRecord] | None:
        """The token with this hash and its user (whatever its state: the caller judges)."""
        t, u = s.api_tokens, s.users
        q = (
            select(
                t,
                u.c.role,
                u.c.password_hash,
                u.c.created_at.label("user_created_at"),
                u.c.disabled_at,
            )
            .join(u, u.c.name == t.c.username)
            .where(t.c.token_hash == token_hash)
        )
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        if r is None:
            return None
        return _token(r), UserRecord(
            r.username, r.role, r.password_hash, r.user_created_at, r.disabled_at
        )

    def tokens(self, user: str | None = None) -> list[TokenRecord]:
        t = s.api_tokens
        q = select(t).order_by(t.c.name)
        if user is not None:
            q = q.where(t.c.username == user)
        with self.engine.connect() as conn:
            return [_token(r) for r in conn.execute(q)]

    def revoke_token(self, name: str, now: float) -> bool:
        """Revoke a token at once; False if no unrevoked token has that name."""
        t = s.api_tokens
        with write_transaction(self.engine) as conn:
            done = conn.execute(
                t.update().where(t.c.name == name, t.c.revoked_at.is_(None)).values(revoked_at=now)
            ).rowcount
        return bool(done)

    # -- sessions ------------------------------------------------------------------------------

    def add_session(self, id_hash: str, user: str, now: float, expires_at: float) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(delete(s.sessions).where(s.sessions.c.expires_at < now))
            conn.execute(
                s.sessions.insert().values(
                    id_hash=id_hash, username=user, created_at=now, expires_at=expires_at
                )
            )

    def session(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        ss, u = s.sessions, s.users
        q = (
            select(
                ss,
                u.c.role,
                u.c.password_hash,
                u.c.created_at.label("user_created_at"),
                u.c.disabled_at,
            )
            .join(u, u.c.name == ss.c.username)
            .where(ss.c.id_hash == id_hash)
        )
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        if r is None:
            return None
        return (
            SessionRecord(r.username, r.created_at, r.expires_at),
            UserRecord(r.username, r.role, r.password_hash, r.user_created_at, r.disabled_at),
        )

    def end_session(self, id_hash: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(delete(s.sessions).where(s.sessions.c.id_hash == id_hash))

    # -- failed logins -------------------------------------------------------------------------

    def login_failed(self, scopes: Iterable[str], now: float, keep: float) -> None:
        """Record a failed login under each scope; failures older than ``keep`` seconds go."""
        f = s.login_failures
        with write_transaction(self.engine) as conn:
            conn.execute(delete(f).where(f.c.at < now - keep))
            conn.execute(f.insert(), [{"scope": sc, "at": now} for sc in scopes])

    def login_failures(self, scopes: Iterable[str], since: float) -> dict[str, int]:
        """How many failed logins each scope had since ``since``."""
        f = s.login_failures
        wanted = list(scopes)
        q = (
            select(f.c.scope, func.count())
            .where(f.c.scope.in_(wanted), f.c.at >= since)
            .group_by(f.c.scope)
        )
        with self.engine.connect() as conn:
            found = {sc: int(n) for sc, n in conn.execute(q)}
        return {sc: found.get(sc, 0) for sc in wanted}

    def forget_login_failures(self, scopes: Iterable[str]) -> None:
        f = s.login_failures
        with write_transaction(self.engine) as conn:
            conn.execute(delete(f).where(f.c.scope.in_(list(scopes))))


__all__ = ["AccountsStore", "SessionRecord", "TokenRecord", "UserRecord"]
