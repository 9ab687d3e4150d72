"""``phloem scheduler``, ``server``, ``pipelines``, ``trigger``, ``backfill`` and ``pools``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phloem.cli.common import (
    ServerOpt,
    application,
    errors,
    fail,
    parse_params,
    print_json,
    source,
)
from phloem.states import ExecutorKind

pipelines_app = typer.Typer(
    help="List, pause and unpause scheduled pipelines.", no_args_is_help=True
)
pools_app = typer.Typer(help="Named slot counts that bound concurrent tasks.", no_args_is_help=True)

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Folder = Annotated[
    Path | None,
    typer.Option(
        "--pipelines", help="Folder of pipeline files (default: $PHLOEM_PIPELINES or ./pipelines)."
    ),
]


def serve(
    folder: Path | None,
    parse_interval: float,
    workers: int | None,
    parallelism: int | None,
    executor: str | None = None,
) -> None:
    import logging
    import signal
    from dataclasses import replace

    from phloem.app import Phloem
    from phloem.scheduler import Scheduler, SchedulerConfig

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with errors():
        settings = application().settings
        if workers:
            settings = replace(settings, workers=workers)
        app = Phloem(settings)
        config = SchedulerConfig.from_settings(
            settings, folder, parse_interval=parse_interval, parallelism=parallelism
        )
        where = config.folder
        sched = Scheduler(app, config, executor)
        signal.signal(signal.SIGTERM, lambda *_: sched.stop())
        typer.echo(f"phloem scheduler {sched.id}: {where} on {app.store.display_url}", err=True)
        try:
            sched.run()
        except KeyboardInterrupt:
            typer.echo("stopped; runs in flight resume when a scheduler starts again", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(pipelines_app, name="pipelines")
    app.add_typer(pools_app, name="pools")

    @app.command()
    def scheduler(
        folder: Folder = None,
        parse_interval: Annotated[float, typer.Option(help="Seconds between folder scans.")] = 10.0,
        workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
        parallelism: Annotated[
            int | None, typer.Option(help="At most this many tasks at once (all runs).")
        ] = None,
        executor: Annotated[
            ExecutorKind | None,
            typer.Option(
                "--executor", "-e", help="Where tasks run (default: $PHLOEM_EXECUTOR, else local)."
            ),
        ] = None,
    ) -> None:
        """Run until stopped: discover pipelines, start the runs their schedules, events and
        assets ask for, and drive them."""
        serve(folder, parse_interval, workers, parallelism, executor)

    @app.command()
    def server(
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
        no_scheduler: Annotated[
            bool, typer.Option("--no-scheduler", help="Serve the API only (no scheduler).")
        ] = False,
        folder: Folder = None,
        parse_interval: Annotated[float, typer.Option(help="Seconds between folder scans.")] = 10.0,
        workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
        parallelism: Annotated[
            int | None, typer.Option(help="At most this many tasks at once (all runs).")
        ] = None,
        cookie_secure: Annotated[
            bool, typer.Option(help="Mark the session cookie Secure (behind HTTPS).")
        ] = False,
    ) -> None:
        """The scheduler and the REST API (/api/v1) of one machine, until stopped."""
        import logging
        from dataclasses import replace

        from phloem.server.process import ServerOptions, serve

        if not 0 <= port <= 65535:
            fail(f"--port {port} is not a port number (0..65535)")
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        with errors():
            settings = application().settings
            if workers:
                settings = replace(settings, workers=workers)
            options = ServerOptions(
                host=host,
                port=port,
                scheduler=not no_scheduler,
                folder=folder,
                parse_interval=parse_interval,
                parallelism=parallelism,
                cookie_secure=cookie_secure,
            )
            code = serve(settings, options, say=lambda text: typer.echo(text, err=True))
        raise typer.Exit(code)

    @app.command()
    def trigger(
        pipeline: str,
        param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE")] = None,
        logical_date: Annotated[str | None, typer.Option(help="ISO 8601 date or time.")] = None,
        key: Annotated[
            str | None, typer.Option("--key", help="Idempotency key: repeats make one run.")
        ] = None,
        as_json: JsonOut = False,
        server: ServerOpt = None,
    ) -> None:
        """Queue a run of PIPELINE now; the scheduler picks it up."""
        from phloem.cli.views import run_dict

        with errors():
            run, created = source(server).trigger(
                pipeline, parse_params(param or []), logical_date, key
            )
            if as_json:
                print_json({**run_dict(run), "created": created})
            elif created:
                typer.echo(f"queued run {run.run_id} of {run.pipeline}")
            else:
                typer.echo(
                    f"run {run.run_id} of {run.pipeline} exists for key {key!r}; not repeated"
                )

    @app.command()
    def backfill(
        pipeline: str,
        start: Annotated[str, typer.Option(help="First logical date (ISO 8601).")],
        end: Annotated[str, typer.Option(help="Last logical date (ISO 8601).")],
        rerun_failed: Annotated[bool, typer.Option(help="Run failed intervals again.")] = False,
        rerun_all: Annotated[bool, typer.Option(help="Run every interval again.")] = False,
        dry_run: Annotated[bool, typer.Option(help="Only show what would happen.")] = False,
        max_active_runs: Annotated[
            int | None, typer.Option(help="At most this many of the new runs at once.")
        ] = None,
        as_json: JsonOut = False,
        server: ServerOpt = None,
    ) -> None:
        """Create a run for every interval of PIPELINE between START and END."""
        if rerun_failed and rerun_all:
            fail("choose one of --rerun-failed and --rerun-all")
        with errors():
            items = source(server).backfill(
                pipeline,
                start,
                end,
                rerun_failed=rerun_failed,
                rerun_all=rerun_all,
                max_active_runs=max_active_runs,
                dry_run=dry_run,
            )
            if as_json:
                print_json([{f: getattr(item, f) for f in item.__slots__} for item in items])
                return
            verb = {
                "new": "will run (new)" if dry_run else "created",
                "exists": "already done, kept",
                "rerun": "will rerun" if dry_run else "reset to rerun",
                "running": "in progress, kept",
            }
            for item in items:
                extra = f"  {item.run_id}" if item.run_id else ""
                typer.echo(f"{item.logical_date}  {verb[item.action]}{extra}")
            typer.echo(f"{len(items)} interval(s)" + (" (dry run)" if dry_run else ""))

    @pipelines_app.command("list")
    def pipelines_list(folder: Folder = None, as_json: JsonOut = False) -> None:
        """Pipelines of the folder and those schedulers found, with schedules and state."""
        from phloem.scheduler.lookup import read_folder

        with errors():
            read_folder(application(), folder)
            catalog = application().store.catalog
            rows = catalog.pipelines()
            import_errors = catalog.import_errors()
        if as_json:
            print_json(
                {
                    "pipelines": [
                        {
                            "name": r.info.name,
                            "file": r.info.file,
                            "schedule": r.info.schedule,
                            "timezone": r.info.timezone,
                            "assets": list(r.info.assets),
                            "paused": r.paused,
                            "active": r.active,
                            "code_hash": r.info.code_hash,
                            "owner": r.info.owner,
                            "tags": list(r.info.tags),
                            "description": r.info.description,
                        }
                        for r in rows
                    ],
                    "import_errors": import_errors,
                }
            )
            return
        for r in rows:
            state = "paused" if r.paused else "active" if r.active else "gone"
            trig = r.info.schedule or (
                "assets: " + ", ".join(r.info.assets) if r.info.assets else "manual"
            )
            labels = ", ".join(
                [*([f"owner: {r.info.owner}"] if r.info.owner else []), *r.info.tags]
            )
            typer.echo(
                f"{r.info.name:30} {state:7} {trig:25} {r.info.file}"
                + (f"  [{labels}]" if labels else "")
            )
        for file, err in import_errors.items():
            typer.echo(f"import error in {file}: {err}", err=True)

    @pipelines_app.command("pause")
    def pause(pipeline: str, server: ServerOpt = None) -> None:
        """Stop creating new runs of PIPELINE (runs in flight finish)."""
        with errors():
            name = source(server).set_paused(pipeline, True)
        typer.echo(f"paused {name}")

    @pipelines_app.command("unpause")
    def unpause(pipeline: str, server: ServerOpt = None) -> None:
        """Let the scheduler create runs of PIPELINE again."""
        with errors():
            name = source(server).set_paused(pipeline, False)
        typer.echo(f"unpaused {name}")

    @pools_app.command("set")
    def pools_set(name: str, slots: int, description: str | None = None) -> None:
        """Create or resize pool NAME to SLOTS concurrent slots."""

        with errors():
            application().store.set_pool(name, slots, description)
        typer.echo(f"pool {name}: {slots} slot(s)")

    @pools_app.command("list")
    def pools_list(as_json: JsonOut = False) -> None:
        """Pools with their sizes and the slots in use now."""

        with errors():
            store = application().store
            sizes, used = store.pools(), store.pool_usage()
        if as_json:
            print_json({n: {"slots": s, "used": used.get(n, 0)} for n, s in sizes.items()})
            return
        for n, s in sorted(sizes.items()):
            typer.echo(f"{n:20} {used.get(n, 0)}/{s}")
