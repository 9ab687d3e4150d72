"""Schedule arithmetic: when a pipeline fires and which data interval each run covers.

A run's *logical date* is the start of the interval it covers; the run for ``[start, end)``
fires at ``end`` (Airflow's convention), so a daily pipeline's run for Monday starts on Tuesday.
All instants in and out are timezone-aware; results are in UTC.

A cron expression is read in the pipeline's time zone. Daylight saving time is handled so
that each schedule keeps its promise to the people who wrote it:

- **Specific hours** (``30 2 * * *``, ``@daily``): the expression names local wall-clock
  times, and each fires once. A time repeated when clocks go back fires at its *first*
  occurrence only. A time skipped when clocks go forward fires at the *first valid instant
  after the gap* (``30 2 * * *`` in Europe/Berlin on the spring-forward day fires at 03:00
  CEST); several skipped times collapse into that one fire.
- **Every hour** (the hour field matches all 24 hours: ``*/15 * * * *``, ``@hourly``): the
  expression follows elapsed time. An instant fires when the local clock then reads a
  matching time, so an hourly pipeline runs every real hour, 25 times on the autumn day and
  23 in spring, and none of its intervals is two hours long or empty.

This is Vixie/Debian cron's rule, decided here on the parsed hour set rather than the text.
An :class:`Interval` is exact elapsed time anchored at the pipeline's start date; its time
zone is kept for display only. cronsim is imported lazily so ``import phloem`` stays light.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phloem.errors import DefinitionError

__all__ = [
    "PRESETS",
    "Continuous",
    "Cron",
    "Interval",
    "Schedule",
    "describe",
    "parse_schedule",
]

PRESETS: MappingProxyType[str, str] = MappingProxyType(
    {
        "@hourly": "0 * * * *",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *",
        "@yearly": "0 0 1 1 *",
    }
)
"""Cron presets and the five-field expressions they stand for."""

_UTC = timezone.utc
_US = timedelta(microseconds=1)
_HINT = (
    "use five fields: minute hour day-of-month month day-of-week, "
    "or one of @hourly @daily @weekly @monthly @yearly"
)
# (name, lowest, highest, symbolic names) per cron field, in order.
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    ),
    ("day-of-week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
# How far back to look for an earlier fire, tried in turn: each fits one schedule's period.
_LOOKBACK = tuple(
    timedelta(minutes=m) for m in (2, 2 * 60, 2 * 1440, 40 * 1440, 400 * 1440, 30 * 366 * 1440)
)
_REFERENCE = datetime(2000, 1, 1)  # any instant: used to parse and to prove an expression fires


@dataclass(frozen=True)
class Cron:
    """A cron schedule evaluated in time zone ``tz`` (see the module docstring for DST)."""

    expr: str
    tz: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _elapsed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expr, elapsed = _check_cron(self.expr)
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "_zone", _zone(self.tz))
        object.__setattr__(self, "_elapsed", elapsed)

    def next_fire_after(self, dt: datetime, start_date: datetime | None = None) -> datetime:
        """First fire strictly after ``dt``; ``start_date`` is unused: a cron grid has no anchor."""
        from cronsim import CronSim

        _require_aware(dt, "dt")
        local = dt.astimezone(self._zone)
        if self._elapsed:
            # Hour is "*" so cronsim walks real instants and compares the local clock.
            fields = self.expr.split()
            fields[1] = "*"
            for hit in CronSim(" ".join(fields), local):
                instant = hit.astimezone(_UTC)
                if instant > dt:
                    return instant
        else:
            # Walk naive wall-clock matches; their instants never decrease, so the first one
            # past dt is the answer (it skips repeats of an hour dt is in the second run of).
            for wall in CronSim(self.expr, local.replace(tzinfo=None)):
                instant = _wall_instant(wall, self._zone)
                if instant > dt:
                    return instant
        raise ValueError(f"{describe(self)} does not fire after {dt.isoformat()}")

    def data_interval(self, logical_date: datetime) -> tuple[datetime, datetime]:
        """The interval ``[logical_date, next fire)``; ``logical_date`` must be a fire time."""
        _require_aware(logical_date, "logical_date")
        start = logical_date.astimezone(_UTC)
        if self.next_fire_after(start - _US) != start:
            raise ValueError(
                f"{logical_date.isoformat()} is not a fire time of {describe(self)}; a logical "
                "date is the start of a schedule interval (see intervals() or "
                "latest_complete_interval())"
            )
        return start, self.next_fire_after(start)

    def latest_complete_interval(
        self, now: datetime, start_date: datetime
    ) -> tuple[datetime, datetime] | None:
        """The latest interval that starts at or after ``start_date`` and has ended by ``now``."""
        _require_aware(now, "now")
        _require_aware(start_date, "start_date")
        end = self._fire_before(now + _US)
        start = None if end is None else self._fire_before(end)
        if end is None or start is None or start < start_date:
            return None
        return start, end

    def intervals(
        self, start_date: datetime, end_date: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Whole intervals whose start lies in ``[start_date, end_date]``, for backfill.

        A partial interval before the first fire at or after ``start_date`` is left out; the last
        interval may end after ``end_date`` (for catch-up, pass the start of
        :meth:`latest_complete_interval` as ``end_date``).
        """
        _require_aware(start_date, "start_date")
        _require_aware(end_date, "end_date")
        out: list[tuple[datetime, datetime]] = []
        start = self.next_fire_after(start_date - _US)
        while start <= end_date:
            end = self.next_fire_after(start)
            out.append((start, end))
            start = end
        return out

    def next_interval_after(
        self, prev_logical_date: datetime | None, start_date: datetime
    ) -> tuple[datetime, datetime]:
        """The interval after run ``prev_logical_date``; if None, the first from ``start_date``."""
        _require_aware(start_date, "start_date")
        after = start_date - _US
        if prev_logical_date is not None:
            _require_aware(prev_logical_date, "prev_logical_date")
            after = max(after, prev_logical_date)
        start = self.next_fire_after(after)
        return start, self.next_fire_after(start)

    def _fire_before(self, dt: datetime) -> datetime | None:
        """The latest fire strictly before ``dt``, found with next_fire_after so the two agree."""
        for back in _LOOKBACK:
            try:
                fire = self.next_fire_after(dt - back)
            except (ValueError, OverflowError):
                return None
            if fire < dt:
                break
        else:
            return None
        for _ in range(8):  # usually one or two steps: the lookback fits the period
            following = self.next_fire_after(fire)
            if following >= dt:
                return fire
            fire = following
        # Dense fires in a long window: bisect, keeping next(lo) < dt <= next(hi).
        lo, hi = fire - _US, dt - _US
        while hi - lo > _US:
            mid = lo + (hi - lo) // 2
            if self.next_fire_after(mid) < dt:
                lo = mid
            else:
                hi = mid
        return self.next_fire_after(lo)


@dataclass(frozen=True)
class Interval:
    """Fires every ``every`` of elapsed time, anchored at the pipeline's start date.

    Across a DST change a one-day interval therefore moves by an hour on the local clock; use
    a cron schedule to stay at a local time of day. ``tz`` is kept for display.
    """

    every: timedelta
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.every, timedelta) or self.every <= timedelta(0):
            raise DefinitionError(
                f"invalid schedule interval {self.every!r}: it must be a positive "
                "datetime.timedelta, e.g. timedelta(hours=6); use None for manual runs only"
            )
        _zone(self.tz)

    def next_fire_after(self, dt: datetime, start_date: datetime | None = None) -> datetime:
        """First point of the grid ``start_date + k * every`` strictly after ``dt``."""
        _require_aware(dt, "dt")
        if start_date is None:
            raise ValueError(
                f"{describe(self)} is anchored at the pipeline's start date; "
                "pass start_date= to next_fire_after()"
            )
        _require_aware(start_date, "start_date")
        anchor = start_date.astimezone(_UTC)
        return anchor + ((dt - anchor) // self.every + 1) * self.every

    def data_interval(self, logical_date: datetime) -> tuple[datetime, datetime]:
        """The interval ``[logical_date, logical_date + every)``."""
        _require_aware(logical_date, "logical_date")
        start = logical_date.astimezone(_UTC)
        return start, start + self.every

    def latest_complete_interval(
        self, now: datetime, start_date: datetime
    ) -> tuple[datetime, datetime] | None:
        """The latest interval of the grid from ``start_date`` that has ended by ``now``."""
        _require_aware(now, "now")
        _require_aware(start_date, "start_date")
        anchor = start_date.astimezone(_UTC)
        done = (now - anchor) // self.every
        if done < 1:
            return None
        end = anchor + done * self.every
        return end - self.every, end

    def intervals(
        self, start_date: datetime, end_date: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Intervals from ``start_date`` whose start lies in ``[start_date, end_date]``."""
        _require_aware(start_date, "start_date")
        _require_aware(end_date, "end_date")
        anchor = start_date.astimezone(_UTC)
        if end_date < anchor:
            return []
        count = (end_date - anchor) // self.every + 1
        return [(anchor + k * self.every, anchor + (k + 1) * self.every) for k in range(count)]

    def next_interval_after(
        self, prev_logical_date: datetime | None, start_date: datetime
    ) -> tuple[datetime, datetime]:
        """The interval after run ``prev_logical_date``; if None, the first from ``start_date``."""
        _require_aware(start_date, "start_date")
        anchor = start_date.astimezone(_UTC)
        start = anchor
        if prev_logical_date is not None:
            start = max(anchor, self.next_fire_after(prev_logical_date, start_date))
        return start, start + self.every


@dataclass(frozen=True)
class Continuous:
    """Start a new run as soon as the previous one ends; it has no time grid."""


Schedule: TypeAlias = Cron | Interval | Continuous


def parse_schedule(value: object, tz: str = "UTC") -> Schedule | None:
    """Turn what an author passed as ``schedule=`` into a Schedule, at definition time.

    ``None`` means manual runs only; a cron string or preset gives :class:`Cron`;
    ``"@continuous"`` gives :class:`Continuous`; a ``timedelta`` gives :class:`Interval`.
    Anything else, and an unknown time zone, raise :class:`DefinitionError`.
    """
    _zone(tz)
    if value is None:
        return None
    if isinstance(value, timedelta):
        return Interval(value, tz)
    if isinstance(value, str):
        if value.strip().lower() == "@continuous":
            return Continuous()
        return Cron(value, tz)
    raise DefinitionError(
        f"invalid schedule {value!r} of type {type(value).__name__}: pass a cron string such "
        "as '0 2 * * *', a preset such as '@daily', '@continuous', a datetime.timedelta, "
        "or None for manual runs only"
    )


def describe(schedule: Schedule | None) -> str:
    """A short phrase for people, e.g. ``cron '0 2 * * *' (Europe/Berlin)``."""
    if schedule is None:
        return "manual runs only"
    if isinstance(schedule, Continuous):
        return "continuous (a new run starts when the previous one ends)"
    if isinstance(schedule, Interval):
        return f"every {_human(schedule.every)} from the start date ({schedule.tz})"
    return f"cron '{schedule.expr}' ({schedule.tz})"


def _zone(tz: str) -> ZoneInfo:
    """Load an IANA time zone, or say which name was wrong and suggest the closest one."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        pass
    import zoneinfo

    hint = ""
    if isinstance(tz, str):
        names = {name.lower(): name for name in zoneinfo.available_timezones()}
        close = difflib.get_close_matches(tz.lower(), names, n=1)
        hint = f"did you mean '{names[close[0]]}'? " if close else ""
    raise DefinitionError(
        f"unknown time zone {tz!r}; {hint}use an IANA name such as 'UTC', "
        "'Europe/Berlin' or 'America/New_York'"
    )


def _require_aware(dt: datetime, name: str) -> None:
    """Refuse naive datetimes: their instant would depend on the machine's zone."""
    if not isinstance(dt, datetime) or dt.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime, got {dt!r}; e.g. datetime.now(timezone.utc)"
        )


def _wall_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a local wall-clock time fires: its first occurrence, or the end of its gap."""
    instant = wall.replace(tzinfo=zone).astimezone(_UTC)  # fold=0: the first occurrence
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Skipped by a forward jump: fold=0 lands after the jump and fold=1 before it, so
    # bisect (in whole seconds, as tz transitions are) for the first instant after it.
    lo = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(instant.timestamp())
    after = instant.astimezone(zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, _UTC)


def _check_cron(expr: str) -> tuple[str, bool]:
    """Validate a cron string or preset; return its five fields and whether it runs hourly."""
    from cronsim import CronSim, CronSimError

    if not isinstance(expr, str):
        raise DefinitionError(f"invalid cron expression {expr!r}: it must be a string; {_HINT}")
    text = expr.strip()
    if not text:
        raise DefinitionError(f"invalid cron expression '{expr}': it is empty; {_HINT}")
    if text.startswith("@"):
        if text.lower() not in PRESETS:
            raise DefinitionError(
                f"unknown schedule preset '{expr}'; use one of @hourly @daily @weekly "
                "@monthly @yearly (@midnight = @daily), @continuous, or five cron fields: "
                "minute hour day-of-month month day-of-week"
            )
        text = PRESETS[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        extra = " (seconds are not supported)" if len(fields) == 6 else ""
        raise DefinitionError(
            f"invalid cron expression '{expr}': it has {len(fields)} field"
            f"{'' if len(fields) == 1 else 's'}, expected 5{extra}; {_HINT}"
        )
    normal = " ".join(_single_range_steps(i, f) for i, f in enumerate(fields))
    try:
        sim = CronSim(normal, _REFERENCE)
    except CronSimError:
        raise DefinitionError(
            f"invalid cron expression '{expr}': {_diagnose(fields)}; {_HINT}"
        ) from None
    try:
        next(sim)
    except StopIteration:
        raise DefinitionError(
            f"invalid cron expression '{expr}': it never fires (no date matches both the "
            f"day-of-month '{fields[2]}' and day-of-week '{fields[4]}' fields in month "
            f"'{fields[3]}'); {_HINT}"
        ) from None
    return normal, sim.hours == set(range(24))


def _single_range_steps(index: int, text: str) -> str:
    """Rewrite ``5-5/10`` as ``5``: cronsim reads a one-value range with a step as ``5-59/10``."""
    symbols = _FIELDS[index][3]

    def value(part: str) -> int | None:
        if part.upper() in symbols:
            return symbols.index(part.upper())
        return int(part) if part.isascii() and part.isdigit() else None

    terms = []
    for term in text.split(","):
        base, slash, _ = term.partition("/")
        first, dash, last = base.partition("-")
        single = slash and dash and value(first) is not None and value(first) == value(last)
        terms.append(first if single else term)
    return ",".join(terms)


def _diagnose(fields: list[str]) -> str:
    """Say which field cronsim rejected and why: probe each field alone."""
    from cronsim import CronSim, CronSimError

    for index, text in enumerate(fields):
        probe = ["*"] * 5
        probe[index] = text
        try:
            CronSim(" ".join(probe), _REFERENCE)
        except CronSimError:
            return _field_problem(index, text)
    return (
        f"day-of-month field '{fields[2]}' never occurs in the months of the month field "
        f"'{fields[3]}'"
    )


def _field_problem(index: int, text: str) -> str:
    """Explain what is wrong with one field's text; generic if nothing specific is found."""
    name, low, high, symbols = _FIELDS[index]

    def value_problem(part: str) -> str | None:
        if part.upper() in symbols:
            return None
        if not part:
            return f"{name} field '{text}' has a missing value"
        if not (part.isascii() and part.isdigit()):
            named = f" or a name such as {symbols[1]}" if symbols else ""
            return f"{name} field value '{part}' is not a number{named}"
        if not low <= int(part) <= high:
            return f"{name} field value {int(part)} is out of range {low}-{high}"
        return None

    def number(part: str) -> int:
        return symbols.index(part.upper()) if part.upper() in symbols else int(part)

    for term in text.split(","):
        if not term:
            return f"{name} field '{text}' has an empty list item"
        base, slash, step = term.partition("/")
        if slash and not (step.isascii() and step.isdigit() and int(step) > 0):
            return f"{name} field step '{step}' in '{term}' must be a whole number of at least 1"
        if base == "*":
            continue
        if index == 4 and "#" in base:
            day, _, nth = base.partition("#")
            if not (nth.isascii() and nth.isdigit() and 1 <= int(nth) <= 5):
                return f"day-of-week field '{term}': the n in DAY#n must be 1-5, got '{nth}'"
            base = day
        first, dash, last = base.partition("-")
        for part in (first, last) if dash else (first,):
            problem = value_problem(part)
            if problem:
                return problem
        if dash and number(first) > number(last):
            return f"{name} field range '{base}' runs backwards; write the smaller value first"
    return f"{name} field '{text}' is not valid"


def _human(every: timedelta) -> str:
    """Spell a duration out: ``timedelta(hours=36)`` -> ``1 day 12 hours``."""
    if every.microseconds:
        return str(every)
    seconds = int(every.total_seconds())
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or str(every)
