"""Built-in sensors: wait for a file, for another pipeline's run, or for a point in time.

Each is an ordinary ``@sensor`` task; set its options per use, e.g.
``wait_for_file.with_options(poke_interval=5, timeout=600, mode="reschedule")(path)``.
"""

from __future__ import annotations

import glob
from datetime import datetime, timezone
from typing import Any

from phloem.context import context
from phloem.dsl.task import sensor
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
def wait_for_pipeline(pipeline: str, task: str | None = None) -> dict[str, Any] | None:
    """Done when ``pipeline`` has a successful run (or ``task`` of it succeeded) for this
    run's logical date; passes ``{"run_id", "pipeline", "task"}`` downstream."""
    from phloem.states import SUCCESS_STATES, RunState
    from phloem.store import open_store

    ctx = context()
    if not ctx.store_url:  # the run's store is private to the process that drives it
        raise RuntimeError(
            "wait_for_pipeline needs a shared store (SQLite file or PostgreSQL); an in-memory "
            "store is private to one process"
        )
    store = open_store(ctx.store_url, migrate=False)
    try:
        run = store.find_run(pipeline, iso_utc(ctx.logical_date))
        if run is None:
            return None
        if task is None:
            ok = run.state is RunState.SUCCESS
        else:
            ok = any(
                ti.task_id == task and ti.state in SUCCESS_STATES
                for ti in store.load_instances(run.run_id)
            )
        return {"run_id": run.run_id, "pipeline": pipeline, "task": task} if ok else None
    finally:
        store.close()


@sensor(poke_interval=60, timeout=7 * 24 * 3600)
def wait_until(when: str | datetime) -> str | None:
    """Done once the clock passes ``when`` (ISO 8601 or datetime; naive means UTC)."""
    target = datetime.fromisoformat(when) if isinstance(when, str) else when
    if target.tzinfo is None:
        target = target.replace(tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    return now.isoformat() if now >= target else None


__all__ = ["wait_for_file", "wait_for_pipeline", "wait_until"]
