"""What every command shares: the application it works in, one-line errors, JSON output.

Sub-command modules import this, never ``cli.main``, so ``main`` can import them all without
an import cycle. The parts that need no typer live in ``plain`` (the quick ``run`` uses them
without importing typer) and are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from phloem.cli.plain import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    application,
    command_scope,
    errors,
    fail,
    opened_clients,
    parse_params,
    print_json,
)

if TYPE_CHECKING:
    from phloem.cli.sources import Source

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "Group",
    "ServerOpt",
    "application",
    "errors",
    "fail",
    "parse_params",
    "print_json",
    "source",
]


class Group(TyperGroup):
    """The root command: whatever a command raises meets ``errors()`` here, in one place, and
    the application the command used is closed when it ends."""

    def invoke(self, ctx: Any) -> Any:
        with command_scope():
            return super().invoke(ctx)


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


#: ``--map-index N`` of the commands that read one task instance
MapIndexOpt = Annotated[
    int | None,
    typer.Option("--map-index", "-i", min=0, help="Instance of a mapped task."),
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
    opened = opened_clients()
    if opened is not None:
        opened.append(client)
    return RemoteSource(client)
