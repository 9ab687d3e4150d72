"""The pure parts of the web UI: the graph's layered layout (property-tested on random DAGs),
state badges and mapped counts, charts, the trigger form's fields, import-error lines."""

from __future__ import annotations

import enum
import math
from datetime import date, datetime
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.dsl.spec import ParamSpec
from phloem.server.ui.badges import summarize
from phloem.server.ui.charts import bar_chart, line_chart
from phloem.server.ui.forms import field_of
from phloem.server.ui.layout import NODE_H, NODE_W, layout
from phloem.server.ui.overview import import_problem


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]], dict[str, str | None]]:
    n = draw(st.integers(1, 30))
    order = [f"t{i}" for i in range(n)]
    upstream = {
        t: sorted(set(draw(st.lists(st.sampled_from(order[:i]), max_size=3)))) if i else []
        for i, t in enumerate(order)
    }
    groups = draw(st.lists(st.sampled_from([None, "a", "a.b", "c"]), min_size=n, max_size=n))
    return order, upstream, dict(zip(order, groups, strict=True))


@settings(max_examples=150, deadline=None)
@given(dags())
def test_every_edge_points_right_and_no_two_tasks_overlap(
    dag: tuple[list[str], dict[str, list[str]], dict[str, str | None]],
) -> None:
    order, upstream, groups = dag
    lay = layout(order, upstream, groups)
    pos = {n.id: n for n in lay.nodes}
    assert list(pos) == order
    for t, ups in upstream.items():
        for u in ups:
            assert pos[u].layer < pos[t].layer
            assert pos[u].x + NODE_W < pos[t].x
    assert len(lay.edges) == sum(len(u) for u in upstream.values())
    seen = set()
    for n in lay.nodes:
        assert n.x >= 0 and n.x + NODE_W <= lay.width
        assert n.y >= 0 and n.y + NODE_H <= lay.height
        assert (n.x, n.y) not in seen
        seen.add((n.x, n.y))
    boxes = {b.group: b for b in lay.boxes}
    for n in lay.nodes:
        if n.group:
            parts = n.group.split(".")
            for k in range(1, len(parts) + 1):
                b = boxes[".".join(parts[:k])]
                assert b.x <= n.x and n.x + NODE_W <= b.x + b.w
                assert b.y <= n.y and n.y + NODE_H <= b.y + b.h


def test_tasks_of_a_group_sit_together_in_a_layer() -> None:
    order = ["root", "g.a", "x", "g.b", "y"]
    ups = {t: ["root"] for t in order[1:]}
    lay = layout(order, ups, {"g.a": "g", "g.b": "g"})
    col = sorted((n for n in lay.nodes if n.layer == 1), key=lambda n: n.y)
    ids = [n.id for n in col]
    assert abs(ids.index("g.a") - ids.index("g.b")) == 1


def test_a_mapped_task_reads_as_counts_and_the_most_urgent_state() -> None:
    s = summarize(["success"] * 97 + ["failed"] * 2 + ["running"])
    assert s.state == "failed"
    assert s.mapped_text == "97/100 success, 2 failed, 1 running"
    assert summarize(["cached", "success"]).mapped_text == "2/2 success"


def test_charts_place_points_in_order_and_survive_odd_values() -> None:
    chart = line_chart(
        [
            (1.0, "a", "success", "/a"),
            (3.0, "b", "failed", "/b"),
            (math.nan, "c", "success", "/c"),
            (2.0, "d", "success", "/d"),
        ]
    )
    xs = [p.x for p in chart.points]
    assert xs == sorted(xs)
    ys = {p.label: p.y for p in chart.points}
    assert ys["b"] < ys["d"] < ys["a"]  # larger values higher up
    assert chart.path.count("L") == 2  # the NaN is left out of the line
    assert line_chart([(5.0, "only", "success", "/")]).points[0].x > 0
    bars = bar_chart("auc", [(0.5, "r1"), (-0.25, "r2"), (math.inf, "r3")])
    assert bars.bars[0].h > 0 and bars.bars[1].h > 0 and bars.bars[2].h == 0
    assert bars.bars[0].y + bars.bars[0].h == bars.bars[1].y  # both meet at zero


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_trigger_form_fields_follow_the_param_types() -> None:
    assert field_of(ParamSpec("n", 3, int)).kind == "int"
    assert field_of(ParamSpec("x", 0.5, float)).value == "0.5"
    flag = field_of(ParamSpec("f", True, bool))
    assert flag.kind == "bool" and flag.checked
    c = field_of(ParamSpec("c", Colour.BLUE, Colour))
    assert c.kind == "choice" and c.choices == ("red", "blue") and c.value == "blue"
    lit = field_of(ParamSpec("m", "a", Literal["a", "b"]))
    assert lit.kind == "choice" and lit.choices == ("a", "b")
    assert field_of(ParamSpec("d", date(2026, 1, 2), date)).value == "2026-01-02"
    dt = field_of(ParamSpec("t", datetime(2026, 1, 2, 3, 4), datetime))
    assert dt.kind == "datetime" and dt.value == "2026-01-02T03:04"
    js = field_of(ParamSpec("l", [1, 2], list))
    assert js.kind == "json" and js.value.replace("\n", "").replace(" ", "") == "[1,2]"
    assert field_of(ParamSpec("o", None, None)).optional


def test_an_import_error_names_its_line() -> None:
    tb = 'Traceback:\n  File "/p/a.py", line 3, in <module>\n  File "/p/a.py", line 9\nX'
    assert import_problem("/p/a.py", tb).line == 9
    assert import_problem("/p/b.py", "/p/b.py:14: task 'x' depends on 'y'").line == 14
    assert import_problem("/p/c.py", "cannot read it").line is None
