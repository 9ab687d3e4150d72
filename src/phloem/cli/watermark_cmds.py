"""``phloem watermarks list | show | set | reset``: the watermarks of incremental tasks
(``phloem.watermark``), read and, when data must be re-processed, moved by hand."""

from __future__ import annotations

import getpass
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from phloem.cli.common import application, errors, fail, print_json

watermarks_app = typer.Typer(
    help="Read and move the watermarks of incremental tasks.", no_args_is_help=True
)

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _shown(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a container: still say it was by hand
        return "cli"


def _echo_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@watermarks_app.command("list")
def watermarks_list(as_json: JsonOut = False) -> None:
    """Every watermark: its value, type, and the run that last moved it."""
    with errors():
        found = application().store.watermarks.all()
    if as_json:
        print_json(
            [
                {
                    "name": w.name,
                    "kind": w.kind,
                    "value": _shown(w.value),
                    "version": w.version,
                    "updated_at": _when(w.updated_at),
                    "run_id": w.run_id,
                    "task_id": w.task_id,
                }
                for w in found
            ]
        )
        return
    if not found:
        typer.echo("no watermarks")
        return
    rows = [
        (w.name, _shown(w.value), w.kind, _when(w.updated_at), w.run_id or "by hand")
        for w in found
    ]
    _echo_table(rows, ("NAME", "VALUE", "TYPE", "UPDATED", "BY"))


@watermarks_app.command("show")
def watermarks_show(
    name: Annotated[str, typer.Argument(help="Watermark name.")],
    last: Annotated[int, typer.Option("--last", help="How many changes to show.")] = 20,
    as_json: JsonOut = False,
) -> None:
    """A watermark's value and its history (moves, and advances that were not applied)."""
    with errors():
        store = application().store
        current = store.watermarks.get(name)
        changes = store.watermarks.history(name, last)
    if current is None and not changes:
        fail(f"no watermark named {name!r}; `phloem watermarks list` shows them")
    if as_json:
        print_json(
            {
                "name": name,
                "value": None if current is None else _shown(current.value),
                "kind": None if current is None else current.kind,
                "history": [
                    {
                        "at": _when(c.at),
                        "outcome": c.outcome,
                        "value": c.value,
                        "previous": c.previous,
                        "note": c.note,
                        "run_id": c.run_id,
                        "task_id": c.task_id,
                    }
                    for c in changes
                ],
            }
        )
        return
    shown = "none (tasks read their default)" if current is None else _shown(current.value)
    typer.echo(f"{name} = {shown}")
    rows = [
        (
            _when(c.at), c.outcome, c.previous or "-", c.value or "-",
            c.run_id or "-", c.note or "",
        )
        for c in changes
    ]
    if rows:
        _echo_table(rows, ("AT", "OUTCOME", "FROM", "TO", "RUN", "NOTE"))


@watermarks_app.command("set")
def watermarks_set(
    name: Annotated[str, typer.Argument(help="Watermark name.")],
    value: Annotated[str, typer.Argument(help="New value (number, ISO date/time or text).")],
    kind: Annotated[
        str | None,
        typer.Option("--type", help="datetime, date, int, float or str (default: guessed)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Allow moving it back.")] = False,
) -> None:
    """Set a watermark (forward; backwards only with --force, to re-process data)."""
    from phloem.watermark_values import parse

    with errors():
        k, text = parse(value, kind, name=name)
        rec = application().store.watermarks.set(
            name, k, text, force=force, now=time.time(), note=_by()
        )
    typer.echo(f"watermark {name} = {_shown(rec.value)} ({rec.kind})")


@watermarks_app.command("reset")
def watermarks_reset(name: Annotated[str, typer.Argument(help="Watermark name.")]) -> None:
    """Forget a watermark's value: its tasks read their default again."""
    with errors():
        gone = application().store.watermarks.reset(name, now=time.time(), note=_by())
    if not gone:
        fail(f"no watermark named {name!r}; `phloem watermarks list` shows them")
    typer.echo(f"watermark {name} reset")
