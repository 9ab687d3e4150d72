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
        # both hold at their first poke; the long timeouts only keep a busy machine from
        # failing them
        f = wait_for_file.with_options(poke_interval=0.05, timeout=60)(
            str(tmp_path / "part-*.parquet")
        )
        t = wait_until.with_options(poke_interval=0.05, timeout=60)(past)
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
    r = phloem.run(hung_sensor, store="memory", home=tmp_path)
    ti = r.tasks[("hangs_while_poking", -1)]
    assert ti.state is TaskState.FAILED and "a poke did not return" in (ti.error or "")
    assert r.task_state("consume") is TaskState.UPSTREAM_FAILED


def test_a_retried_sensor_gets_its_whole_time_again(store: object, tmp_path: Path) -> None:
    target = tmp_path / "late.csv"

    @pipeline
    def p() -> None:
        # long enough that a slow start of the retry's poke still fits in it
        consume(file_ready.with_options(timeout=2)(str(target)))

    r = phloem.run(p, store=store, home=tmp_path)  # type: ignore[arg-type]
    assert r.task_state("file_ready") is TaskState.FAILED
    target.write_text("x")
    again = phloem.retry(r.run_id, pipeline=p, store=store, home=tmp_path)  # type: ignore[arg-type]
    assert again.succeeded and again.output("consume") == f"got {target}"


# -- wait_for_pipeline across logical dates (Airflow's ExternalTaskSensor execution_delta) ------

D = datetime(2026, 5, 10, 2, 0, tzinfo=timezone.utc)


@task
def drift(fail: bool = False) -> dict:
    if fail:
        raise RuntimeError("no drift data")
    return {"drift": True}


@task
def after_drift(x: dict) -> str:
    return "done"


@pipeline
def monitoring(fail: bool = False) -> None:
    after_drift(drift(fail))


@pipeline
def monitoring_late() -> None:
    drift() >> drift.with_options(name="broken")(True)


def _waiting(**how: object) -> phloem.Pipeline:
    @pipeline(name="retrain")
    def retrain() -> None:
        wait = wait_for_pipeline.with_options(poke_interval=0.05, timeout=0.5, soft_fail=True)
        consume(wait(**how))

    return retrain


def _found(r: phloem.RunResult) -> dict | None:
    if r.task_state("wait_for_pipeline") is TaskState.SKIPPED:  # it timed out
        return None
    assert r.task_state("wait_for_pipeline") is TaskState.SUCCESS
    return r.output("wait_for_pipeline")


def test_delta_waits_for_the_run_at_this_logical_date_less_delta(home: Path) -> None:
    day_before = phloem.run(monitoring, logical_date=D - timedelta(days=1), executor="inline")
    same_day = phloem.run(monitoring, logical_date=D, executor="inline")
    wait = _waiting(pipeline="monitoring", delta=timedelta(days=1))
    found = _found(phloem.run(wait, logical_date=D, executor="inline"))
    assert found is not None and found["run_id"] == day_before.run_id
    assert found["logical_date"] == (D - timedelta(days=1)).isoformat(timespec="microseconds")
    # seconds work too; a logical date with no run of the other pipeline waits (and times out)
    found = _found(
        phloem.run(
            _waiting(pipeline="monitoring", delta=3600),
            logical_date=D + timedelta(hours=1),
            executor="inline",
        )
    )
    assert found is not None and found["run_id"] == same_day.run_id
    assert _found(phloem.run(wait, logical_date=D + timedelta(days=5), executor="inline")) is None


def test_latest_success_within_takes_the_latest_successful_run_in_the_window(
    home: Path,
) -> None:
    old = phloem.run(monitoring, logical_date=D - timedelta(days=5), executor="inline")
    assert old.succeeded
    failed = phloem.run(
        monitoring, logical_date=D - timedelta(days=2), params={"fail": True}, executor="inline"
    )
    assert not failed.succeeded
    later = phloem.run(monitoring, logical_date=D + timedelta(hours=1), executor="inline")
    assert later.succeeded
    wait = _waiting(pipeline="monitoring", latest_success_within=timedelta(days=3))
    # the old success is outside the window, the one inside failed, a later one does not count
    assert _found(phloem.run(wait, logical_date=D, executor="inline")) is None
    good = phloem.run(monitoring, logical_date=D - timedelta(days=3), executor="inline")
    newer = phloem.run(monitoring, logical_date=D - timedelta(days=1), executor="inline")
    found = _found(phloem.run(wait, logical_date=D + timedelta(minutes=1), executor="inline"))
    assert found is not None and found["run_id"] == newer.run_id
    # the window's start is included
    assert good.succeeded
    edge = _waiting(pipeline="monitoring", latest_success_within=timedelta(hours=36))
    found = _found(phloem.run(edge, logical_date=D - timedelta(hours=36), executor="inline"))
    assert found is not None and found["run_id"] == good.run_id


def test_latest_success_within_of_one_task(home: Path) -> None:
    # the run failed at its end, but the task waited for succeeded
    r = phloem.run(monitoring_late, logical_date=D - timedelta(days=1), executor="inline")
    assert r.task_state("drift") is TaskState.SUCCESS
    wait = _waiting(pipeline="monitoring_late", task="drift", latest_success_within=86400 * 2)
    found = _found(phloem.run(wait, logical_date=D, executor="inline"))
    assert found is not None and found["run_id"] == r.run_id and found["task"] == "drift"
    assert r.state is RunState.FAILED and r.task_state("broken") is TaskState.FAILED
    other = _waiting(pipeline="monitoring_late", task="broken", delta=timedelta(days=1))
    later = D + timedelta(minutes=1)
    assert _found(phloem.run(other, logical_date=later, executor="inline")) is None


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ({"delta": timedelta(days=1), "latest_success_within": timedelta(days=1)}, "not both"),
        ({"latest_success_within": timedelta(days=-1)}, "must be >= 0"),
        ({"delta": "1 day"}, "takes a timedelta or seconds"),
    ],
)
def test_wrong_windows_fail_at_once_without_retries(
    home: Path, how: dict[str, object], message: str
) -> None:
    @pipeline(name="retrain")
    def retrain() -> None:
        wait_for_pipeline.with_options(poke_interval=0.05, timeout=5, retries=3)(
            "monitoring", **how
        )

    r = phloem.run(retrain, logical_date=D, executor="inline")
    ti = r.tasks[("wait_for_pipeline", -1)]
    assert ti.state is TaskState.FAILED and message in (ti.error or "")
    assert ti.try_number == 1


def test_wait_for_pipeline_on_every_store(store_url: str, tmp_path: Path) -> None:
    from phloem.app import Phloem

    app = Phloem.open(store_url, tmp_path)
    try:
        earlier = phloem.run(monitoring, logical_date=D - timedelta(hours=5), app=app)
        wait = _waiting(pipeline="monitoring", latest_success_within=timedelta(hours=6))
        r = phloem.run(wait, logical_date=D, app=app, executor="inline")
        ti = r.tasks[("wait_for_pipeline", -1)]
        if not app.store.capabilities.shared:
            assert ti.state is TaskState.FAILED and "needs a shared store" in (ti.error or "")
            return
        found = _found(r)
        assert found is not None and found["run_id"] == earlier.run_id
    finally:
        app.close()


def test_a_templated_path_is_filled_before_the_first_poke(tmp_path: Path) -> None:
    (tmp_path / "raw-20260510.csv").write_text("x")

    @pipeline
    def p() -> None:
        wait = wait_for_file.with_options(poke_interval=0.05, timeout=2, mode="reschedule")
        consume(wait(phloem.template(str(tmp_path / "raw-{ds_nodash}.csv"))))

    r = phloem.run(p, store="memory", home=tmp_path, logical_date=D, executor="inline")
    assert r.succeeded and r.output("wait_for_file") == str(tmp_path / "raw-20260510.csv")
