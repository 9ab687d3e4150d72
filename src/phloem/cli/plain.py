"""What every command shares that needs no typer: the application it works in, one-line errors,
plain output.

``phloem run`` on its quick path (see ``quick``) uses only this, so a run does not import typer
(and the pydantic it validates arguments with); ``common`` re-exports it for the other commands.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from phloem.app import Phloem

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: ANSI style codes, which ``echo`` leaves out where output is not a terminal (as click does)
_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


def echo(message: str = "", err: bool = False) -> None:
    """``message`` and a newline on stdout (stderr with ``err``), flushed; without ANSI style
    codes unless the stream is a terminal. What ``typer.echo`` prints for a ``str``, without
    importing typer."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    text = message + "\n"
    try:
        tty = stream.isatty()
    except Exception:
        tty = False
    if not tty and not type(stream).__module__.startswith("ipykernel."):
        text = _ANSI.sub("", text)
    stream.write(text)
    stream.flush()


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``message`` as one ``error:`` line on stderr and end the command with ``code``."""
    text = " ".join(ln.strip() for ln in message.strip().splitlines() if ln.strip())
    echo(f"error: {text}", err=True)
    raise SystemExit(code)


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


@contextmanager
def command_scope() -> Iterator[None]:
    """Around one command: whatever it raises meets ``errors()``, and the application and the
    server clients it opened are closed when it ends."""
    token = _current.set(None)
    opened = _clients.set([])
    try:
        with errors():
            yield
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


def opened_clients() -> list[Any] | None:
    """The list the command's server clients go to (closed when it ends), if in a command."""
    return _clients.get()


def print_json(value: Any) -> None:
    echo(json.dumps(value, indent=2, default=str))


def parse_params(items: list[str]) -> dict[str, str]:
    from phloem.errors import ParamError

    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = value
    return params
