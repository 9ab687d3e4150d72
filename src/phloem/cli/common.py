"""What every command shares: the application it works in, one-line errors, JSON output.

Sub-command modules import this, never ``cli.main``, so ``main`` can import them all without
an import cycle.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from phloem.app import Phloem

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    text = " ".join(ln.strip() for ln in message.strip().splitlines() if ln.strip())
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """phloem's own errors, and a store that cannot be reached, become one line and exit 2."""
    from phloem.errors import PhloemError

    try:
        yield
    except PhloemError as exc:
        fail(str(exc))
    except Exception as exc:
        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
            orig = getattr(exc, "orig", None) or exc
            fail(f"the store's database failed: {type(orig).__name__}: {orig}")
        raise


def application() -> Phloem:
    """The application of this command: settings read from the environment once per
    invocation, its store opened on first use and closed when the command ends."""
    import click

    from phloem.app import Phloem
    from phloem.config import Settings

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return Phloem(Settings.from_env())
    root = ctx.find_root()
    if not isinstance(root.obj, Phloem):
        root.obj = Phloem(Settings.from_env())
        root.call_on_close(root.obj.close)
    return root.obj


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
