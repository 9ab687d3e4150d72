"""What each attempt does in a worker, made cheaper, still does the same: a scalar output is
stored as the encoder stores it, a result gets its usage without losing a field, a task's logger
writes to its own log (its handler made only when looked at), an attempt with nothing to limit
runs unlimited while one with a limit is limited, and a driver never blocks writing to a worker
busy with an attempt (which reads its pipe only between attempts). (The guard's list of
children, now kept open and read again after each attempt: tests/test_process_lifetime.py.)"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import phloem
from attempts import make_attempt, measures, waits_for
from phloem import pipeline, task
from phloem.artifacts import ArtifactStore
from phloem.artifacts.codec import DEFAULT_INLINE_LIMIT, to_stored_json
from phloem.artifacts.structured import Encoder
from phloem.executors.local import LocalExecutor
from phloem.executors.threads import ThreadBudget
from phloem.runner import Result, run_attempt
from phloem.runner.attempt import with_effects
from phloem.runner.capture import OutputCapture
from phloem.runner.execute import _scalar_json, _store
from phloem.runner.usage import memory_limit
from phloem.states import AttemptOutcome


class Level(enum.IntEnum):
    HIGH = 3


SCALARS: list[Any] = [
    None, True, False, 0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**400,
    0.0, -0.0, 1.5, 1e308, 5e-324, 0.1 + 0.2, math.inf, -math.inf, math.nan, Level.HIGH, "1",
]  # fmt: skip


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_a_scalar_output_is_stored_as_the_encoder_stores_it(value: Any, tmp_path: Path) -> None:
    fast = _scalar_json(value)
    if fast is None:  # not a plain JSON scalar: the encoder's way, as before
        return
    store = ArtifactStore(str(tmp_path))
    expected = to_stored_json(
        Encoder(store, plain_numbers=True).encode(value, DEFAULT_INLINE_LIMIT)
    )
    assert fast == expected
    assert _store(value, store) == (expected, (), None)


def test_only_plain_json_scalars_take_the_short_way() -> None:
    taken = [i for i, v in enumerate(SCALARS) if _scalar_json(v) is not None]
    # not: ints beyond 64 bits, infinities, NaN, an int subclass, a string
    assert taken == [*range(8), *range(11, 17)]


def test_a_result_gets_effects_without_losing_a_field() -> None:
    r = Result("r1", "t", 2, 3, AttemptOutcome.SUCCESS, 1.0, 2.0, output="1", map_length=4,
               follow=("a",), error="e", retryable=False, inputs=("d",), effects=())  # fmt: skip
    import dataclasses

    assert with_effects(r, ("x",)) == dataclasses.replace(r, effects=("x",))  # type: ignore[arg-type]


# -- the task's logger -----------------------------------------------------------------------


@task
def logs_twice() -> int:
    log = phloem.context().log
    log.info("first %d", 1)
    log.debug("not at INFO")
    assert [type(h) for h in log.handlers] == [logging.StreamHandler]
    log.handlers.clear()  # a task may drop its handler: only its own attempt is affected
    return len(log.handlers)


@task
def logs_quietly() -> int:
    return 0


@pipeline
def logging_tasks() -> None:
    logs_twice()
    logs_quietly()


def _run(tmp_path: Path, task_id: str) -> Result:
    attempt = make_attempt(tmp_path, "logging_tasks", task_id)
    capture = OutputCapture(sticky=False)
    try:
        spec = logging_tasks.spec.tasks[task_id]
        return run_attempt(attempt, spec, ArtifactStore(str(tmp_path / "a")), capture=capture)
    finally:
        capture.close()


def test_a_tasks_logger_writes_to_its_attempts_log_with_its_own_handler(tmp_path: Path) -> None:
    result = _run(tmp_path, "logs_twice")
    assert result.outcome == AttemptOutcome.SUCCESS and result.output == "0"
    text = Path(make_attempt(tmp_path, "logging_tasks", "logs_twice").log_path).read_text()
    assert text.endswith(" INFO first 1\n") and "not at INFO" not in text
    again = _run(tmp_path / "again", "logs_twice")  # a fresh logger, with its handler
    assert again.outcome == AttemptOutcome.SUCCESS


def test_a_task_that_does_not_log_writes_no_log(tmp_path: Path) -> None:
    assert _run(tmp_path, "logs_quietly").outcome == AttemptOutcome.SUCCESS
    assert not Path(make_attempt(tmp_path, "logging_tasks", "logs_quietly").log_path).exists()


# -- limits ----------------------------------------------------------------------------------


def test_an_attempt_without_limits_enters_nothing_and_one_with_a_limit_is_limited() -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    with memory_limit(None), ThreadBudget().attempt(1.0):
        assert resource.getrlimit(resource.RLIMIT_AS) == before
    with memory_limit(2**30):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        assert soft != resource.RLIM_INFINITY
    assert resource.getrlimit(resource.RLIMIT_AS) == before


# -- the pipe to a busy worker ---------------------------------------------------------------


@pipeline
def busy_worker() -> None:
    measures(waits_for(""))


def test_a_driver_never_blocks_sending_to_a_worker_busy_with_an_attempt(tmp_path: Path) -> None:
    """A worker reads its pipe only between attempts: a message larger than the pipe holds,
    sent while it runs one, is written as the pipe drains, and the driver's ``wait`` returns
    meanwhile (it used to be read by a thread of the worker at once)."""
    go_on = tmp_path / "go-on"
    ex = LocalExecutor(workers=1, prefetch=2)
    ex.start({"busy_worker": busy_worker.spec}, ArtifactStore(str(tmp_path / "a")))
    big = os.urandom(8 * 2**20)  # far more than a socket buffer
    first = make_attempt(tmp_path, "busy_worker", "waits_for", args=(str(go_on),))
    second = make_attempt(tmp_path, "busy_worker", "measures", args=(big,))
    results: dict[str, Result] = {}
    try:
        ex.submit(first)
        ex.submit(second)
        waited = threading.Thread(target=ex.wait, args=(0,), daemon=True)
        waited.start()
        waited.join(120)
        assert not waited.is_alive()  # not stuck writing to the busy worker
        assert ex._workers[0].out  # what the pipe did not take yet waits in the driver
        go_on.touch()
        while len(results) < 2:
            for r in ex.wait(60):
                if isinstance(r, Result):
                    results[r.task_id] = r
    finally:
        ex.shutdown()
    assert results["waits_for"].output == '"went on"'
    assert results["measures"].output == str(len(big))


# -- the attempt's log -------------------------------------------------------------------------


def test_a_log_makes_its_directory_when_it_is_missing_and_only_then(tmp_path: Path) -> None:
    from phloem.runner.logs import AttemptLog

    first = AttemptLog(str(tmp_path / "logs" / "r1" / "a.1.log"))
    first.write(b"one\n")  # the run's first log: its directory is made
    first.close()
    second = AttemptLog(str(tmp_path / "logs" / "r1" / "b.1.log"))
    second.write(b"two\n")  # the directory is there: opened at once
    second.close()
    (tmp_path / "logs" / "r1" / "a.1.log").unlink()
    (tmp_path / "logs" / "r1" / "b.1.log").unlink()
    (tmp_path / "logs" / "r1").rmdir()  # removed meanwhile (logs cleaned up): made again
    third = AttemptLog(str(tmp_path / "logs" / "r1" / "c.1.log"))
    third.write(b"three\n")
    third.close()
    assert (tmp_path / "logs" / "r1" / "c.1.log").read_bytes() == b"three\n"
    assert first.problem is second.problem is third.problem is None
