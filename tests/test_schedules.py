"""Schedule arithmetic: parsing, error messages, DST, and agreement with a brute-force search."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phloem.errors import DefinitionError
from phloem.schedules import (
    PRESETS,
    Continuous,
    Cron,
    Interval,
    describe,
    parse_schedule,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "expr"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        (" @Daily ", "0 0 * * *"),
    ],
)
def test_presets_stand_for_their_cron_expression(preset: str, expr: str) -> None:
    assert parse_schedule(preset, tz="Europe/Berlin") == Cron(expr, "Europe/Berlin")


def test_every_preset_is_listed() -> None:
    assert set(PRESETS) == {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly"}


def test_parse_other_kinds() -> None:
    assert parse_schedule(None) is None
    assert parse_schedule("@continuous") == Continuous()
    assert parse_schedule(timedelta(hours=6), tz="Asia/Tokyo") == Interval(
        timedelta(hours=6), "Asia/Tokyo"
    )
    assert parse_schedule("  0   2 * *  MON-FRI ") == Cron("0 2 * * MON-FRI", "UTC")
    assert Cron("0  2 * * *").expr == "0 2 * * *"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("61 * * * *", "minute field value 61 is out of range 0-59"),
        ("0 24 * * *", "hour field value 24 is out of range 0-23"),
        ("0 0 32 * *", "day-of-month field value 32 is out of range 1-31"),
        ("0 0 0 * *", "day-of-month field value 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field value 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field value 8 is out of range 0-7"),
        ("0 0 * FOO *", "month field value 'FOO' is not a number or a name such as FEB"),
        ("*/0 * * * *", "minute field step '0' in '*/0' must be a whole number of at least 1"),
        ("30-10 * * * *", "minute field range '30-10' runs backwards"),
        ("0 0 1,,2 * *", "day-of-month field '1,,2' has an empty list item"),
        ("0 0 * * MON#6", "the n in DAY#n must be 1-5, got '6'"),
        ("0 0 31 2 *", "day-of-month field '31' never occurs in the months of the month field"),
        ("* * * *", "it has 4 fields, expected 5"),
        ("* * * * * *", "it has 6 fields, expected 5 (seconds are not supported)"),
        ("every day", "it has 2 fields, expected 5"),
        ("banana", "it has 1 field, expected 5"),
        ("a b c d e", "minute field value 'a' is not a number"),
        ("", "it is empty"),
        ("   ", "it is empty"),
    ],
)
def test_invalid_cron_says_what_where_and_how_to_fix(text: str, reason: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_schedule(text)
    message = str(caught.value)
    assert f"invalid cron expression '{text}'" in message
    assert reason in message
    assert "use five fields: minute hour day-of-month month day-of-week" in message
    assert "@daily" in message


def test_unknown_preset() -> None:
    with pytest.raises(DefinitionError, match="unknown schedule preset '@fortnightly'"):
        parse_schedule("@fortnightly")


@pytest.mark.parametrize("value", [5, 2.5, True, b"0 * * * *", ["0 * * * *"], object()])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(DefinitionError, match=r"invalid schedule .* of type .*timedelta"):
        parse_schedule(value)


@pytest.mark.parametrize("every", [timedelta(0), timedelta(hours=-1)])
def test_interval_must_be_positive(every: timedelta) -> None:
    with pytest.raises(DefinitionError, match=r"must be a positive datetime\.timedelta"):
        parse_schedule(every)


@pytest.mark.parametrize("value", [None, "@continuous", "0 2 * * *", timedelta(hours=1)])
def test_unknown_time_zone_is_named_with_a_suggestion(value: object) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_schedule(value, tz="Europe/Berln")
    assert "unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?" in str(caught.value)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", "Europe"])
def test_bad_time_zones(tz: str) -> None:
    with pytest.raises(DefinitionError, match=f"unknown time zone '{tz}'"):
        Cron("0 2 * * *", tz)


def test_describe() -> None:
    assert describe(parse_schedule("0 2 * * *", "Europe/Berlin")) == (
        "cron '0 2 * * *' (Europe/Berlin)"
    )
    assert describe(parse_schedule("@hourly")) == "cron '0 * * * *' (UTC)"
    assert describe(Interval(timedelta(days=1, hours=6))) == (
        "every 1 day 6 hours from the start date (UTC)"
    )
    assert describe(None) == "manual runs only"
    assert describe(Continuous()).startswith("continuous")


def test_import_does_not_load_cronsim() -> None:
    code = "import sys, phloem.schedules; assert 'cronsim' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Cron("0 2 * * *").next_fire_after(datetime(2026, 1, 1))


# --- DST ---------------------------------------------------------------------------------


def fires_between(cron: Cron, start: datetime, end: datetime) -> list[datetime]:
    out, t = [], cron.next_fire_after(start - timedelta(microseconds=1))
    while t < end:
        out.append(t)
        t = cron.next_fire_after(t)
    return out


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
def test_daily_0230_fires_once_every_day_of_2026(zone: ZoneInfo) -> None:
    cron = Cron("30 2 * * *", zone.key)
    fires = fires_between(
        cron, local_midnight(date(2026, 1, 1), zone), local_midnight(date(2027, 1, 1), zone)
    )
    per_day = Counter(f.astimezone(zone).date() for f in fires)
    assert len(per_day) == 365
    assert set(per_day.values()) == {1}


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        (BERLIN, date(2026, 3, 29), date(2026, 10, 25)),
        (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_skipped_time_fires_at_end_of_gap_and_repeated_time_at_first_occurrence(
    zone: ZoneInfo, spring: date, autumn: date
) -> None:
    cron = Cron("30 2 * * *", zone.key)
    (fire,) = fires_between(
        cron, local_midnight(spring, zone), local_midnight(spring, zone) + 20 * HOUR
    )
    assert fire.astimezone(zone).time() == time(3, 0)  # 02:30 does not exist: first valid instant
    assert fire.astimezone(zone).fold == 0

    cron = Cron("30 1 * * *" if zone is NEW_YORK else "30 2 * * *", zone.key)
    (fire,) = fires_between(
        cron, local_midnight(autumn, zone), local_midnight(autumn, zone) + 20 * HOUR
    )
    first = datetime.combine(autumn, fire.astimezone(zone).time(), tzinfo=zone)  # fold=0
    assert fire == first.astimezone(UTC)


def test_skipped_times_collapse_into_one_fire() -> None:
    cron = Cron("0,30 2 * * *", "Europe/Berlin")
    day = local_midnight(date(2026, 3, 29), BERLIN)
    assert fires_between(cron, day, day + 20 * HOUR) == [datetime(2026, 3, 29, 1, tzinfo=UTC)]


def test_second_run_of_a_repeated_hour_does_not_fire_again() -> None:
    cron = Cron("50 2 * * *", "Europe/Berlin")
    in_second_run = datetime(2026, 10, 25, 2, 45, tzinfo=BERLIN, fold=1)
    assert cron.next_fire_after(in_second_run) == datetime(2026, 10, 26, 1, 50, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        (BERLIN, date(2026, 3, 29), date(2026, 10, 25)),
        (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_hourly_follows_real_hours_across_dst(zone: ZoneInfo, spring: date, autumn: date) -> None:
    cron = Cron("@hourly", zone.key)
    for day, count in ((spring, 23), (autumn, 25)):
        start = local_midnight(day, zone)
        end = local_midnight(day + timedelta(days=1), zone)
        spans = cron.intervals(start, end - timedelta(microseconds=1))
        assert len(spans) == count
        assert all(e - s == HOUR for s, e in spans)


def test_interval_is_elapsed_time() -> None:
    start = datetime(2026, 3, 28, tzinfo=BERLIN).astimezone(UTC)
    spans = Interval(timedelta(days=1), "Europe/Berlin").intervals(start, start + timedelta(days=2))
    assert [s.astimezone(BERLIN).hour for s, _ in spans] == [0, 0, 1]


# --- brute force reference ---------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A generated cron expression and the sets it means, built without parsing its text."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_and: bool

    def day_ok(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom, dow = d.day in self.days, d.isoweekday() % 7 in self.weekdays
        return (dom and dow) if self.day_and else (dom or dow)

    @property
    def every_hour(self) -> bool:
        return self.hours == frozenset(range(24))


def cron_field(
    low: int, high: int, top: int | None = None
) -> st.SearchStrategy[tuple[str, frozenset[int]]]:
    """One field as (text, values); ``top`` caps plain values (e.g. day-of-month at 28)."""
    top = high if top is None else top
    value = st.integers(low, top)
    step = st.integers(1, high - low + 1)

    @st.composite
    def term(draw: st.DrawFn) -> tuple[str, frozenset[int]]:
        kind = draw(st.sampled_from(["value", "range", "range-step"]))
        a = draw(value)
        if kind == "value":
            return str(a), frozenset({a})
        b = draw(st.integers(a, top))
        if kind == "range":
            return f"{a}-{b}", frozenset(range(a, b + 1))
        s = draw(step)
        return f"{a}-{b}/{s}", frozenset(range(a, b + 1, s))

    star = st.just(("*", frozenset(range(low, high + 1))))
    star_step = step.map(lambda s: (f"*/{s}", frozenset(range(low, high + 1, s))))
    listed = st.lists(term(), min_size=1, max_size=3).map(
        lambda ts: (",".join(t for t, _ in ts), frozenset().union(*(v for _, v in ts)))
    )
    return st.one_of(star, star, star_step, listed)


@st.composite
def cron_specs(draw: st.DrawFn) -> Spec:
    minute = draw(cron_field(0, 59))
    hour = draw(st.one_of(st.just(("*", frozenset(range(24)))), cron_field(0, 23)))
    dom = draw(st.one_of(st.just(("*", frozenset(range(1, 32)))), cron_field(1, 31, top=28)))
    month = draw(st.one_of(st.just(("*", frozenset(range(1, 13)))), cron_field(1, 12)))
    dow = draw(st.one_of(st.just(("*", frozenset(range(8)))), cron_field(0, 7)))
    return Spec(
        text=" ".join(t for t, _ in (minute, hour, dom, month, dow)),
        minutes=minute[1],
        hours=hour[1],
        days=dom[1],
        months=month[1],
        weekdays=frozenset(v % 7 for v in dow[1]),
        day_and=dom[0].startswith("*") or dow[0].startswith("*"),
    )


def wall_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """Documented rule: a wall time fires at its first occurrence, or at the gap's end."""
    while True:
        instant = wall.replace(tzinfo=zone).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            return instant
        wall += MINUTE  # skipped: the first wall-clock minute that exists is the gap's end


def brute_next(spec: Spec, zone: ZoneInfo, dt: datetime) -> datetime:
    """Next fire by scanning minutes (skipping whole days and hours that cannot match)."""
    if spec.every_hour:  # elapsed time: scan real minutes, read the local clock
        t = dt.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE
        while True:
            local = t.astimezone(zone)
            if not spec.day_ok(local.date()):
                t = t.replace(minute=0) + HOUR  # zones here have whole-hour offsets
            elif local.minute in spec.minutes:
                return t
            else:
                t += MINUTE
    # wall clock: scan local minutes; keep the earliest instant past dt
    wall = dt.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) - 3 * HOUR
    best: datetime | None = None
    limit: datetime | None = None
    while limit is None or wall <= limit:
        if not spec.day_ok(wall.date()):
            wall = datetime.combine(wall.date() + timedelta(days=1), time())
            continue
        if wall.hour not in spec.hours:
            wall = wall.replace(minute=0) + HOUR
            continue
        if wall.minute in spec.minutes:
            instant = wall_instant(wall, zone)
            if instant > dt and (best is None or instant < best):
                best, limit = instant, limit or wall + 3 * HOUR
        wall += MINUTE
    assert best is not None
    return best


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
# Instants within three days of a DST change in Berlin or New York.
TRANSITIONS = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
]
near_dst = st.builds(
    lambda t, s: t + timedelta(seconds=s),
    st.sampled_from(TRANSITIONS),
    st.integers(-3 * 86400, 3 * 86400),
)


@FAST
@given(cron_specs(), instants)
def test_next_fire_matches_brute_force_in_utc(spec: Spec, dt: datetime) -> None:
    assert Cron(spec.text).next_fire_after(dt) == brute_next(spec, ZoneInfo("UTC"), dt)


@FAST
@given(cron_specs(), near_dst, st.sampled_from([BERLIN, NEW_YORK]))
def test_next_fire_matches_brute_force_across_dst(spec: Spec, dt: datetime, zone: ZoneInfo) -> None:
    assert Cron(spec.text, zone.key).next_fire_after(dt) == brute_next(spec, zone, dt)


@FAST
@given(
    cron_specs(),
    st.one_of(instants, near_dst),
    st.integers(0, 10**12),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
)
def test_next_fire_is_later_and_monotonic(spec: Spec, dt: datetime, gap_us: int, tz: str) -> None:
    cron = Cron(spec.text, tz)
    first, later = (
        cron.next_fire_after(dt),
        cron.next_fire_after(dt + timedelta(microseconds=gap_us)),
    )
    assert first > dt
    assert first.tzinfo is UTC
    assert first <= later


@FAST
@given(
    cron_specs(),
    st.one_of(instants, near_dst),
    st.integers(0, 4 * 86400),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
)
def test_intervals_tile_the_window(spec: Spec, start: datetime, seconds: int, tz: str) -> None:
    cron = Cron(spec.text, tz)
    end = start + timedelta(seconds=seconds)
    spans = cron.intervals(start, end)
    first = cron.next_fire_after(start - timedelta(microseconds=1))
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    if spans:
        assert spans[0][0] == first
        assert spans[-1][1] > end  # nothing left out at the end
    else:
        assert first > end
    for (_, e), (s2, _) in itertools.pairwise(spans):
        assert e == s2  # contiguous, no overlap
    for s, e in spans:
        assert start <= s <= end
        assert s < e
        assert cron.data_interval(s) == (s, e)
    assert cron.next_interval_after(None, start) == cron.data_interval(first)
    if spans:
        assert cron.next_interval_after(spans[-1][0], start)[0] == spans[-1][1]


@FAST
@given(
    cron_specs(),
    st.one_of(instants, near_dst),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
)
def test_latest_complete_interval(spec: Spec, now: datetime, tz: str) -> None:
    cron = Cron(spec.text, tz)
    start_date = now - timedelta(days=800)
    latest = cron.latest_complete_interval(now, start_date)
    if latest is None:  # rare expressions (e.g. Friday the 13th in May) may not fit
        assert all(e > now for _, e in cron.intervals(start_date, now))
        return
    s, e = latest
    assert start_date <= s < e <= now < cron.next_fire_after(e)
    assert cron.next_fire_after(s) == e
    assert cron.latest_complete_interval(now, s + timedelta(microseconds=1)) is None


def test_data_interval_refuses_a_date_off_the_schedule() -> None:
    with pytest.raises(ValueError, match="is not a fire time of cron '0 2 \\* \\* \\*'"):
        Cron("0 2 * * *").data_interval(datetime(2026, 1, 1, 2, 1, tzinfo=UTC))


# --- Interval ------------------------------------------------------------------------------


@FAST
@given(
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3)),
    instants,
    st.integers(0, 10 * 86400),
)
def test_interval_anchors_at_start_date(every: timedelta, start: datetime, seconds: int) -> None:
    schedule = Interval(every, "Europe/Berlin")
    now = start + timedelta(seconds=seconds)
    spans = schedule.intervals(start, now)
    assert spans[0] == (start, start + every) == schedule.next_interval_after(None, start)
    for k, (s, e) in enumerate(spans):
        assert s == start + k * every and e == s + every
        assert schedule.data_interval(s) == (s, e)
    assert spans[-1][0] <= now < spans[-1][0] + every
    assert schedule.next_interval_after(spans[0][0], start) == (start + every, start + 2 * every)
    # an unaligned previous date snaps forward onto the grid
    assert schedule.next_interval_after(start + every / 2, start)[0] == start + every
    fire = schedule.next_fire_after(now, start_date=start)
    assert now < fire <= now + every and (fire - start) % every == timedelta(0)
    latest = schedule.latest_complete_interval(now, start)
    if now - start < every:
        assert latest is None
    else:
        assert latest is not None and latest[1] <= now < latest[1] + every
        assert (latest[0] - start) % every == timedelta(0)


def test_interval_needs_its_anchor() -> None:
    with pytest.raises(ValueError, match="pass start_date="):
        Interval(timedelta(hours=1)).next_fire_after(datetime(2026, 1, 1, tzinfo=UTC))
