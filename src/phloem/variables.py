"""``phloem.variable()`` and ``phloem.connection()``: configuration and secrets for tasks.

Inside a task they read the store of the run (``phloem.context().store_url``); elsewhere, the
configured store (``PHLOEM_DB_URL``, or the SQLite file under ``PHLOEM_HOME``). The store is
opened once per process and URL.

A connection's password (and its whole URI) is masked in the running attempt's log and error
from the moment ``phloem.connection()`` returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from phloem.errors import PhloemError
from phloem.secrets import MASK, register
from phloem.store.per_process import close_task_stores, task_store
from phloem.store.settings_store import MISSING

if TYPE_CHECKING:
    from phloem.store.port import Store, Variables

__all__ = ["MISSING", "Connection", "connection", "run_store", "variable"]

#: Query parameters of a URI whose values are secrets too (``?token=...``).
_SECRET_EXTRAS = ("password", "passwd", "secret", "token", "key", "credential")


@dataclass(frozen=True, slots=True)
class Connection:
    """A connection's URI, split into its parts. ``repr`` masks the password.

    ``postgresql+psycopg://ana:pw@db:5432/dw?sslmode=require`` gives conn_type
    ``postgresql+psycopg``, host ``db``, port 5432, login ``ana``, password ``pw``, schema
    ``dw`` and extras ``{"sslmode": "require"}``.
    """

    name: str
    conn_type: str
    host: str | None
    port: int | None
    login: str | None
    password: str | None
    schema: str | None
    extras: dict[str, str]
    uri: str = field(repr=False)

    @property
    def scheme(self) -> str:
        return self.conn_type

    @property
    def secrets(self) -> tuple[str, ...]:
        """The strings to mask: password, secret-looking extras and, if it holds either, the
        whole URI."""
        found = [v for k, v in self.extras.items() if _is_secret_key(k) and v]
        if self.password:
            found.insert(0, self.password)
        return (*found, self.uri) if found else ()

    @property
    def masked_uri(self) -> str:
        """The URI with its password (and secret-looking extras) replaced by ``***``."""
        parts = urlsplit(self.uri)
        netloc = parts.netloc
        if self.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            login = userinfo.split(":", 1)[0]
            netloc = f"{login}:{MASK}@{hostport}"
        query = "&".join(
            f"{k}={MASK if _is_secret_key(k) else quote(v, safe='')}"
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        )
        return parts._replace(netloc=netloc, query=query).geturl()

    def public_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values, the password shown as ``***``."""
        return {
            "name": self.name,
            "conn_type": self.conn_type,
            "host": self.host,
            "port": self.port,
            "login": self.login,
            "password": None if self.password is None else MASK,
            "schema": self.schema,
            "extras": {k: MASK if _is_secret_key(k) else v for k, v in self.extras.items()},
            "uri": self.masked_uri,
        }

    def __repr__(self) -> str:
        d = self.public_dict()
        fields_ = ", ".join(f"{k}={d[k]!r}" for k in d if k != "uri")
        return f"Connection({fields_})"

    __str__ = __repr__

    @classmethod
    def from_uri(cls, name: str, uri: str) -> Connection:
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError:  # never show the URI: it may hold a password
            raise PhloemError(
                f"connection '{name}' has a URI that cannot be parsed (bad port or host); "
                f"add it again with `phloem connections add {name} URI --replace`",
                connection=name,
            ) from None
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            name=name,
            conn_type=parts.scheme,
            host=unquote(parts.hostname) if parts.hostname else None,
            port=port,
            login=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            schema=unquote(path) or None,
            extras=dict(parse_qsl(parts.query, keep_blank_values=True)),
            uri=uri,
        )


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(word in k for word in _SECRET_EXTRAS)


def variable(key: str, default: Any = MISSING) -> Any:
    """The value of variable ``key`` (JSON: str, number, bool, list, dict or None).

    Without a default, a key that is not set raises VariableNotFound, which says how to set it.
    """
    return settings_store().get_variable(key, default)


def connection(name: str) -> Connection:
    """The connection ``name``, decrypted; its secrets are masked in this attempt's log."""
    uri = settings_store().get_connection_uri(name)
    conn = Connection.from_uri(name, uri)
    register(*conn.secrets)
    return conn


# -- the store, once per process and URL ---------------------------------------------------------


def settings_store(url: str | None = None) -> Variables:
    """Variables and connections of the store at ``url`` (default: the run's, else the
    configured one)."""
    return task_store("variables and connections", url).variables()


def run_store(what: str) -> Store:
    """The store of the running task's run, opened once per process (``what`` names the
    feature in the error raised when the run's store is private to its driver)."""
    return task_store(what)


def close_stores() -> None:
    """Close the stores this process opened for tasks."""
    close_task_stores()
