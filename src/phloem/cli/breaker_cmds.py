"""``phloem breakers list | reset NAME``: the circuit breakers shared through the store."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from phloem.cli.common import application, errors, fail, print_json

breakers_app = typer.Typer(help="Show and reset circuit breakers.", no_args_is_help=True)


@breakers_app.command("list")
def breakers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the breakers as JSON.")] = False,
) -> None:
    """Every breaker that has seen a failure, its phase and recent failures."""
    with errors():
        rows = application().store.breakers.list()
    if as_json:
        print_json(
            [
                {
                    "name": r.name,
                    "state": str(r.state.phase),
                    "recent_failures": len(r.state.failures),
                    "opened_at": r.state.opened_at,
                    "last_error": r.state.last_error,
                    "updated_at": r.updated_at,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        typer.echo("no circuit breakers have been used")
        return
    from rich.table import Table

    from phloem.cli.tables import console

    now = time.time()
    table = Table(show_header=True, header_style="bold")
    for col in ("breaker", "state", "recent failures", "opened", "last error"):
        table.add_column(col)
    for r in rows:
        opened = f"{now - r.state.opened_at:.0f} s ago" if r.state.opened_at else "-"
        table.add_row(
            r.name,
            str(r.state.phase),
            str(len(r.state.failures)),
            opened,
            r.state.last_error or "-",
        )
    console().print(table)


@breakers_app.command("reset")
def breakers_reset(name: Annotated[str, typer.Argument(help="The breaker's name.")]) -> None:
    """Close a breaker and forget its failures (calls go through again at once)."""
    with errors():
        found = application().store.breakers.reset(name)
    if not found:
        fail(f"no circuit breaker named '{name}' (see `phloem breakers list`)", code=1)
    typer.echo(f"circuit breaker '{name}' is closed")


__all__ = ["breakers_app"]
