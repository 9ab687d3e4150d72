"""``phloem models ...``: list, show, promote, roll back and compare registered models.

The commands parse and print; the registry (``phloem.models``) does the work, so what they
do is what the Python API does. Alias moves made here are recorded as made by the CLI user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phloem.cli.common import application, print_json

if TYPE_CHECKING:
    from phloem.models.registry import Registry
    from phloem.store.models import AliasMove, ModelVersion

models_app = typer.Typer(
    help="The model registry: versions, aliases and their history.", no_args_is_help=True
)

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Reason = Annotated[str | None, typer.Option("--reason", "-r", help="Why (kept in the history).")]


def _registry() -> Registry:
    from phloem.models.registry import Registry, user

    app = application()
    return Registry(app.store, app.artifacts, f"{user()} (cli)")


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return json.dumps(v) if not isinstance(v, str) else v


def _metrics(m: dict[str, float], limit: int = 4) -> str:
    shown = [f"{k}={_num(v)}" for k, v in list(m.items())[:limit]]
    return " ".join(shown) + (" ..." if len(m) > limit else "")


def _move_line(m: AliasMove) -> str:
    from phloem.models.report import when

    prev = "-" if m.previous is None else str(m.previous)
    why = f"  ({m.reason})" if m.reason else ""
    kind = " rollback" if m.kind == "rollback" else ""
    return f"{when(m.at)}  {m.alias}: {prev} -> {m.version}{kind}  by {m.who}{why}"


@models_app.command("list")
def models_list(as_json: JsonOut = False) -> None:
    """Every registered model: latest version, how many, aliases."""
    from phloem.models.report import when

    found = _registry().store.models.names()
    if as_json:
        print_json(
            [
                {
                    "name": m.name,
                    "latest": m.latest,
                    "versions": m.versions,
                    "aliases": m.aliases,
                    "updated_at": when(m.updated_at),
                }
                for m in found
            ]
        )
        return
    if not found:
        typer.echo("no models registered yet (phloem.models.register adds one)")
        return
    rows = [
        (
            m.name,
            str(m.latest),
            str(m.versions),
            " ".join(f"{a}={v}" for a, v in m.aliases.items()) or "-",
            when(m.updated_at) or "-",
        )
        for m in found
    ]
    _table(rows, ("name", "latest", "versions", "aliases", "updated"))


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    lineage: Annotated[
        bool, typer.Option("--lineage", help="Also the run, code and inputs that made it.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """A model's versions and alias history, or one version in detail."""
    from phloem.models.refs import parse

    reg = _registry()
    r = parse(ref)
    if r.version is None and r.alias is None and not lineage:
        _show_model(reg, r.name, as_json)
        return
    _show_version(reg, reg.resolve(r), lineage, as_json)


def _show_model(reg: Registry, name: str, as_json: bool) -> None:
    from phloem.models.report import version_dict, when

    models = reg.store.models
    versions = models.versions(name)
    if not versions:
        models.latest(name)  # raises, listing the models there are
    history = models.alias_history(name)
    if as_json:
        print_json(
            {
                "name": name,
                "aliases": models.aliases(name),
                "versions": [version_dict(v) for v in versions],
                "history": [
                    {
                        "alias": m.alias,
                        "version": m.version,
                        "previous": m.previous,
                        "kind": m.kind,
                        "at": when(m.at),
                        "who": m.who,
                        "reason": m.reason,
                    }
                    for m in history
                ],
            }
        )
        return
    typer.echo(f"model {name}")
    rows = [
        (
            str(v.version),
            ",".join(v.aliases) or "-",
            _metrics(v.metrics) or "-",
            v.artifact.serializer,
            when(v.ready_at) or "-",
            v.registered_by,
        )
        for v in versions
    ]
    _table(rows, ("version", "aliases", "metrics", "format", "registered", "by"))
    if history:
        typer.echo("\nalias history")
        for m in history:
            typer.echo(f"  {_move_line(m)}")


def _show_version(reg: Registry, v: ModelVersion, lineage: bool, as_json: bool) -> None:
    from phloem.models.report import lineage as lineage_of
    from phloem.models.report import version_dict

    d = version_dict(v)
    if lineage:
        d["lineage"] = lineage_of(reg.store, v)
    if as_json:
        print_json(d)
        return
    typer.echo(f"model {v.name} version {v.version}  ({v.status})")
    typer.echo(f"  aliases      {', '.join(v.aliases) or '-'}")
    a = v.artifact
    typer.echo(f"  model        {a.type_name}, {a.serializer}, {a.size} bytes, {a.digest[:12]}")
    typer.echo(f"  registered   {d['ready_at'] or d['created_at']} by {v.registered_by}")
    typer.echo(f"  eval data    {(v.eval_digest or '-')[:12]}")
    if v.description:
        typer.echo(f"  description  {v.description}")
    for title, values in (("metrics", v.metrics), ("params", v.params), ("tags", v.tags)):
        if values:
            typer.echo(f"  {title}")
            for k, x in values.items():
                typer.echo(f"    {k} = {_num(x)}")
    if lineage:
        lin = d["lineage"]
        typer.echo("  lineage")
        if "origin" in lin:
            typer.echo(f"    {lin['origin']}")
            return
        where = f"{lin['pipeline']}, logical date {lin['logical_date']}"
        typer.echo(f"    run          {lin['run_id']} ({where})")
        typer.echo(f"    task         {lin['task_id']} try {lin['try_number']}")
        typer.echo(f"    code         {(lin['code_hash'] or '-')[:12]}")
        if lin["run_params"]:
            typer.echo(f"    run params   {json.dumps(lin['run_params'], default=str)}")
        for i in lin["inputs"]:
            by = f" from task {i['produced_by']}" if i["produced_by"] else ""
            typer.echo(f"    input        {i['digest'][:12]} {i['type'] or ''}{by}")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="The version the alias points at.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to set or move.")],
    reason: Reason = None,
) -> None:
    """Point an alias at a version (recorded in the alias history)."""
    move = _registry().set_alias(name, version, alias, reason=reason)
    assert move is not None
    was = "" if move.previous is None else f" (was {move.previous})"
    typer.echo(f"{name}@{alias} -> version {version}{was}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to move back.")],
    reason: Reason = None,
) -> None:
    """Move an alias back to the version it pointed at before (recorded as a move)."""
    move = _registry().rollback(name, alias, reason=reason)
    typer.echo(f"{name}@{alias} -> version {move.version} (rolled back from {move.previous})")


@models_app.command("compare")
def models_compare(
    name: Annotated[str, typer.Argument(help="Model name.")],
    a: Annotated[int, typer.Argument(help="First version.")],
    b: Annotated[int, typer.Argument(help="Second version.")],
    as_json: JsonOut = False,
) -> None:
    """Two versions side by side: metrics with deltas, params, tags, eval data, lineage."""
    from phloem.models.report import compare

    reg = _registry()
    va, vb = reg.resolve(f"{name}:{a}"), reg.resolve(f"{name}:{b}")
    c = compare(reg.store, va, vb)
    if as_json:
        print_json(c)
        return
    typer.echo(f"model {name}: version {a} vs version {b}")
    rows: list[tuple[str, ...]] = []
    for k, m in c["metrics"].items():
        delta = m["delta"]
        shown = "-" if delta is None else f"{delta:+.6g}"
        rows.append(("metric", k, _num(m["a"]), _num(m["b"]), shown))
    for section in ("params", "tags"):
        for k, p in c[section].items():
            differs = "" if p["same"] else "differs"
            rows.append((section[:-1], k, _num(p["a"]), _num(p["b"]), differs))
    ev = c["eval_data"]
    same = "same" if ev["same"] else "differs"
    rows.append(("eval", "data", (ev["a"] or "-")[:12], (ev["b"] or "-")[:12], same))
    for k in ("run_id", "pipeline", "task_id", "code_hash"):
        la, lb = c["lineage"]["a"].get(k), c["lineage"]["b"].get(k)
        rows.append(("lineage", k, str(la or "-")[:32], str(lb or "-")[:32], ""))
    _table(rows, ("", "", f"v{a}", f"v{b}", "delta"))


@models_app.command("export")
def models_export(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    directory: Annotated[str, typer.Argument(help="A new (or empty) directory to write.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="What to write: mlflow (an MLflow model).")
    ] = "mlflow",
) -> None:
    """Write a version out for another tool (an MLflow model directory)."""
    from phloem.errors import PhloemError
    from phloem.models.export import to_mlflow

    if format != "mlflow":
        raise PhloemError(f"--format {format!r} is not known; use --format mlflow")
    reg = _registry()
    version = reg.resolve(ref)
    path = to_mlflow(reg.load(version.ref), version, directory)
    typer.echo(f"{version.ref} written as an MLflow model to {path}")


__all__ = ["models_app"]
