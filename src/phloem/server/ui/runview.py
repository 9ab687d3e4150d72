"""What a run's page shows: its graph with each task's state (a mapped task as one node with
its counts), the timeline of attempts, and the states the page refreshes live.

A run with a thousand mapped instances is a few store reads and one pass over them: the
instances are summed per task, the attempts per task row of the timeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from phloem.dsl.spec import PipelineSpec
from phloem.records import TI, RunRecord
from phloem.server.ui.badges import Summary, icon, summarize, summary_of
from phloem.server.ui.layout import Layout, layout
from phloem.server.ui.specs import Graphs, group_of
from phloem.store.port import Store
from phloem.store.types import AttemptRow


@dataclass(frozen=True, slots=True)
class TaskCell:
    task_id: str
    mapped: bool
    summary: Summary
    error: str | None  # the first error among its instances

    @property
    def text(self) -> str:
        s = self.summary
        return s.mapped_text if self.mapped else s.state.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float  # percent of the timeline
    w: float
    state: str
    title: str


@dataclass(frozen=True, slots=True)
class Lane:
    task_id: str
    bars: list[Bar]


@dataclass(frozen=True, slots=True)
class RunPage:
    run: RunRecord
    spec: PipelineSpec | None
    cells: dict[str, TaskCell]  # in graph order
    graph: Layout
    lanes: list[Lane]
    span: tuple[float, float]  # the timeline's start and end (epoch seconds)


def cells_of(tis: list[TI], spec: PipelineSpec | None) -> dict[str, TaskCell]:
    per: dict[str, list[TI]] = {}
    for ti in tis:
        per.setdefault(ti.task_id, []).append(ti)
    order = list(spec.tasks) if spec is not None else []
    order += sorted(set(per) - set(order))
    out = {}
    for t in order:
        items = per.get(t, [])
        mapped = (spec is not None and t in spec.tasks and spec.tasks[t].is_mapped) or (
            len(items) > 1 or any(ti.map_index >= 0 for ti in items)
        )
        error = next((ti.error for ti in items if ti.error), None)
        summary = summarize(ti.state.value for ti in items) if items else summarize(["pending"])
        out[t] = TaskCell(t, mapped, summary, error)
    return out


def live_states(store: Store, run_id: str) -> dict[str, object]:
    """The run's state and each task's (for the page's live refresh, as JSON): read as
    counts by task and state, so a run of thousands of mapped instances costs one small
    grouped query each time the page looks."""
    run = store.get_run(run_id)
    per: dict[str, dict[str, int]] = {}
    mapped: set[str] = set()
    for c in store.listing.task_counts(run_id):
        per.setdefault(c.task_id, {})[c.state.value] = c.count
        if c.mapped:
            mapped.add(c.task_id)
    tasks = {}
    for t in sorted(per):
        s = summary_of(per[t])
        text = s.mapped_text if t in mapped or s.total > 1 else s.state.replace("_", " ")
        tasks[t] = {"state": s.state, "icon": icon(s.state), "text": text}
    return {"run": {"state": run.state.value, "icon": icon(run.state.value)}, "tasks": tasks}


def lanes_of(
    attempts: list[AttemptRow], order: list[str], now: float
) -> tuple[list[Lane], tuple[float, float]]:
    """One timeline row per task; a mapped task's attempts are summed into one bar per try."""
    starts = [a.started_at or a.queued_at for a in attempts if (a.started_at or a.queued_at)]
    if not starts:
        return [], (now, now)
    t0 = min(s for s in starts if s is not None)
    t1 = max([a.ended_at or now for a in attempts] + [t0 + 1e-3])
    scale = 100.0 / (t1 - t0)
    per: dict[str, dict[int, list[AttemptRow]]] = {}
    for a in attempts:
        per.setdefault(a.task_id, {}).setdefault(a.try_number, []).append(a)
    lanes = []
    for t in [t for t in order if t in per] + sorted(set(per) - set(order)):
        bars = []
        for try_number, rows in sorted(per[t].items()):
            begin = min((r.started_at or r.queued_at or t0) for r in rows)
            end = max((r.ended_at or now) for r in rows)
            state = summarize(r.state.value for r in rows).state
            many = f", {len(rows)} instances" if len(rows) > 1 else ""
            bars.append(
                Bar(
                    (begin - t0) * scale,
                    max(0.4, (end - begin) * scale),
                    state,
                    f"{t} try {try_number}{many}: {state.replace('_', ' ')}, {end - begin:.2f}s",
                )
            )
        lanes.append(Lane(t, bars))
    return lanes, (t0, t1)


def run_page(store: Store, graphs: Graphs, run_id: str) -> RunPage:
    run = store.get_run(run_id)
    spec = graphs.of_run(store.catalog, run)
    tis = store.load_instances(run_id)
    cells = cells_of(tis, spec)
    order = list(cells)
    if spec is not None:
        upstream = {t: list(spec.tasks[t].upstream) for t in order if t in spec.tasks}
    else:
        upstream = {}
    graph = layout(order, upstream, {t: group_of(spec, t) for t in order})
    lanes, span = lanes_of(store.attempts(run_id), order, time.time())
    return RunPage(run, spec, cells, graph, lanes, span)


__all__ = ["Bar", "Lane", "RunPage", "TaskCell", "cells_of", "lanes_of", "live_states", "run_page"]
