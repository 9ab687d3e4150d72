"""Variables and connections: configuration that tasks read at run time, kept in the store.

A variable is a JSON value under a key. A connection is a URI under a name, encrypted with the
configured key before it is written, so the database never holds it in plain text.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection as DbConnection
from sqlalchemy import Table, delete, select

from phloem.errors import ConnectionNotFound, PhloemError, VariableNotFound
from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient

if TYPE_CHECKING:
    from phloem.secrets import Cipher


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: The default of "no default": a missing key is an error.
MISSING: Any = _Missing()

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


@dataclass(frozen=True, slots=True)
class VariableRecord:
    key: str
    value: Any
    description: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """A stored connection, still encrypted (listing never decrypts)."""

    name: str
    updated_at: float


@resilient
class SettingsStore:
    """Variables and connections of one :class:`SqlStore`.

    ``cipher`` defaults to the configured key, looked up only when a connection is added or
    read (adding one creates the key file if there is no key yet). Like the run store, every
    call waits out a locked or unreachable database, and writes take SQLite's write lock up
    front, so a scheduler writing at the same time delays them instead of failing them.
    """

    def __init__(
        self,
        store: Database,
        cipher: Cipher | Callable[[bool], Cipher] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._cipher = cipher
        self._now = now

    def _get_cipher(self, create: bool) -> Cipher:
        if self._cipher is None:
            from phloem.secrets import configured_cipher

            return configured_cipher(create=create)
        if callable(self._cipher):
            return self._cipher(create)
        return self._cipher

    @property
    def outage_timeout(self) -> float:
        """How long calls wait out a database outage: the store's setting."""
        return self.store.outage_timeout

    @contextmanager
    def _write(self) -> Iterator[DbConnection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite: no failed upgrade from a read)."""
        with write_transaction(self.store.engine) as conn:
            yield conn

    # -- variables -------------------------------------------------------------------------------

    def set_variable(self, key: str, value: Any, description: str | None = None) -> None:
        """Create or replace a variable; ``value`` must be JSON-serializable."""
        _check_name(key, "variable key")
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise PhloemError(
                f"variable '{key}' must be JSON-serializable (str, number, bool, None, list, "
                f"dict): {exc}"
            ) from None
        row = {"value": text, "description": description, "updated_at": self._now()}
        with self._write() as conn:
            _upsert(conn, s.variables, s.variables.c.key, key, row)

    def get_variable(self, key: str, default: Any = MISSING) -> Any:
        """The variable's value; ``default`` if it is not set, or VariableNotFound."""
        v = s.variables
        with self.store.engine.connect() as conn:
            text = conn.execute(select(v.c.value).where(v.c.key == key)).scalar()
        if text is None:
            if default is not MISSING:
                return default
            raise VariableNotFound(
                f"variable '{key}' is not set{self._suggest(v.c.key, key)}; set it with "
                f"`phloem variables set {key} VALUE`, or give a default: "
                f'phloem.variable("{key}", default=...)',
                variable=key,
            )
        return json.loads(text)

    def list_variables(self) -> list[VariableRecord]:
        v = s.variables
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(v).order_by(v.c.key)).mappings().all()
        return [
            VariableRecord(r["key"], json.loads(r["value"]), r["description"], r["updated_at"])
            for r in rows
        ]

    def delete_variable(self, key: str) -> bool:
        """Remove a variable; False if there was none."""
        with self._write() as conn:
            n = conn.execute(delete(s.variables).where(s.variables.c.key == key)).rowcount
        return bool(n)

    # -- connections -----------------------------------------------------------------------------

    def add_connection(self, name: str, uri: str, *, replace: bool = False) -> bool:
        """Store ``uri`` encrypted under ``name``; True if it replaced an existing one.

        Without ``replace`` an existing connection of that name is an error.
        """
        _check_name(name, "connection name")
        if not isinstance(uri, str) or not _SCHEME.match(uri):
            # never echo the URI: it may hold a password
            raise PhloemError(
                f"connection '{name}' needs a URI of the form scheme://[login[:password]@]host"
                "[:port][/schema][?key=value...], e.g. postgresql+psycopg://user:pw@db:5432/dw"
            )
        secret = self._get_cipher(True).encrypt(uri)
        c = s.connections
        row = {"secret": secret, "updated_at": self._now()}
        with self._write() as conn:
            exists = conn.execute(select(c.c.name).where(c.c.name == name)).first() is not None
            if exists and not replace:
                raise PhloemError(
                    f"connection '{name}' exists already; replace it with "
                    f"`phloem connections add {name} URI --replace`, or delete it first",
                    connection=name,
                )
            _upsert(conn, c, c.c.name, name, row)
        return exists

    def get_connection_uri(self, name: str) -> str:
        """The decrypted URI of a connection, or ConnectionNotFound."""
        c = s.connections
        with self.store.engine.connect() as conn:
            token = conn.execute(select(c.c.secret).where(c.c.name == name)).scalar()
        if token is None:
            raise ConnectionNotFound(
                f"connection '{name}' does not exist{self._suggest(c.c.name, name)}; add it "
                f"with `phloem connections add {name} URI`",
                connection=name,
            )
        return self._get_cipher(False).decrypt(token, f"connection '{name}'")

    def list_connections(self) -> list[ConnectionRecord]:
        c = s.connections
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(c.c.name, c.c.updated_at).order_by(c.c.name)).all()
        return [ConnectionRecord(name, at) for name, at in rows]

    def delete_connection(self, name: str) -> bool:
        """Remove a connection; False if there was none."""
        with self._write() as conn:
            n = conn.execute(delete(s.connections).where(s.connections.c.name == name)).rowcount
        return bool(n)

    # -- helpers ---------------------------------------------------------------------------------

    def _suggest(self, column: Any, wanted: str) -> str:
        with self.store.engine.connect() as conn:
            known = list(conn.execute(select(column)).scalars())
        close = difflib.get_close_matches(wanted, known, n=1)
        return f" (did you mean '{close[0]}'?)" if close else ""


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 250:
        raise PhloemError(
            f"{what} {name!r} is not valid: use letters, digits, '_', '.' and '-' "
            "(at most 250 characters, not starting with '.' or '-')"
        )


def _upsert(conn: DbConnection, table: Table, key_col: Any, key: str, row: dict[str, Any]) -> None:
    """Insert or update one row, atomically on SQLite and PostgreSQL."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values({key_col.name: key, **row})
    conn.execute(stmt.on_conflict_do_update(index_elements=[key_col], set_=row))
