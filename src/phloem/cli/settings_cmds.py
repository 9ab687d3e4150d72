"""``phloem variables ...`` and ``phloem connections ...``.

Connections are shown with their password as ``***``: no command prints a stored secret.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phloem.cli.common import application
from phloem.cli.common import errors as _errors

if TYPE_CHECKING:
    from phloem.store.port import Variables

variables_app = typer.Typer(help="Set and read variables that tasks read.", no_args_is_help=True)
connections_app = typer.Typer(
    help="Manage connections (URIs with secrets, encrypted in the store).", no_args_is_help=True
)

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _settings() -> Variables:
    return application().variables


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- variables -----------------------------------------------------------------------------------


@variables_app.command("set")
def variables_set(
    key: Annotated[str, typer.Argument(help="Variable key.")],
    value: Annotated[str, typer.Argument(help="Its value (a string, or JSON with --json).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Parse VALUE as JSON (number, list, object...).")
    ] = False,
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="What it is for.")
    ] = None,
) -> None:
    """Create or replace a variable."""
    from phloem.errors import PhloemError

    with _errors():
        if as_json:
            try:
                parsed: Any = json.loads(value)
            except ValueError as exc:
                raise PhloemError(f"--json: VALUE is not valid JSON ({exc})") from None
        else:
            parsed = value
        _settings().set_variable(key, parsed, description)
    typer.echo(f"variable {key} set")


@variables_app.command("get")
def variables_get(
    key: Annotated[str, typer.Argument(help="Variable key.")],
    as_json: JsonOut = False,
) -> None:
    """Print a variable's value (a string as is, anything else as JSON)."""
    with _errors():
        value = _settings().get_variable(key)
    if isinstance(value, str) and not as_json:
        typer.echo(value)
    else:
        typer.echo(json.dumps(value))


@variables_app.command("list")
def variables_list(as_json: JsonOut = False) -> None:
    """All variables, by key."""
    with _errors():
        found = _settings().list_variables()
    if as_json:
        _echo_json(
            [
                {
                    "key": v.key,
                    "value": v.value,
                    "description": v.description,
                    "updated_at": _when(v.updated_at),
                }
                for v in found
            ]
        )
        return
    if not found:
        typer.echo("no variables")
        return
    rows = [(v.key, _short(json.dumps(v.value)), v.description or "") for v in found]
    _table(rows, ("key", "value", "description"))


@variables_app.command("delete")
def variables_delete(key: Annotated[str, typer.Argument(help="Variable key.")]) -> None:
    """Delete a variable."""
    from phloem.errors import VariableNotFound

    with _errors():
        if not _settings().delete_variable(key):
            raise VariableNotFound(f"variable '{key}' is not set; nothing to delete")
    typer.echo(f"variable {key} deleted")


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# -- connections ---------------------------------------------------------------------------------


@connections_app.command("add")
def connections_add(
    name: Annotated[str, typer.Argument(help="Connection name, e.g. warehouse.")],
    uri: Annotated[
        str,
        typer.Argument(
            help="scheme://login:password@host:port/schema?key=value; '-' reads it from stdin "
            "(keeps the password out of the shell history)."
        ),
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a connection of that name.")
    ] = False,
) -> None:
    """Add a connection; its URI is encrypted before it is stored."""
    if uri == "-":
        uri = sys.stdin.readline().strip()
    with _errors():
        replaced = _settings().add_connection(name, uri, replace=replace)
    typer.echo(f"connection {name} {'replaced' if replaced else 'added'}")


@connections_app.command("get")
def connections_get(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    as_json: JsonOut = False,
) -> None:
    """Show a connection's parts; the password shows as ***."""
    from phloem.variables import Connection

    with _errors():
        conn = Connection.from_uri(name, _settings().get_connection_uri(name))
    shown = conn.public_dict()
    if as_json:
        _echo_json(shown)
        return
    for key, value in shown.items():
        if key == "extras":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or None
        typer.echo(f"{key + ':':<11}{'-' if value is None else value}")


@connections_app.command("list")
def connections_list(
    as_json: JsonOut = False,
    show_uri: Annotated[
        bool,
        typer.Option("--uri", help="Decrypt to show each URI (password as ***)."),
    ] = False,
) -> None:
    """All connections, by name."""
    from phloem.variables import Connection

    with _errors():
        settings = _settings()
        found = settings.list_connections()
        uris = {}
        if show_uri:
            for c in found:
                uris[c.name] = Connection.from_uri(
                    c.name, settings.get_connection_uri(c.name)
                ).masked_uri
    if as_json:
        rows: list[dict[str, Any]] = []
        for c in found:
            row = {"name": c.name, "updated_at": _when(c.updated_at)}
            if show_uri:
                row["uri"] = uris[c.name]
            rows.append(row)
        _echo_json(rows)
        return
    if not found:
        typer.echo("no connections")
        return
    if show_uri:
        _table(
            [(c.name, _when(c.updated_at), uris[c.name]) for c in found], ("name", "updated", "uri")
        )
    else:
        _table([(c.name, _when(c.updated_at)) for c in found], ("name", "updated"))


@connections_app.command("delete")
def connections_delete(name: Annotated[str, typer.Argument(help="Connection name.")]) -> None:
    """Delete a connection."""
    from phloem.errors import ConnectionNotFound

    with _errors():
        if not _settings().delete_connection(name):
            raise ConnectionNotFound(f"connection '{name}' does not exist; nothing to delete")
    typer.echo(f"connection {name} deleted")
