"""``phloem run`` and the end of ``run`` and ``retry``: progress while the run is driven, then
the tasks' table and the run's state (or its JSON), and the exit status.

No typer here: the console script's quick path (``quick``) calls ``run`` directly when the
arguments are plain, so a one-task run pays for neither typer nor the pydantic it validates
arguments with; the typer command in ``commands`` calls the same function.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from phloem.cli.plain import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    application,
    echo,
    errors,
    fail,
    parse_params,
    print_json,
)

if TYPE_CHECKING:
    from phloem.api import RunResult
    from phloem.records import TI, RunRecord
    from phloem.states import ExecutorKind
    from phloem.store.types import AttemptRow


def run(
    target: str,
    param: list[str],
    executor: ExecutorKind | None,
    workers: int | None,
    logical_date: str | None,
    rerun: bool,
    no_cache: bool,
    refresh_cache: bool,
    as_json: bool,
) -> NoReturn:
    """Run a pipeline to its end; exit 0 if it succeeded, 1 if it failed."""
    from phloem import api

    if no_cache and refresh_cache:
        fail("--no-cache and --refresh-cache contradict each other: give one")
    cache = "off" if no_cache else "refresh" if refresh_cache else "use"
    with errors():
        params = parse_params(param)
    created: list[str] = []

    def call(reporter: Any) -> RunResult:
        return api.run(
            target,
            app=application(),
            params=params,
            executor=executor,
            workers=workers,
            logical_date=logical_date,
            reporter=reporter,
            on_created=lambda rec: created.append(rec.run_id),
            rerun=rerun,
            cache=cache,
        )

    drive(call, as_json, created)


def make_reporter(as_json: bool) -> Any:
    from phloem.cli.progress import LineReporter, LiveReporter

    if as_json:
        return None
    if sys.stdout.isatty():
        from phloem.cli.tables import console

        return LiveReporter(console())
    return LineReporter(lambda line: echo(line))


@contextlib.contextmanager
def stdout_to_stderr(active: bool) -> Iterator[None]:
    """With ``--json`` stdout carries the JSON only: what the pipeline's file prints when it
    is imported (``print`` or straight to fd 1) goes to stderr meanwhile."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def drive(call: Any, as_json: bool, run_id: list[str]) -> NoReturn:
    """Run ``call(reporter)`` (api.run or api.retry) with progress, then report and exit."""
    reporter = make_reporter(as_json)
    try:
        with errors(), stdout_to_stderr(as_json):
            if reporter is None:
                result = call(None)
            else:
                with reporter:
                    result = call(reporter)
    except KeyboardInterrupt:
        rid = run_id[0] if run_id else None
        if rid:
            echo(f"interrupted: run {rid} can be resumed with phloem retry {rid}", err=True)
        else:
            echo("interrupted before the run was created", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    report(result, as_json)
    raise SystemExit(0 if result.succeeded else EXIT_FAILED)


def report(result: RunResult, as_json: bool) -> None:
    run = result.run
    report_run(
        run,
        list(result.tasks.values()),
        list(result.spec.tasks),
        lambda: result.app.store.attempts(run.run_id),
        as_json,
    )


def report_run(
    run: RunRecord,
    tis: list[TI],
    order: list[str] | None,
    attempts: Callable[[], Iterable[AttemptRow]],
    as_json: bool,
) -> None:
    """The end of ``run`` or ``retry``: the tasks' table and the run's state, or its JSON."""
    from phloem.cli.views import run_with_tasks

    if as_json:
        print_json(run_with_tasks(run, tis, order, attempts()))
        return
    from phloem.cli.views import human_duration

    took = ""
    if run.started_at is not None and run.ended_at is not None:
        took = f" in {human_duration(run.ended_at - run.started_at)}"
    succeeded = run.state.value == "success"
    from phloem.cli.tables import plain_summary, plain_wanted

    if plain_wanted():
        ended = f"run {run.run_id} {run.state.value}{took}"
        retry = None if succeeded else f"retry the failed tasks with: phloem retry {run.run_id}"
        text = plain_summary(tis, order, ended, retry, run_id=run.run_id)
        if text is not None:  # what rich would print, without importing it
            sys.stdout.write(text)
            sys.stdout.flush()
            return
    from phloem.cli.tables import console, print_summary

    out = console()
    print_summary(out, tis, order, run_id=run.run_id)
    style = "green" if succeeded else "red"
    out.print(f"run {run.run_id} [{style}]{run.state.value}[/]{took}")
    if not succeeded:
        out.print(f"retry the failed tasks with: phloem retry {run.run_id}", markup=False)
