"""What the pipelines page and a pipeline's grid show, read from the store.

Plain data for the templates: each page costs a fixed number of store reads (one listing of
pipelines, then one of their recent runs; one listing of runs, then one grouped count of their
instances by task and state), never one per run or task instance.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from phloem.dsl.spec import PipelineSpec
from phloem.errors import PhloemError
from phloem.records import RunRecord
from phloem.server.ui.badges import Summary, summary_of
from phloem.server.ui.specs import Graphs, group_of
from phloem.states import RunState, RunType
from phloem.store.port import Store
from phloem.store.types import PipelineRow

RECENT_RUNS = 25


@dataclass(frozen=True, slots=True)
class PipelineLine:
    row: PipelineRow
    schedule: str
    next_run: str | None
    runs: list[RunRecord]  # oldest first

    @property
    def name(self) -> str:
        return self.row.info.name


@dataclass(frozen=True, slots=True)
class ImportProblem:
    file: str
    line: int | None
    message: str


_LINE = re.compile(r"(?:line (\d+)|\.py:(\d+))")


def import_problem(file: str, message: str) -> ImportProblem:
    """The error a file gave at import, with the line it names (the last one: the deepest
    frame of a traceback, or the definition's ``file:line``)."""
    lines = [int(a or b) for a, b in _LINE.findall(message)]
    return ImportProblem(file, lines[-1] if lines else None, message)


class NextRuns:
    """When each pipeline runs next, kept until that moment: for a given last scheduled run the
    answer cannot change before it comes due, and working it out walks the schedule (a few
    milliseconds a pipeline), so a page of many pipelines would pay for it on every view."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, ...], datetime | None] = {}

    def get(self, row: PipelineRow, last: str | None, now: datetime) -> str | None:
        if row.paused or not row.active:
            return None
        i = row.info
        key = (i.name, i.schedule or "", i.timezone, i.start_date or "", last or "")
        with self._lock:
            due = self._known.get(key, now)
        if due is not None and due <= now:
            due = _next_due(row, last, now)
            with self._lock:
                if len(self._known) > 10_000:
                    self._known.clear()
                self._known[key] = due
        return due.isoformat(timespec="seconds") if due else None


def _next_due(row: PipelineRow, last: str | None, now: datetime) -> datetime | None:
    from phloem.scheduler.triggers import next_due, parse_time, schedule_of

    try:
        return next_due(row.info, schedule_of(row.info), parse_time(last), now)
    except (ValueError, ArithmeticError, PhloemError):
        return None


def describe_schedule(text: str | None, tz: str) -> str:
    if not text:
        return "manual"
    return text if tz in ("UTC", "") else f"{text} ({tz})"


def pipelines(
    store: Store, nexts: NextRuns, now: datetime | None = None
) -> tuple[list[PipelineLine], list[ImportProblem]]:
    now = now or datetime.now(timezone.utc)
    catalog = store.catalog
    rows = sorted(catalog.pipelines(), key=lambda r: (not r.active, r.info.name))
    recent = store.listing.recent_runs([r.info.name for r in rows], RECENT_RUNS) if rows else {}
    lines = []
    for r in rows:
        runs = recent[r.info.name]
        lines.append(
            PipelineLine(
                r,
                describe_schedule(r.info.schedule, r.info.timezone),
                nexts.get(r, last_timed(runs), now),
                list(reversed(runs)),
            )
        )
    problems = [import_problem(f, m) for f, m in sorted(catalog.import_errors().items())]
    return lines, problems


def last_timed(runs: list[RunRecord]) -> str | None:
    """The newest logical date of a scheduled or backfill run among ``runs`` (the recent
    ones the page shows anyway): what the next run follows. Asking the store for it over a
    long history costs a scan of every run of every pipeline; a pipeline whose recent runs
    were all manual is shown its next tick from now instead."""
    timed = [r.logical_date for r in runs if r.run_type in (RunType.SCHEDULED, RunType.BACKFILL)]
    return max(timed, default=None)


# -- the grid -------------------------------------------------------------------------------


@dataclass(slots=True)
class GridRow:
    """A task (or a group's header) across the grid's runs."""

    id: str
    label: str
    depth: int
    group: str | None  # the group it belongs to (for collapsing)
    is_group: bool
    mapped: bool = False
    cells: list[Summary | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Grid:
    pipeline: str
    runs: list[RunRecord]  # oldest first
    rows: list[GridRow]


def parse_day(text: str | None, end: bool = False) -> str | None:
    """A date filter's value as stored logical dates compare (ISO text in UTC)."""
    if not text:
        return None
    from phloem.records import iso_utc

    day = text.strip()
    if len(day) == 10 and end:
        day += "T23:59:59.999999"
    return iso_utc(day)


def grid(
    store: Store,
    graphs: Graphs,
    pipeline: PipelineRow,
    *,
    state: RunState | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: int = RECENT_RUNS,
) -> Grid:
    name = pipeline.info.name
    states = [state] if state else []
    if start or end:
        runs = store.runs_by_logical_date(
            name, start or "0000", end or "9999", states=states, limit=limit
        )
    else:
        runs = store.list_runs(name, limit=limit, states=states)
    runs = sorted(runs, key=lambda r: (r.logical_date, r.created_at))
    spec = graphs.of_pipeline(pipeline)
    counted = store.listing.task_counts_of([r.run_id for r in runs])
    per_run: list[dict[str, dict[str, int]]] = []
    mapped: set[str] = set()
    for run in runs:
        tasks: dict[str, dict[str, int]] = {}
        for c in counted[run.run_id]:
            tasks.setdefault(c.task_id, {})[c.state.value] = c.count
            if c.mapped:
                mapped.add(c.task_id)
        per_run.append(tasks)
    order = task_order(spec, per_run)
    if spec is not None:
        mapped.update(t for t in order if t in spec.tasks and spec.tasks[t].is_mapped)
    return Grid(name, runs, rows_of(order, spec, per_run, mapped))


def task_order(spec: PipelineSpec | None, per_run: list[dict[str, dict[str, int]]]) -> list[str]:
    """The graph's order, then tasks only older runs had (a task since removed)."""
    order = list(spec.tasks) if spec is not None else []
    seen = set(order)
    extra = sorted({t for tasks in per_run for t in tasks} - seen)
    return order + extra


def rows_of(
    order: list[str],
    spec: PipelineSpec | None,
    per_run: list[dict[str, dict[str, int]]],
    mapped: set[str],
) -> list[GridRow]:
    # tasks of a group together, under a header row per group (nested groups nest)
    by_group: dict[str | None, list[str]] = {}
    for t in order:
        by_group.setdefault(group_of(spec, t), []).append(t)
    out: list[GridRow] = []
    opened: set[str] = set()

    def open_group(g: str) -> None:
        parts = g.split(".")
        for k in range(1, len(parts) + 1):
            sub = ".".join(parts[:k])
            if sub in opened:
                continue
            opened.add(sub)
            members = [
                t
                for gg, ts in by_group.items()
                if gg and (gg == sub or gg.startswith(sub + "."))
                for t in ts
            ]
            parent = ".".join(parts[: k - 1]) or None
            row = GridRow(sub, parts[k - 1], k - 1, parent, True)
            for tasks in per_run:
                merged: dict[str, int] = {}
                for t in members:
                    for st, n in tasks.get(t, {}).items():
                        merged[st] = merged.get(st, 0) + n
                row.cells.append(summary_of(merged) if merged else None)
            out.append(row)

    placed: set[str] = set()
    for t in order:
        if t in placed:
            continue
        g = group_of(spec, t)
        members = [t] if not g else by_group[g]
        if g:
            open_group(g)
        for m in members:
            placed.add(m)
            depth = len(g.split(".")) if g else 0
            label = m[len(g) + 1 :] if g and m.startswith(g + ".") else m
            row = GridRow(m, label, depth, g, False, m in mapped)
            for tasks in per_run:
                counts = tasks.get(m)
                row.cells.append(summary_of(counts) if counts else None)
            out.append(row)
    return out


__all__ = [
    "RECENT_RUNS",
    "Grid",
    "GridRow",
    "ImportProblem",
    "PipelineLine",
    "describe_schedule",
    "grid",
    "import_problem",
    "NextRuns",
    "parse_day",
    "pipelines",
]
