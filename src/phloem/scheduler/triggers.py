"""Which runs a schedule asks for now. Pure: no store, no clock of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from phloem.schedules import Continuous, Cron, Interval, Schedule, parse_schedule
from phloem.store.types import PipelineInfo


@dataclass(frozen=True, slots=True)
class DueRun:
    pipeline: str
    logical_date: datetime
    interval: tuple[datetime, datetime] | None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def schedule_of(info: PipelineInfo) -> Schedule | None:
    text = info.schedule
    if not text:
        return None
    if text.startswith("@every ") and text.endswith("s"):
        return Interval(timedelta(seconds=float(text[7:-1])), info.timezone)
    return parse_schedule(text, info.timezone)


def due_runs(
    info: PipelineInfo,
    schedule: Schedule | None,
    last_logical: datetime | None,
    active: int,
    now: datetime,
    first_seen: datetime | None = None,
) -> list[DueRun]:
    """The runs ``info`` should have now, oldest first, never more than its free run slots.

    catchup=True creates every missed interval since the start date (or the last run);
    catchup=False only the latest complete one. Without a start date, scheduling starts from
    when the pipeline was first seen. ``@continuous`` asks for a run whenever none is active.
    """
    free = info.max_active_runs - active
    if schedule is None or free <= 0:
        return []
    if isinstance(schedule, Continuous):
        return [DueRun(info.name, now, None)] if active == 0 else []
    assert isinstance(schedule, (Cron, Interval))
    start = parse_time(info.start_date) or first_seen or now
    if not info.catchup:
        latest = schedule.latest_complete_interval(now, start)
        if latest is None or (last_logical is not None and latest[0] <= last_logical):
            return []
        return [DueRun(info.name, latest[0], latest)]
    out: list[DueRun] = []
    prev = last_logical
    while len(out) < free:
        begin, end = schedule.next_interval_after(prev, start)
        if end > now:
            break
        out.append(DueRun(info.name, begin, (begin, end)))
        prev = begin
    return out


def next_due(
    info: PipelineInfo,
    schedule: Schedule | None,
    last_logical: datetime | None,
    now: datetime,
    first_seen: datetime | None = None,
) -> datetime | None:
    """When this pipeline next needs the scheduler's attention (its next interval's end)."""
    if schedule is None or isinstance(schedule, Continuous):
        return None
    assert isinstance(schedule, (Cron, Interval))
    start = parse_time(info.start_date) or first_seen or now
    _, end = schedule.next_interval_after(last_logical, start)
    return end if end > now else schedule.next_fire_after(now, start)
