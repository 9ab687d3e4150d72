"""Rich tables for people; rich is imported here only, when something is printed.

Where output is not a terminal, the end of a run (``plain_summary``) is written without rich
when rich would print it as plain text anyway (no markup, no colour, nothing to wrap): a
one-task run then does not import rich.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from phloem.cli.views import Row, failures, human_duration, run_end_rows, summary_rows
from phloem.records import TI, RunRecord
from phloem.runner.usage import human_bytes

if TYPE_CHECKING:
    from rich.console import Console

    from phloem.store.read_types import AttemptRow

#: At most this many failed instances are listed under a table; the rest are counted.
MAX_FAILURES_SHOWN = 10

_STATE_STYLE = {
    "success": "green",
    "cached": "green",
    "failed": "red",
    "upstream_failed": "red",
    "up_for_retry": "yellow",
    "running": "cyan",
    "queued": "cyan",
    "skipped": "dim",
}


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out.width = 200  # a pipe or a log file: wrap as little as possible
    return out


def _styled(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def summary_table(rows: Sequence[Row], title: str | None = None):  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("task", overflow="fold")
    table.add_column("state", overflow="fold")
    table.add_column("tries", justify="right")
    table.add_column("duration", justify="right")
    costs = any(r.cpu_seconds is not None or r.peak_rss is not None for r in rows)
    gpus = any(r.gpu_seconds for r in rows)  # only where an attempt held a GPU (on Ray)
    if costs:
        table.add_column("cpu", justify="right")
        table.add_column("peak memory", justify="right")
    if gpus:
        table.add_column("gpu reserved", justify="right")
    for r in rows:
        name = f"{r.task} (x{r.mapped})" if r.mapped is not None else r.task
        state = r.state if r.mapped is not None else _styled(r.state)
        cells = [name, state, str(r.tries), human_duration(r.duration)]
        if costs:
            cells.append("-" if r.cpu_seconds is None else f"{r.cpu_seconds:.2f}s")
            cells.append("-" if r.peak_rss is None else human_bytes(r.peak_rss))
        if gpus:
            cells.append(f"{r.gpu_seconds:.2f}s" if r.gpu_seconds else "-")
        table.add_row(*cells)
    return table


#: text rich prints as it is (printable ASCII without markup, emoji or escape characters)
_PLAIN_CELL = re.compile(r"[ -~]*")
_RICH_SPECIAL = frozenset("[]:\\")
#: the width ``console`` gives rich where output is not a terminal
_PLAIN_WIDTH = 200


def plain_wanted() -> bool:
    """Whether rich would see stdout as a plain stream (not a terminal, nor forced to be one,
    nor a notebook): what it prints there carries no styles."""
    from phloem.config import terminal_forced

    try:
        tty = sys.stdout.isatty()
    except Exception:
        tty = False
    return not tty and not terminal_forced() and "ipykernel" not in sys.modules


def _plain(text: str) -> bool:
    return (
        _PLAIN_CELL.fullmatch(text) is not None
        and not _RICH_SPECIAL.intersection(text)
        and text == text.strip()
        and "  " not in text
    )


def plain_summary(
    tis: Iterable[TI], order: Sequence[str] | None, *lines: str | None, run_id: str | None = None
) -> str | None:
    """What ``print_summary`` (without attempts, with the same ``run_id``) then ``lines`` (each
    printed by itself) print on a console that is not a terminal, or None where only rich can
    say (a failure to list, text rich would read as markup or would wrap)."""
    tis = list(tis)
    if failures(tis, order):
        return None
    rows, more = _shown(summary_rows(tis, order), tis, run_id)
    return plain_table(rows, more, *lines)


def plain_table(rows: Sequence[Row], *lines: str | None) -> str | None:
    """``summary_table(rows)`` then ``lines`` as a console that is not a terminal prints them,
    or None where that takes rich (costs to show, markup, wrapping)."""
    if any(r.cpu_seconds is not None or r.peak_rss is not None or r.gpu_seconds for r in rows):
        return None
    header = ["task", "state", "tries", "duration"]
    right = [False, False, True, True]
    cells = [
        [
            f"{r.task} (x{r.mapped})" if r.mapped is not None else r.task,
            r.state,
            str(r.tries),
            human_duration(r.duration),
        ]
        for r in rows
    ]
    extra = [ln for ln in lines if ln is not None]
    if not all(_plain(t) for t in [*(c for row in cells for c in row), *extra]):
        return None
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    if sum(widths) + 2 * (len(widths) - 1) > _PLAIN_WIDTH:
        return None
    if any(len(line) > _PLAIN_WIDTH for line in extra):
        return None
    out = [
        "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
        )
        for row in [header, *cells]
    ]
    return "".join(line + "\n" for line in [*out, *extra])


def print_summary(
    out: Console,
    tis: Iterable[TI],
    order: Sequence[str] | None,
    attempts: Iterable[AttemptRow] | None = None,
    run_id: str | None = None,
) -> None:
    """The tasks' table and the failures; with ``run_id`` (the end of a run), a long table cut
    to the tasks worth seeing (``views.run_end_rows``), with a line counting the others."""
    tis = list(tis)
    rows, more = _shown(summary_rows(tis, order, attempts), tis, run_id)
    out.print(summary_table(rows))
    if more is not None:
        out.print(more, markup=False, highlight=False, soft_wrap=True)  # a terminal wraps it
    failed = failures(tis, order)
    for name, error in failed[:MAX_FAILURES_SHOWN]:
        out.print(f"[red]failed[/] {name}: {error}", markup=True)
    if len(failed) > MAX_FAILURES_SHOWN:
        out.print(f"... and {len(failed) - MAX_FAILURES_SHOWN} more failed instances")


def _shown(rows: list[Row], tis: list[TI], run_id: str | None) -> tuple[list[Row], str | None]:
    return (rows, None) if run_id is None else run_end_rows(rows, tis, run_id)


def print_run_header(out: Console, run: RunRecord) -> None:
    from rich.table import Table

    from phloem.cli.views import iso

    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("run", run.run_id)
    t.add_row("pipeline", run.pipeline)
    t.add_row("state", _styled(run.state.value))
    t.add_row("logical date", run.logical_date)
    if run.params:
        import json

        t.add_row("params", json.dumps(run.params, default=str))
    t.add_row("started", iso(run.started_at) or "-")
    t.add_row("ended", iso(run.ended_at) or "-")
    if run.started_at is not None and run.ended_at is not None:
        t.add_row("duration", human_duration(run.ended_at - run.started_at))
    if run.source:
        t.add_row("source", run.source)
    if run.triggered_by:
        t.add_row("triggered by", run.triggered_by)
    if run.code_hash:
        t.add_row("code version", run.code_hash)
    out.print(t)


def print_artifact(out: Console, about: dict[str, Any]) -> None:
    """An artifact's description; a data frame's first rows as a table."""
    from rich.table import Table

    where = about["location"] + ("" if about["present"] else " (missing)")
    rows = [
        ("artifact", about["artifact"]),
        ("serializer", about["serializer"]),
        ("size", f"{about['size']} bytes"),
        ("digest", about["digest"]),
        ("location", where),
    ]
    if "shape" in about:
        rows.append(("shape", " x ".join(str(n) for n in about["shape"])))
    if "dtype" in about:
        rows.append(("dtype", about["dtype"]))
    for key, text in rows:  # "key:  value" lines, easy to read and to grep
        out.print(f"{key + ':':<12}{text}", markup=False, highlight=False, soft_wrap=True)
    if "schema" in about:
        head = Table(title=f"first {len(about['head'])} rows", title_justify="left")
        for col, typ in about["schema"].items():
            head.add_column(f"{col}\n[dim]{typ}[/dim]")
        for row in about["head"]:
            head.add_row(*(str(row.get(col)) for col in about["schema"]))
        out.print(head)


def print_output(out: Console, about: dict[str, Any], indent: int = 0) -> None:
    """A task's output as ``describe_output`` gives it: an inline value, an artifact, or a
    structured output value by value; with the metadata kept with each."""
    pad = " " * indent
    if "structure" in about:
        kind = about.get("class") or about["structure"]
        out.print(f"{pad}{kind} of {len(about['values'])} values", markup=False, highlight=False)
        _print_metadata(out, about.get("metadata"), pad)
        for key, part in about["values"].items():
            out.print(f"{pad}{key}", style="bold", markup=False, highlight=False)
            print_output(out, part, indent + 2)
        return
    if "value" in about:
        text = json.dumps(about["value"], indent=2, default=str)
        for line in text.splitlines():
            out.print(f"{pad}{line}", markup=False, highlight=False, soft_wrap=True)
    elif indent:
        _print_artifact_lines(out, about, pad)
    else:
        print_artifact(out, about)
    _print_metadata(out, about.get("metadata"), pad)


def _print_artifact_lines(out: Console, about: dict[str, Any], pad: str) -> None:
    """An artifact inside a structured output: its key facts, one line each."""
    parts = [about["artifact"], about["serializer"], f"{about['size']} bytes"]
    if "shape" in about:
        parts.append(" x ".join(str(n) for n in about["shape"]))
    if not about["present"]:
        parts.append("MISSING")
    out.print(f"{pad}{', '.join(parts)}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"{pad}{about['digest']}", markup=False, highlight=False, soft_wrap=True)


def _print_metadata(out: Console, meta: dict[str, Any] | None, pad: str) -> None:
    if not meta:
        return
    out.print(f"{pad}metadata:", markup=False, highlight=False)
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out.print(f"{pad}  {key + ':':<10}{text}", markup=False, highlight=False, soft_wrap=True)


def runs_table(runs: Sequence[RunRecord]):  # type: ignore[no-untyped-def]
    from rich.table import Table

    from phloem.cli.views import iso

    table = Table(box=None, pad_edge=False)
    table.add_column("run", no_wrap=True)
    for col in ("pipeline", "state", "logical date", "started (UTC)", "duration"):
        table.add_column(col, overflow="fold")
    for r in runs:
        took = r.ended_at - r.started_at if r.started_at and r.ended_at else None
        started = iso(r.started_at)
        table.add_row(
            r.run_id,
            r.pipeline,
            _styled(r.state.value),
            _short(r.logical_date),
            _short(started) if started else "-",
            human_duration(took),
        )
    return table


def _short(iso_time: str) -> str:
    """``2026-01-31T02:00:00.123+00:00`` -> ``2026-01-31 02:00:00`` (times are UTC)."""
    return iso_time[:19].replace("T", " ")
