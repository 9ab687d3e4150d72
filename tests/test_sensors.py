"""Sensors: poke and reschedule modes, timeouts, soft_fail, and the built-ins."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import phloem
from phloem import pipeline, sensor, task
from phloem.sensors import wait_for_file, wait_for_pipeline, wait_until
from phloem.states import RunState, TaskState


@sensor(poke_interval=0.05, timeout=5)
def file_ready(path: str) -> str | None:
    return path if Path(path).exists() else None


@task
def consume(x: object) -> str:
    return f"got {x}"


@pipeline
def waiting(path: str = "", mode: str = "poke") -> None:
    consume(file_ready(path))


@sensor(poke_interval=0.05, timeout=30)
def third_poke(counter: str) -> str | None:
    """True at its third poke (pokes are counted in a file: each may run in another worker)."""
    with open(counter, "a") as fh:
        fh.write("poke\n")
    pokes = len(Path(counter).read_text().splitlines())
    return f"poke {pokes}" if pokes >= 3 else None


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_waits_then_passes_its_value(mode: str, tmp_path: Path) -> None:
    counter = tmp_path / "pokes"

    @pipeline
    def p() -> None:
        consume(third_poke.with_options(mode=mode)(str(counter)))

    r = phloem.run(p, store="memory", home=tmp_path)
    assert r.succeeded and r.output("consume") == "got poke 3"
    tries = r.tasks[("third_poke", -1)]
    if mode == "reschedule":
        # each poke was a short attempt that gave its worker slot back
        assert tries.try_number == 3
        events = r.app.store.events(r.run_id)
        assert sum(e.new_state == "up_for_reschedule" for e in events) == 2
    else:
        assert tries.try_number == 1


@pytest.mark.parametrize("soft_fail", [False, True])
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_timeout_fails_or_skips(mode: str, soft_fail: bool, tmp_path: Path) -> None:
    @pipeline
    def p() -> None:
        s = file_ready.with_options(timeout=0.3, mode=mode, soft_fail=soft_fail, retries=2)
        consume(s(str(tmp_path / "never")))

    r = phloem.run(p, store="memory", home=tmp_path)
    ti = r.tasks[("file_ready", -1)]
    if soft_fail:
        assert ti.state is TaskState.SKIPPED
        assert r.task_state("consume") is TaskState.SKIPPED
    else:
        assert ti.state is TaskState.FAILED and "timed out" in (ti.error or "")
        assert r.state is RunState.FAILED


def test_builtin_file_and_time_sensors(tmp_path: Path) -> None:
    (tmp_path / "part-0001.parquet").write_text("x")
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()

    @pipeline
    def p() -> None:
        f = wait_for_file.with_options(poke_interval=0.05, timeout=2)(
            str(tmp_path / "part-*.parquet")
        )
        t = wait_until.with_options(poke_interval=0.05, timeout=2)(past)
        consume(f) >> consume(t)

    r = phloem.run(p, store="memory", home=tmp_path)
    assert r.succeeded
    assert r.output("wait_for_file").endswith("part-0001.parquet")


@task
def check_drift() -> dict:
    return {"drift": True}


@pipeline
def model_monitoring() -> None:
    check_drift()


@pipeline
def retraining() -> None:
    wait = wait_for_pipeline.with_options(poke_interval=0.05, timeout=10, mode="reschedule")(
        "model_monitoring", task="check_drift"
    )
    consume(wait)


def test_wait_for_another_pipeline_same_logical_date(home: Path) -> None:
    day = "2026-05-01T02:00:00+00:00"
    result: dict[str, phloem.RunResult] = {}
    t = threading.Thread(target=lambda: result.update(r=phloem.run(retraining, logical_date=day)))
    t.start()
    time.sleep(0.5)
    assert "r" not in result  # still waiting: no monitoring run for that date yet
    phloem.run(model_monitoring, logical_date="2026-04-30")  # another date does not count
    time.sleep(0.3)
    assert "r" not in result
    phloem.run(model_monitoring, logical_date=day)
    t.join(20)
    r = result["r"]
    assert r.succeeded
    assert r.output("wait_for_pipeline")["pipeline"] == "model_monitoring"


@sensor(poke_interval=0.1, timeout=0.5)
def hangs_while_poking() -> None:
    time.sleep(60)  # e.g. a network call without a timeout


@pipeline
def hung_sensor() -> None:
    consume(hangs_while_poking())


def test_a_poke_that_never_returns_is_stopped_at_the_sensor_deadline(tmp_path: Path) -> None:
    started = time.time()
    r = phloem.run(hung_sensor, store="memory", home=tmp_path)
    assert time.time() - started < 10
    ti = r.tasks[("hangs_while_poking", -1)]
    assert ti.state is TaskState.FAILED and "a poke did not return" in (ti.error or "")
    assert r.task_state("consume") is TaskState.UPSTREAM_FAILED


def test_a_retried_sensor_gets_its_whole_time_again(store: object, tmp_path: Path) -> None:
    target = tmp_path / "late.csv"

    @pipeline
    def p() -> None:
        consume(file_ready.with_options(timeout=0.3)(str(target)))

    r = phloem.run(p, store=store, home=tmp_path)  # type: ignore[arg-type]
    assert r.task_state("file_ready") is TaskState.FAILED
    target.write_text("x")
    again = phloem.retry(r.run_id, pipeline=p, store=store, home=tmp_path)  # type: ignore[arg-type]
    assert again.succeeded and again.output("consume") == f"got {target}"
