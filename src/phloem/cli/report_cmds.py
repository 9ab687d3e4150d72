"""``phloem reports RUN``: the validation and drift reports a run's tasks kept
(``phloem.expect(...).check()``, ``phloem.drift.report``), as their tables or as JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from phloem.cli.common import application, errors, fail, print_json


def reports(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    task: Annotated[str | None, typer.Option("--task", "-t", help="Only this task's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """The validation and drift reports of a run, task by task."""
    from phloem.artifacts import ArtifactRef
    from phloem.quality.reports import ROLES

    with errors():
        app = application()
        run = app.store.get_run(run_id)
        uses = [
            u
            for u in app.store.artifact_uses(run.run_id)
            if u.role in ROLES and (task is None or u.task_id == task)
        ]
        found: list[dict[str, Any]] = []
        for u in sorted(uses, key=lambda u: (u.task_id, u.map_index, u.try_number)):
            rec = app.store.artifact(u.digest)
            if rec is None:
                continue
            ref = ArtifactRef(rec.digest, rec.serializer, rec.type_name, rec.size, rec.key)
            payload = app.artifacts.get(ref)
            found.append(
                {
                    "task_id": u.task_id,
                    "map_index": None if u.map_index < 0 else u.map_index,
                    "try_number": u.try_number,
                    "role": u.role,
                    "digest": u.digest,
                    "report": payload,
                }
            )
    if not found:
        where = f" by task {task!r}" if task else ""
        fail(f"run {run.run_id} kept no validation or drift report{where}")
    if as_json:
        print_json(found)
        return
    for item in found:
        index = "" if item["map_index"] is None else f"[{item['map_index']}]"
        typer.echo(
            f"== {item['task_id']}{index} (try {item['try_number']}), {item['role']} report "
            f"{item['digest'][:12]}"
        )
        report = item["report"]
        typer.echo(report.get("table", "") if isinstance(report, dict) else str(report))
        typer.echo("")


__all__ = ["reports"]
