"""A pipeline's graph laid out in layers, left to right, for the run page's SVG.

Computed on the server, once per request, in plain Python: a task's layer is the length of
the longest path reaching it (so every edge points right), the order inside a layer comes
from a few barycentre sweeps (fewer crossings), and tasks of one group stay next to each
other so the group's box around them stays compact. No JavaScript lays anything out, so
the page is drawn at once, also for a thousand tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

NODE_W = 200
NODE_H = 46
GAP_X = 70  # between layers
GAP_Y = 22  # between nodes of a layer
PAD = 24  # around the drawing and inside a group box
SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    x: float
    y: float
    layer: int
    group: str | None


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    path: str  # SVG path data


@dataclass(frozen=True, slots=True)
class Box:
    """A group's frame: the bounding box of its tasks."""

    group: str
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: list[Node]
    edges: list[Edge]
    boxes: list[Box]
    width: float
    height: float


def layers_of(order: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each task's layer: 0 for a root, else one more than its deepest upstream task.
    ``order`` is topological; an upstream id not in ``order`` is ignored."""
    layer: dict[str, int] = {}
    for t in order:
        ups = [layer[u] for u in upstream.get(t, ()) if u in layer]
        layer[t] = max(ups) + 1 if ups else 0
    return layer


def _order_layers(
    columns: list[list[str]],
    upstream: Mapping[str, Sequence[str]],
    downstream: Mapping[str, Sequence[str]],
    group: Mapping[str, str | None],
) -> None:
    pos: dict[str, float] = {}
    for col in columns:
        for i, t in enumerate(col):
            pos[t] = float(i)

    def sort(col: list[str], neighbours: Mapping[str, Sequence[str]]) -> None:
        def bary(t: str) -> float:
            near = [pos[n] for n in neighbours.get(t, ()) if n in pos]
            return sum(near) / len(near) if near else pos[t]

        own = {t: bary(t) for t in col}
        # a group sits where its members' mean lies, its members together
        members: dict[str, list[float]] = {}
        for t in col:
            g = group.get(t)
            if g:
                members.setdefault(g, []).append(own[t])
        at = {g: sum(v) / len(v) for g, v in members.items()}
        col.sort(key=lambda t: (at.get(group.get(t) or "", own[t]), group.get(t) or "", own[t]))
        for i, t in enumerate(col):
            pos[t] = float(i)

    for sweep in range(SWEEPS):
        if sweep % 2 == 0:
            for col in columns[1:]:
                sort(col, upstream)
        else:
            for col in reversed(columns[:-1]):
                sort(col, downstream)


def layout(
    order: Sequence[str],
    upstream: Mapping[str, Sequence[str]],
    group: Mapping[str, str | None] | None = None,
) -> Layout:
    """Positions for the tasks ``order`` (topological), edges from ``upstream``, and a box
    for each group (dotted group ids: a task of ``a.b`` is inside the boxes of ``a`` and
    ``a.b``)."""
    group = group or {}
    known = set(order)
    ups = {t: [u for u in upstream.get(t, ()) if u in known] for t in order}
    downs: dict[str, list[str]] = {t: [] for t in order}
    for t, us in ups.items():
        for u in us:
            downs[u].append(t)
    layer = layers_of(order, ups)
    depth = max(layer.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(depth)]
    for t in order:
        columns[layer[t]].append(t)
    _order_layers(columns, ups, downs, group)
    tallest = max((len(c) for c in columns), default=0)
    height = 2 * PAD + tallest * NODE_H + max(0, tallest - 1) * GAP_Y
    nodes: dict[str, Node] = {}
    for li, col in enumerate(columns):
        used = len(col) * NODE_H + max(0, len(col) - 1) * GAP_Y
        top = (height - used) / 2
        x = PAD + li * (NODE_W + GAP_X)
        for i, t in enumerate(col):
            nodes[t] = Node(t, x, top + i * (NODE_H + GAP_Y), li, group.get(t))
    edges = []
    for t in order:
        b = nodes[t]
        for u in ups[t]:
            a = nodes[u]
            x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
            x2, y2 = b.x, b.y + NODE_H / 2
            mid = (x1 + x2) / 2
            edges.append(Edge(u, t, f"M{x1:g},{y1:g} C{mid:g},{y1:g} {mid:g},{y2:g} {x2:g},{y2:g}"))
    boxes = _boxes(nodes.values())
    width = 2 * PAD + depth * NODE_W + max(0, depth - 1) * GAP_X
    return Layout([nodes[t] for t in order], edges, boxes, float(width), float(height))


def _boxes(nodes: Iterable[Node]) -> list[Box]:
    spans: dict[str, list[float]] = {}
    for n in nodes:
        if not n.group:
            continue
        parts = n.group.split(".")
        for k in range(1, len(parts) + 1):
            g = ".".join(parts[:k])
            s = spans.setdefault(g, [n.x, n.y, n.x + NODE_W, n.y + NODE_H, float(k)])
            s[0], s[1] = min(s[0], n.x), min(s[1], n.y)
            s[2], s[3] = max(s[2], n.x + NODE_W), max(s[3], n.y + NODE_H)
    out = []
    for g, (x0, y0, x1, y1, level) in sorted(spans.items(), key=lambda kv: kv[1][4]):
        inset = PAD / 2 / level
        out.append(Box(g, x0 - inset, y0 - inset - 8, x1 - x0 + 2 * inset, y1 - y0 + 2 * inset + 8))
    return out


__all__ = ["NODE_H", "NODE_W", "Box", "Edge", "Layout", "Node", "layers_of", "layout"]
