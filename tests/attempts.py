"""An attempt as a driver hands it to an executor, for tests that run one without a driver, and
the tasks such tests hand to workers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from phloem import task
from phloem.runner import Attempt, log_path


def make_attempt(
    tmp_path: Path, pipeline: str = "p", task_id: str = "one", **changes: Any
) -> Attempt:
    """Try 1 of ``pipeline``'s unmapped ``task_id`` in run ``r1``, its log under ``tmp_path``;
    ``changes`` set any other field."""
    fields: dict[str, Any] = {
        "run_id": "r1",
        "pipeline": pipeline,
        "task_id": task_id,
        "map_index": -1,
        "try_number": 1,
        "args": (),
        "kwargs": {},
        "logical_date": "2026-01-01T00:00:00+00:00",
        "data_interval_start": None,
        "data_interval_end": None,
        "params": {},
        "log_path": log_path(tmp_path, "r1", task_id, -1, 1),
        "first_started_at": time.time(),
    }
    fields.update(changes)
    return Attempt(**fields)


@task
def waits_for(path: str) -> str:
    """Keeps its worker busy until ``path`` exists."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return "went on"


@task
def measures(data: bytes) -> int:
    return len(data)
