"""Built-in sensors: wait for a file, for another pipeline's run, or for a point in time.

Each is an ordinary ``@sensor`` task; set its options per use, e.g.
``wait_for_file.with_options(poke_interval=5, timeout=600, mode="reschedule")(path)``.
"""

from __future__ import annotations

import glob
from datetime import datetime, timedelta, timezone
from typing import Any

from phloem.context import context
from phloem.dsl.task import sensor
from phloem.errors import Fail
from phloem.records import iso_utc


@sensor(poke_interval=30, timeout=24 * 3600)
def wait_for_file(path: str) -> str | None:
    """Done when ``path`` exists (glob patterns allowed); passes the first match downstream.

    Local paths and any fsspec URL (s3://...) work.
    """
    if "://" in path:
        import fsspec

        fs, _, paths = fsspec.get_fs_token_paths(path)
        return paths[0] if paths and fs.exists(paths[0]) else None
    matches = sorted(glob.glob(path))
    return matches[0] if matches else None


@sensor(poke_interval=60, timeout=24 * 3600)
def wait_for_pipeline(
    pipeline: str,
    task: str | None = None,
    *,
    delta: timedelta | float | None = None,
    latest_success_within: timedelta | float | None = None,
) -> dict[str, Any] | None:
    """Done when ``pipeline`` has a successful run (or ``task`` of it succeeded) for this
    run's logical date, or for that date less ``delta``, or for any logical date in the
    ``latest_success_within`` before it (the latest wins); passes ``{"run_id", "pipeline",
    "task", "logical_date"}`` downstream. Numbers are seconds."""
    from phloem.states import RunState
    from phloem.store import open_store

    ctx = context()
    start, end = _window(ctx.logical_date, delta, latest_success_within)
    if not ctx.store_url:  # the run's store is private to the process that drives it
        raise Fail(
            "wait_for_pipeline needs a shared store (SQLite file or PostgreSQL); an in-memory "
            "store is private to one process"
        )
    store = open_store(ctx.store_url, migrate=False)
    try:
        found = store.runs_by_logical_date(
            pipeline,
            iso_utc(start),
            iso_utc(end),
            states=() if task else (RunState.SUCCESS,),
            task_succeeded=task,
            limit=1,
        )
    finally:
        store.close()
    if not found:
        return None
    run = found[0]
    return {
        "run_id": run.run_id,
        "pipeline": pipeline,
        "task": task,
        "logical_date": run.logical_date,
    }


def _window(
    logical_date: datetime, delta: timedelta | float | None, within: timedelta | float | None
) -> tuple[datetime, datetime]:
    """The logical dates of the other pipeline's runs that count, both ends included."""
    if delta is not None and within is not None:
        raise Fail(
            "wait_for_pipeline takes delta= (one logical date: this run's less delta) or "
            "latest_success_within= (a window before this run's logical date), not both"
        )
    if delta is not None:
        target = logical_date - _seconds(delta, "delta")
        return target, target
    if within is not None:
        span = _seconds(within, "latest_success_within")
        if span < timedelta(0):
            raise Fail(f"wait_for_pipeline: latest_success_within must be >= 0, got {within!r}")
        return logical_date - span, logical_date
    return logical_date, logical_date


def _seconds(value: timedelta | float, name: str) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise Fail(f"wait_for_pipeline: {name} takes a timedelta or seconds, got {value!r}")


@sensor(poke_interval=60, timeout=7 * 24 * 3600)
def wait_until(when: str | datetime) -> str | None:
    """Done once the clock passes ``when`` (ISO 8601 or datetime; naive means UTC)."""
    target = datetime.fromisoformat(when) if isinstance(when, str) else when
    if target.tzinfo is None:
        target = target.replace(tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    return now.isoformat() if now >= target else None


__all__ = ["wait_for_file", "wait_for_pipeline", "wait_until"]
