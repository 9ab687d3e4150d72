"""``phloem``'s commands (typer): run pipelines, inspect runs, read logs and outputs, manage
the store. The console script is ``main.main``; ``main`` gives this module's names too.

Each command parses its arguments and calls the same functions the Python API uses. Exit
status: 0 success, 1 the run failed, 2 a usage or definition error (printed as one
``error: ...`` line on stderr), 130 interrupted.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.main import get_command_name

from phloem.cli import lineage_cmd, run_cmd, scheduler_cmds, tracking_cmds
from phloem.cli.accounts_cmds import tokens_app, users_app
from phloem.cli.alerts_cmds import alerts_app
from phloem.cli.breaker_cmds import breakers_app
from phloem.cli.cache_cmds import cache_app
from phloem.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Group,
    MapIndexOpt,
    ServerOpt,
    application,
    errors,
    fail,
    print_json,
    source,
)
from phloem.cli.models_cmds import models_app
from phloem.cli.report_cmds import reports
from phloem.cli.settings_cmds import connections_app, variables_app
from phloem.cli.watermark_cmds import watermarks_app
from phloem.states import ExecutorKind

if TYPE_CHECKING:
    from phloem.api import RunResult
    from phloem.records import RunRecord

app = typer.Typer(
    name="phloem",
    cls=Group,
    help="Run machine-learning pipelines written as plain Python, on durable state.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the store's database.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(breakers_app, name="breakers")
app.add_typer(variables_app, name="variables")
app.add_typer(connections_app, name="connections")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(watermarks_app, name="watermarks")
app.command("reports")(reports)
app.add_typer(cache_app, name="cache")
app.add_typer(models_app, name="models")
app.add_typer(alerts_app, name="alerts")


# -- commands ------------------------------------------------------------------------------------

ExecutorOpt = Annotated[
    ExecutorKind | None,
    typer.Option(
        "--executor", "-e", help="Where tasks run (default: $PHLOEM_EXECUTOR, else local)."
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", "-w", min=1, help="Worker processes (default: one per CPU)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only the run record as JSON.")]


@app.command()
def run(
    target: Annotated[str, typer.Argument(metavar="PATH[:PIPELINE]", help="Pipeline file.")],
    param: Annotated[
        list[str],
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="A run parameter (repeatable)."),
    ] = [],  # noqa: B006
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
    logical_date: Annotated[
        str | None,
        typer.Option(
            "--logical-date", metavar="ISO", help="The run's logical date (default: now)."
        ),
    ] = None,
    rerun: Annotated[
        bool,
        typer.Option(
            "--rerun",
            help="If a run for --logical-date exists, run it again (every task) instead.",
        ),
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Neither read nor write the task cache."),
    ] = False,
    refresh_cache: Annotated[
        bool,
        typer.Option(
            "--refresh-cache", help="Recompute cached tasks and replace their cache entries."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline to its end. Exit status 0 if it succeeded, 1 if it failed."""
    run_cmd.run(
        target,
        param,
        executor,
        workers,
        logical_date,
        rerun,
        no_cache,
        refresh_cache,
        as_json,
    )


@app.command()
def retry(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    task: Annotated[
        str | None,
        typer.Option("--task", "-t", help="Re-run this task (by default: the failed ones)."),
    ] = None,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="With --task: also re-run all tasks after it.")
    ] = False,
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
) -> None:
    """Resume a run: re-run its failed tasks (or --task), keeping what succeeded. With a
    server, its scheduler runs them; the command waits for the run to end."""
    from phloem import api

    if downstream and task is None:
        fail("--downstream needs --task")
    with errors():
        src = source(server)
    from phloem.cli.sources import RemoteSource

    if isinstance(src, RemoteSource):
        _retry_remote(src, run_id, task, downstream, as_json)
    with errors():
        full_id = application().store.get_run(run_id).run_id

    def call(reporter: Any) -> RunResult:
        return api.retry(
            full_id,
            app=application(),
            task=task,
            downstream=downstream,
            executor=executor,
            workers=workers,
            reporter=reporter,
        )

    run_cmd.drive(call, as_json, [full_id])


def _retry_remote(
    src: Any, run_id: str, task: str | None, downstream: bool, as_json: bool
) -> NoReturn:
    """Queue the retry on the server, wait for its scheduler to end the run, report it."""
    import time

    client = src.client
    with errors():
        queued = client.retry(run_id, task=task, downstream=downstream)
    rid = queued.run.run_id
    typer.echo(
        f"run {rid} queued again on {client.url} ({queued.reset} task instance(s) reset); "
        "waiting for it to end",
        err=True,
    )
    try:
        with errors():
            run = queued.run.record()
            while not run.state.is_terminal:
                time.sleep(0.5)
                run = client.run(rid)
            detail = client.run_detail(rid)
            tis = client.all_instances(rid)
    except KeyboardInterrupt:
        typer.echo(f"stopped waiting; run {rid} goes on on the server", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    with errors():
        run_cmd.report_run(run, tis, detail.task_order, lambda: client.attempts(rid), as_json)
    raise typer.Exit(0 if run.state.value == "success" else EXIT_FAILED)


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; kept as the stopped tasks' error.")
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Stop a run now, wherever it is driven: its running tasks stop, the run fails.
    `phloem retry` resumes it later."""
    with errors():
        run, stopped = source(server).cancel(run_id, reason)
    if stopped == 0:
        typer.echo(f"run {run.run_id} had ended ({run.state.value}); nothing to cancel")
        return
    typer.echo(
        f"cancelled run {run.run_id}: {stopped} task instance(s) stopped; resume it with "
        f"phloem retry {run.run_id}"
    )


@runs_app.command("list")
def runs_list(
    pipeline: Annotated[
        str | None,
        typer.Option("--pipeline", "-p", help="Only runs of this pipeline."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="Only runs in this state (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
    server: ServerOpt = None,
) -> None:
    """The latest runs, newest first."""
    from phloem.cli.views import run_dict
    from phloem.states import RunState

    states = state or []
    for s in states:
        if s not in {st.value for st in RunState}:
            fail(f"--state {s!r} is not a run state; use one of {', '.join(RunState)}")
    with errors():
        found = source(server).runs(pipeline, states, limit)
    if as_json:
        print_json([run_dict(r) for r in found])
        return
    if not found:
        typer.echo("no runs" + (f" of pipeline '{pipeline}'" if pipeline else ""))
        return
    from phloem.cli.tables import console, runs_table

    console().print(runs_table(found))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    server: ServerOpt = None,
) -> None:
    """A run and the state of each of its tasks."""
    with errors():
        src = source(server)
        record: RunRecord = src.run(run_id)
        tis = src.instances(record.run_id)
        attempts = src.attempts(record.run_id)
        order = src.task_order(record)
    if as_json:
        from phloem.cli.views import run_with_tasks

        print_json(run_with_tasks(record, tis, order, attempts))
        return
    from phloem.cli.tables import console, print_run_header, print_summary

    out = console()
    print_run_header(out, record)
    out.print()
    print_summary(out, tis, order, attempts)


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    task: Annotated[str, typer.Argument(help="Task id.")],
    map_index: MapIndexOpt = None,
    try_number: Annotated[
        int | None,
        typer.Option("--try", min=1, help="Attempt number (default: the latest)."),
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Print the log of a task's attempt."""
    with errors():
        what, chunks = source(server).log(run_id, task, map_index, try_number)
        if chunks is None:
            typer.echo(f"{what} wrote no log output", err=True)
            return
        sys.stdout.flush()
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()


@app.command()
def output(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    task: Annotated[str, typer.Argument(help="Task id.")],
    map_index: MapIndexOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Always JSON: the value, or the artifact's description.")
    ] = False,
    metadata: Annotated[
        bool,
        typer.Option("--metadata", help="Only the metadata kept with the output, as JSON."),
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Print a task's output: its JSON value, or what its artifact holds (a data frame's
    shape, schema and first rows; an array's shape and dtype), with the metadata kept with it.
    A dict, tuple or dataclass stored value by value is shown value by value."""
    with errors():
        out = source(server).output(run_id, task, map_index)
    kind = out["kind"]
    about = out.get("structure") if kind == "structured" else out.get("artifact")
    if kind in ("value", "none"):
        about = {"value": out.get("value")}
        if out.get("metadata"):
            about["metadata"] = out["metadata"]
    assert about is not None
    if metadata:
        print_json(_metadata_by_path(about))
        return
    if kind in ("value", "none") and (as_json or "metadata" not in about):
        print_json(about["value"])  # the value itself, as scripts read it
        return
    if as_json:
        print_json(about)
        return
    from phloem.cli.tables import console, print_output

    print_output(console(), about)


def _metadata_by_path(about: dict[str, Any], path: str = "") -> dict[str, Any]:
    """The metadata in an output's description, keyed by where it sits (``""`` for the whole
    output, ``['df']`` for a value of a dict)."""
    found: dict[str, Any] = {}
    if about.get("metadata"):
        found[path] = about["metadata"]
    for key, part in (about.get("values") or {}).items():
        found.update(_metadata_by_path(part, path + key))
    return found


@app.command()
def validate(
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Pipeline files.")],
) -> None:
    """Load pipeline files and list their pipelines, without running anything."""
    from phloem.errors import PhloemError, PipelineNotFound
    from phloem.loading import load_module_pipelines, load_pipeline, split_target

    found: list[tuple[str, Any]] = []
    bad = 0
    for target in paths:
        path, name = split_target(target)
        try:
            pipes = [load_pipeline(target)] if name else list(load_module_pipelines(path).values())
            if not pipes:
                raise PipelineNotFound(
                    f"{path} defines no pipeline; decorate a function with @phloem.pipeline"
                )
        except PhloemError as exc:
            bad += 1
            text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
            typer.echo(f"error: {text}", err=True)
            continue
        found.extend((target, p) for p in pipes)
    if found:
        from rich.table import Table

        from phloem.cli.tables import console

        table = Table(box=None, pad_edge=False)
        for col in ("file", "pipeline", "tasks", "schedule"):
            table.add_column(col, overflow="fold")
        for target, p in found:
            spec = p.spec
            table.add_row(
                str(split_target(target)[0]),
                spec.name,
                str(len(spec.tasks)),
                spec.schedule_text or "-",
            )
        console().print(table)
    if bad:
        raise typer.Exit(EXIT_USAGE)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's schema to this version of phloem."""
    from phloem.store import SqlStore
    from phloem.store.migrate import current_revision, upgrade

    with errors():
        settings = application().settings
        if settings.db_url.startswith("sqlite"):
            settings.ensure_dirs()
        store = SqlStore(settings.db_url, migrate=False)
        try:
            before = current_revision(store.engine)
            upgrade(store.engine)
            after = current_revision(store.engine)
        finally:
            store.close()
    change = "unchanged" if before == after else f"was {before or 'empty'}"
    typer.echo(f"{store.display_url}: schema at revision {after} ({change})")


def _version() -> str:
    from phloem import __version__

    return f"phloem {__version__}"


@app.command()
def version() -> None:
    """Print phloem's version."""
    typer.echo(_version())


def _version_flag(value: bool) -> None:
    if value:
        typer.echo(_version())
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_flag,
            is_eager=True,
            help="Print phloem's version and exit.",
        ),
    ] = False,
) -> None:
    """Run machine-learning pipelines written as plain Python, on durable state."""


scheduler_cmds.register(app)
runs_app.command("compare")(tracking_cmds.runs_compare)
app.command("metrics")(tracking_cmds.metrics)
app.command("lineage")(lineage_cmd.lineage)


def for_argv(args: Sequence[str]) -> typer.Typer:
    """``app`` with only the command (or group) that ``args`` names, and the main callback.

    Typer builds the click command of every registered command, some sixty, on each start,
    though one call runs only one. Anything else (options first, help, a typo) gets the whole
    app, so its help and its "no such command" stay whole.
    """
    name = args[0] if args else ""
    if not name or name.startswith("-"):
        return app
    commands = [
        c
        for c in app.registered_commands
        if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == name
    ]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    lean = copy.copy(app)
    lean.registered_commands = commands
    lean.registered_groups = groups
    return lean
