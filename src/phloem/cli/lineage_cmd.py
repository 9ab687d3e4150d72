"""``phloem lineage TARGET``: what made an artifact, a task's output or a model version
(upstream), or what used it (downstream), as a tree for people or JSON for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phloem.cli.common import ServerOpt, errors, fail, print_json, source

if TYPE_CHECKING:
    from rich.tree import Tree

    from phloem.lineage import LineageGraph, Node


def lineage(
    target: Annotated[
        list[str],
        typer.Argument(
            metavar="TARGET",
            help="An artifact hash (or a unique prefix), RUN TASK, or a model version "
            "(name:3, name@alias).",
        ),
    ],
    upstream: Annotated[
        bool, typer.Option("--upstream", help="What made it, back to raw inputs (default).")
    ] = False,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="What used it, forward to the last consumer.")
    ] = False,
    map_index: Annotated[
        int | None,
        typer.Option("--map-index", "-i", min=0, help="With RUN TASK: one mapped instance."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Nodes and edges as JSON.")] = False,
    max_depth: Annotated[
        int, typer.Option("--max-depth", min=1, help="Task hops to walk at most.")
    ] = 25,
    max_nodes: Annotated[
        int, typer.Option("--max-nodes", min=1, help="Nodes to show at most.")
    ] = 500,
    server: ServerOpt = None,
) -> None:
    """The lineage of an artifact, a task instance's output or a model version: tasks with
    their run, pipeline code version and params, artifacts with their type and metadata,
    files by content hash."""
    from phloem.lineage import LineageGraph

    if upstream and downstream:
        fail("give --upstream or --downstream, not both")
    if len(target) > 2:
        fail(f"TARGET is one or two words (a hash, or RUN TASK), not {len(target)}")
    with errors():
        doc = source(server).lineage(
            target,
            "downstream" if downstream else "upstream",
            map_index,
            max_depth,
            max_nodes,
        )
    if as_json:
        print_json(doc)
        return
    graph = LineageGraph.from_json(doc)
    from phloem.cli.tables import console

    out = console()
    for root in graph.roots:
        out.print(render(graph, root))
    if graph.truncated:
        out.print(f"[yellow]note:[/yellow] {graph.truncated}")


def render(graph: LineageGraph, root: str) -> Tree:
    """The graph from ``root`` as a rich tree; a node reached twice is shown once in full."""
    from rich.tree import Tree

    shown: set[str] = set()

    def grow(tree: Tree, node_id: str, role: str | None) -> None:
        node = graph.nodes.get(node_id)
        text = _label(node, node_id, role)
        if node_id in shown:
            tree.add(f"{text} [dim](shown above)[/dim]")
            return
        shown.add(node_id)
        branch = tree.add(text)
        for child in graph.children(node_id):
            grow(branch, child, _role(graph, node_id, child))

    top = Tree(_label(graph.nodes.get(root), root, None))
    shown.add(root)
    for child in graph.children(root):
        grow(top, child, _role(graph, root, child))
    return top


def _role(graph: LineageGraph, a: str, b: str) -> str:
    roles = sorted({e.role for e in graph.edges if {e.source, e.target} == {a, b}})
    return "/".join(roles)


def _label(node: Node | None, node_id: str, role: str | None) -> str:
    from rich.markup import escape

    how = f"[dim]{escape(role)}[/dim] " if role and role not in ("input", "output") else ""
    if node is None:
        return how + escape(node_id)
    a = node.attrs
    if node.kind == "artifact":
        if a.get("recorded") is False:
            return f"{how}[cyan]artifact[/cyan] sha256:{a['digest'][:12]} (no record)"
        text = (
            f"{how}[cyan]{escape(a['type_name'])}[/cyan] {escape(a['serializer'])} "
            f"{_size(a['size'])}  sha256:{a['digest'][:12]}"
        )
        meta = a.get("metadata")
        if meta:
            text += "  [dim]" + escape(_short(meta)) + "[/dim]"
        return text
    name = a["task_id"] + ("" if a["map_index"] is None else f"[{a['map_index']}]")
    if a.get("recorded") is False:
        return f"{how}[bold]{escape(name)}[/bold] run {escape(a['run_id'])} (no record)"
    text = (
        f"{how}[bold]{escape(a['pipeline'])}.{escape(name)}[/bold] run {escape(a['run_id'])} "
        f"({escape(a['logical_date'][:19])}) {escape(a['state'])}"
    )
    if a.get("code_hash"):
        text += f"  code {escape(a['code_hash'][:12])}"
    if a.get("params"):
        text += "  [dim]params " + escape(_short(a["params"])) + "[/dim]"
    for f in a.get("files", ()):
        text += f"\n  file {escape(f['path'])} sha256:{f['sha256'][:12]}"
    return text


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, default=str, separators=(", ", "="))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
