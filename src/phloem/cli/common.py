"""What every command shares: the application it works in, one-line errors, JSON output.

Sub-command modules import this, never ``cli.main``, so ``main`` can import them all without
an import cycle.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from phloem.app import Phloem
    from phloem.cli.sources import Source

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    text = " ".join(ln.strip() for ln in message.strip().splitlines() if ln.strip())
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """phloem's own errors, a store that cannot be reached, and arguments phloem cannot use
    become one ``error:`` line and exit 2; anything else is a bug and keeps its traceback."""
    from phloem.errors import PhloemError

    try:
        yield
    except PhloemError as exc:
        fail(str(exc))
    except UnicodeEncodeError as exc:
        if "surrogate" not in str(exc.reason):
            raise
        # an argument that was not UTF-8: Python keeps its bytes as lone surrogates
        raw = _bytes(exc.object[exc.start : exc.end])
        fail(
            f"{_shown(exc.object)} is not valid UTF-8 (bytes {raw!r}); run ids, task names "
            "and values must be UTF-8 text"
        )
    except Exception as exc:
        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
            from phloem.store.opening import sqlite_trouble

            known = sqlite_trouble(_db_url(), exc)
            if known is not None:
                fail(str(known))
            orig = getattr(exc, "orig", None) or exc
            fail(f"the store's database failed: {type(orig).__name__}: {orig}")
        raise


def _db_url() -> str:
    """The database URL the command used (the settings, read again on this error path)."""
    from phloem.config import Settings

    try:
        return Settings.from_env().db_url
    except Exception:  # the settings themselves are broken: that error was reported already
        return ""


def _bytes(text: str) -> bytes:
    """The bytes a command-line argument had (Python keeps undecodable ones as surrogates)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _shown(text: str) -> str:
    """``text`` for an error line: undecodable bytes as \\x escapes, and not too long."""
    shown = _bytes(text).decode("utf-8", "backslashreplace")
    return "'" + (shown if len(shown) <= 80 else shown[:77] + "...") + "'"


#: the application of the command being run (one per invocation; see ``application``)
_current: ContextVar[Phloem | None] = ContextVar("phloem_cli_application", default=None)
#: the server clients the command opened, closed when it ends
_clients: ContextVar[list[Any] | None] = ContextVar("phloem_cli_clients", default=None)


class Group(TyperGroup):
    """The root command: whatever a command raises meets ``errors()`` here, in one place, and
    the application the command used is closed when it ends."""

    def invoke(self, ctx: Any) -> Any:
        token = _current.set(None)
        opened = _clients.set([])
        try:
            with errors():
                return super().invoke(ctx)
        finally:
            app = _current.get()
            _current.reset(token)
            if app is not None:
                app.close()
            for client in _clients.get() or ():
                client.close()
            _clients.reset(opened)


def application() -> Phloem:
    """The application of this command: settings read from the environment once per
    invocation, its store opened on first use and closed when the command ends."""
    app = _current.get()
    if app is None:
        from phloem.app import Phloem
        from phloem.config import Settings

        app = Phloem(Settings.from_env())
        _current.set(app)
    return app


#: ``--server URL`` of the read and steer commands
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help="Ask this phloem server instead of the local store (default: $PHLOEM_SERVER_URL; "
        "the token comes from $PHLOEM_TOKEN).",
    ),
]


def source(server: str | None = None) -> Source:
    """Where a read or steer command gets its data: the server ``--server`` names (else the
    settings' ``PHLOEM_SERVER_URL``), with the settings' token; else the local store."""
    from phloem.cli.sources import LocalSource, RemoteSource

    app = application()
    url = server or app.settings.server_url
    if not url:
        return LocalSource(app)
    from phloem.client import Client

    client = Client(url, app.settings.token)
    opened = _clients.get()
    if opened is not None:
        opened.append(client)
    return RemoteSource(client)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def parse_params(items: list[str]) -> dict[str, str]:
    from phloem.errors import ParamError

    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = value
    return params
