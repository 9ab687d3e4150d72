"""A fan-out wider than ``COPY_MIN_ROWS``, run for real on SQLite and PostgreSQL: its wide
turns write their instances, attempts and events in bulk (by COPY on PostgreSQL, between the
pipelined statements), and every row lands once, in order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import phloem
from phloem import task
from phloem.store import open_store
from phloem.store.prepared import COPY_MIN_ROWS

WIDTH = 3 * COPY_MIN_ROWS


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def double(x: int) -> int:
    return 2 * x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@phloem.pipeline(name="wide_turns")
def wide(n: int = WIDTH) -> None:
    total(double.expand(x=numbers(n)))


def test_every_row_of_a_wide_fan_out_lands_once(sql_url: str, home: Path) -> None:
    result = phloem.run(wide, store=sql_url, workers=2)
    assert result.succeeded
    assert result.output("total") == 2 * sum(range(WIDTH))
    store = open_store(sql_url)
    try:
        attempts = store.attempts(result.run_id)
        events = store.events(result.run_id)
    finally:
        store.close()
    mapped = [a for a in attempts if a.task_id == "double"]
    assert sorted(a.map_index for a in mapped) == list(range(WIDTH))
    assert all(a.state == "success" and a.ended_at is not None for a in mapped)
    # each mapped instance: made by the expansion, then queued, running, success; each change
    # once, in the order it happened (the store reads events in the order they were written)
    paths: dict[int | None, list[tuple[str | None, str]]] = {}
    for e in events:
        if e.task_id == "double" and e.map_index != -1:
            paths.setdefault(e.map_index, []).append((e.old_state, e.new_state))
    expected = [
        ("pending", "scheduled"),
        ("scheduled", "queued"),
        ("queued", "running"),
        ("running", "success"),
    ]
    assert sorted(i for i in paths if i is not None) == list(range(WIDTH))
    assert all(path == expected for path in paths.values())
    assert Counter(e.new_state for e in events if e.task_id is None)["success"] == 1
