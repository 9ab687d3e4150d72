"""``phloem cache explain | list | clear``: what the task cache holds and why an instance was
(or was not) served from it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated

import typer

from phloem.cli.common import MapIndexOpt, application, errors, fail, print_json

cache_app = typer.Typer(help="Inspect and clear the task cache.", no_args_is_help=True)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _label(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


@cache_app.command("explain")
def cache_explain(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    task: Annotated[str, typer.Argument(help="Task id.")],
    map_index: MapIndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Why an instance was (or was not) served from the cache.

    Prints the parts of its key and, on a miss, what differs from the closest earlier entry
    of the task."""
    from phloem.caching.explain import explain

    with errors():
        ph = application()
        run = ph.store.get_run(run_id)
        idx = -1 if map_index is None else map_index
        check = ph.store.cache.check(run.run_id, task, idx)
        if check is None:
            mapped = sorted(
                c.map_index for c in ph.store.cache.checks(run.run_id) if c.task_id == task
            )
            if mapped and map_index is None:
                fail(
                    f"task '{task}' is mapped: name an instance with --map-index "
                    f"({mapped[0]}..{mapped[-1]})"
                )
            fail(
                f"run {run.run_id} has no cache record for {_label(task, idx)}: the task does "
                "not cache (@task(cache=True)), the run was made with --no-cache, or the "
                "instance never became ready"
            )
        ex = explain(ph.store, check)
    if as_json:
        print_json(ex.to_json())
        return
    c = ex.check
    typer.echo(f"{_label(c.task_id, c.map_index)} in run {c.run_id}: {c.outcome}")
    if c.outcome == "hit":
        typer.echo(f"  reused the output of run {c.source_run}")
    if c.reason:
        typer.echo(f"  why: {c.reason}")
    if c.key:
        typer.echo(f"  key: {c.key}")
    p = ex.parts
    if p is not None:
        typer.echo("  code:")
        for name, h in p.code.items():
            typer.echo(f"    {name}  {h}")
        typer.echo("  libraries:")
        for name, v in p.packages.items():
            typer.echo(f"    {name} {v}")
        if p.custom is not None:
            typer.echo(f"  key function: {p.custom}")
        else:
            typer.echo("  inputs:")
            for name, h in p.inputs.items():
                typer.echo(f"    {name}  {h}")
        typer.echo(f"  version: {p.version!r}")
    if c.outcome in ("miss", "refresh"):
        if ex.closest is None:
            typer.echo("  no earlier entry of this task to compare with")
        elif ex.differences:
            typer.echo(f"  differs from the entry of run {ex.closest.run_id}:")
            for d in ex.differences:
                typer.echo(f"    {d}")
        else:
            typer.echo(f"  same key parts as the entry of run {ex.closest.run_id}")


@cache_app.command("list")
def cache_list(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline's entries.")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Only this task's.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cache entries, newest first."""
    with errors():
        entries = application().store.cache.entries(pipeline, task, limit=limit)
    if as_json:
        print_json(
            [
                {
                    "key": e.key,
                    "pipeline": e.pipeline,
                    "task_id": e.task_id,
                    "map_index": e.map_index,
                    "run_id": e.run_id,
                    "created_at": _when(e.created_at),
                    "parts": json.loads(e.parts),
                }
                for e in entries
            ]
        )
        return
    if not entries:
        typer.echo("no cache entries")
        return
    rows = [
        (e.key[:12], e.pipeline, _label(e.task_id, e.map_index), e.run_id, _when(e.created_at))
        for e in entries
    ]
    header = ("key", "pipeline", "task", "run", "created")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@cache_app.command("clear")
def cache_clear(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline's entries.")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Only this task's.")] = None,
) -> None:
    """Delete cache entries (every entry unless --pipeline / --task); the next runs recompute."""
    with errors():
        n = application().store.cache.clear(pipeline, task)
    typer.echo(f"cleared {n} cache entr{'y' if n == 1 else 'ies'}")


__all__ = ["cache_app"]
