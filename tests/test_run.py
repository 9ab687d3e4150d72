"""Running pipelines end to end on a real store with real worker processes."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import phloem
from phloem import pipeline, task
from phloem.states import RunState, TaskState

EXECUTORS = ["inline", "local"]


@task
def make(n: int) -> list[int]:
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@pipeline
def squares(n: int = 4) -> None:
    total(square.expand(x=make(n)))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_fan_out_fan_in_with_params(executor: str, store_url: str, tmp_path: Path) -> None:
    r = phloem.run(squares, params={"n": 5}, executor=executor, store=store_url, home=tmp_path)
    assert r.state is RunState.SUCCESS
    assert r.output("total") == 30
    assert r.output("square") == [0, 1, 4, 9, 16]
    assert r.output("square", 2) == 4
    assert r.run.params == {"n": 5}


def test_mapping_over_an_empty_list_skips(tmp_path: Path) -> None:
    r = phloem.run(squares, params={"n": 0}, store="memory", home=tmp_path)
    assert r.states() == {"make": "success", "square": "skipped", "total": "skipped"}
    assert r.state is RunState.SUCCESS


@task
def ctx_info() -> dict:
    c = phloem.context()
    print("hello from print")
    c.log.info("hello from the logger")
    return {
        "task": c.task_id,
        "try": c.try_number,
        "params": c.params,
        "run": c.run_id,
        "map_index": c.map_index,
        "pipeline": c.pipeline,
    }


@pipeline
def with_context(alpha: float = 0.5) -> None:
    ctx_info()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_context_and_captured_logs(executor: str, home: Path) -> None:
    r = phloem.run(with_context, executor=executor, logical_date="2026-01-02")
    out = r.output("ctx_info")
    assert out == {
        "task": "ctx_info",
        "try": 1,
        "params": {"alpha": 0.5},
        "run": r.run_id,
        "map_index": None,
        "pipeline": "with_context",
    }
    assert r.run.logical_date.startswith("2026-01-02T00:00:00")
    log = (home / "logs" / r.run_id / "ctx_info.1.log").read_text()
    assert "hello from print" in log and "hello from the logger" in log


@task(retries=3, retry_delay=0.05, retry_backoff=2.0, max_retry_delay=0.15)
def flaky(marker: str) -> str:
    p = Path(marker)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < 3:
        raise ConnectionError(f"attempt {n + 1} failed")
    return "ok"


@pipeline
def flaky_pipeline(marker: str = "") -> None:
    flaky(marker)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retries_back_off_exponentially_with_a_cap(executor: str, tmp_path: Path) -> None:
    r = phloem.run(
        flaky_pipeline,
        params={"marker": str(tmp_path / "m")},
        executor=executor,
        store="memory",
        home=tmp_path,
    )
    assert r.state is RunState.SUCCESS
    attempts = r.app.store.attempts(r.run_id, "flaky")
    assert [a.try_number for a in attempts] == [1, 2, 3, 4]
    assert [a.state for a in attempts] == ["up_for_retry"] * 3 + ["success"]
    assert "ConnectionError: attempt 1 failed" in (attempts[0].error or "")
    gaps = [b.queued_at - a.ended_at for a, b in itertools.pairwise(attempts)]
    for gap, expected in zip(gaps, [0.05, 0.10, 0.15], strict=True):
        assert expected - 0.005 <= gap < expected + 0.25


@task(retries=1, retry_delay=0)
def always_fails() -> None:
    raise ValueError("bad data in row 7\nsecond line")


@task
def after(x: object) -> str:
    return "never"


@task(trigger_rule="all_done")
def cleanup() -> str:
    return "cleaned"


@pipeline
def failing() -> None:
    a = always_fails()
    after(a) >> cleanup()


def test_failure_after_retries_fails_downstream_and_run(tmp_path: Path) -> None:
    r = phloem.run(failing, store="memory", home=tmp_path)
    assert r.states() == {
        "always_fails": "failed",
        "after": "upstream_failed",
        "cleanup": "success",
    }
    # cleanup is the only leaf and succeeded: like Airflow, leaves decide the run's state
    assert r.state is RunState.SUCCESS
    ti = r.tasks[("always_fails", -1)]
    assert ti.try_number == 2 and ti.error == "ValueError: bad data in row 7"


@pipeline
def failing_leaf() -> None:
    after(always_fails())


def test_run_fails_when_a_leaf_fails(tmp_path: Path) -> None:
    r = phloem.run(failing_leaf, store="memory", home=tmp_path)
    assert r.state is RunState.FAILED


@task(timeout=0.5, retries=1, retry_delay=0)
def hangs() -> None:
    time.sleep(30)


@pipeline
def hanging() -> None:
    hangs()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_timeout_stops_the_attempt_and_counts_as_a_failed_try(
    executor: str, tmp_path: Path
) -> None:
    r = phloem.run(hanging, executor=executor, store="memory", home=tmp_path)
    ti = r.tasks[("hangs", -1)]
    assert ti.state is TaskState.FAILED and ti.try_number == 2
    assert "timed out after 0.5s" in (ti.error or "")


@task(retries=1, retry_delay=0)
def dies_once(marker: str) -> str:
    p = Path(marker)
    if not p.exists():
        p.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@pipeline
def dying(marker: str = "") -> None:
    after(dies_once(marker))


def test_a_killed_worker_fails_its_attempt_and_is_retried(tmp_path: Path) -> None:
    r = phloem.run(dying, params={"marker": str(tmp_path / "m")}, store="memory", home=tmp_path)
    assert r.state is RunState.SUCCESS
    first = r.app.store.attempts(r.run_id, "dies_once")[0]
    assert first.state == "up_for_retry"
    assert "SIGKILL" in (first.error or "")
    assert r.output("dies_once") == "survived"


@task(retries=3)
def unpicklable() -> object:
    return threading.Lock()


@pipeline
def bad_output() -> None:
    unpicklable()


def test_unserializable_output_fails_clearly_without_retrying(tmp_path: Path) -> None:
    r = phloem.run(bad_output, store="memory", home=tmp_path)
    ti = r.tasks[("unpicklable", -1)]
    assert ti.state is TaskState.FAILED and ti.try_number == 1
    assert "lock" in (ti.error or "") and "unpicklable" in (ti.error or "")


@task
def frame() -> object:
    import numpy as np
    import pandas as pd

    return pd.DataFrame({"a": np.arange(10_000), "b": np.arange(10_000) * 0.5})


@task
def fit(df: object) -> object:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(df[["a"]], df["b"])  # type: ignore[index]


@task
def predict(model: object, df: object) -> float:
    return float(model.predict(df[["a"]])[-1])  # type: ignore[attr-defined,index]


@pipeline
def ml_values() -> None:
    df = frame()
    predict(fit(df), df)


def test_dataframes_and_models_travel_as_artifacts_with_lineage(
    store_url: str, tmp_path: Path
) -> None:
    r = phloem.run(ml_values, store=store_url, home=tmp_path)
    assert r.state is RunState.SUCCESS
    assert r.output("predict") == pytest.approx(4999.5)
    uses = r.app.store.artifact_uses(r.run_id)
    outputs = {u.task_id: u.digest for u in uses if u.role == "output"}
    inputs = {(u.task_id, u.digest) for u in uses if u.role == "input"}
    assert set(outputs) == {"frame", "fit"}
    assert (
        ("fit", outputs["frame"]) in inputs
        and ("predict", outputs["frame"]) in inputs
        and ("predict", outputs["fit"]) in inputs
    )
    rec = r.app.store.artifact(outputs["frame"])
    assert rec is not None and rec.serializer.startswith("parquet")
    assert r.app.store.artifact(outputs["fit"]).serializer == "joblib"  # type: ignore[union-attr]


@task
def maybe_fail(flag: str) -> str:
    if Path(flag).exists():
        raise RuntimeError("flag file present")
    return "fine"


@task
def counted(x: str, counter: str) -> str:
    p = Path(counter)
    p.write_text(p.read_text() + "x" if p.exists() else "x")
    return x + "!"


@pipeline
def repairable(flag: str = "", counter: str = "") -> None:
    a = counted("start", counter)
    b = maybe_fail(flag)
    counted.with_options(name="end")(b, counter) >> a


def test_retry_resumes_without_rerunning_succeeded_tasks(store: object, tmp_path: Path) -> None:
    store_url = store
    flag, counter = tmp_path / "flag", tmp_path / "counter"
    flag.write_text("1")
    params = {"flag": str(flag), "counter": str(counter)}
    r = phloem.run(repairable, params=params, store=store_url, home=tmp_path)
    assert r.state is RunState.FAILED
    assert r.states() == {
        "maybe_fail": "failed",
        "end": "upstream_failed",
        "counted": "upstream_failed",
    }
    flag.unlink()
    r2 = phloem.retry(r.run_id, pipeline=repairable, store=store_url, home=tmp_path)
    assert r2.state is RunState.SUCCESS
    assert r2.output("end") == "fine!"
    assert counter.read_text() == "xx"
    # again: nothing to do, nothing duplicated
    r3 = phloem.retry(r.run_id, pipeline=repairable, store=store_url, home=tmp_path)
    assert r3.state is RunState.SUCCESS and counter.read_text() == "xx"
    assert r3.tasks[("maybe_fail", -1)].try_number == 2
    # a named task with its downstream re-runs only those
    r4 = phloem.retry(
        r.run_id, task="end", downstream=True, pipeline=repairable, store=store_url, home=tmp_path
    )
    assert r4.state is RunState.SUCCESS and counter.read_text() == "xxxx"
    assert r4.tasks[("maybe_fail", -1)].try_number == 2


def test_retry_of_a_mapped_source_re_expands(tmp_path: Path) -> None:
    r = phloem.run(squares, params={"n": 3}, store="memory", home=tmp_path)
    r2 = phloem.retry(
        r.run_id, task="make", downstream=True, pipeline=squares, store=r.app.store, home=tmp_path
    )
    assert r2.state is RunState.SUCCESS and r2.output("total") == 5
    assert r2.tasks[("make", -1)].try_number == 2
    # fresh instances after re-expansion continue the earlier try numbers
    assert r2.tasks[("square", 0)].try_number == 2


def test_duplicate_logical_date_is_a_clear_conflict(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'db.sqlite'}"
    phloem.run(squares, store=store, home=tmp_path, logical_date="2026-03-01")
    with pytest.raises(phloem.RunConflict, match="already has a run for logical date"):
        phloem.run(squares, store=store, home=tmp_path, logical_date="2026-03-01")


def test_an_executor_that_fails_to_start_leaves_the_run_free_to_retry(home: Path) -> None:
    from phloem.app import Phloem
    from phloem.executors.inline import InlineExecutor

    class Broken(InlineExecutor):
        shut_down = False

        def start(self, pipelines: object, artifacts: object) -> None:  # type: ignore[override]
            raise OSError("cannot start the workers")

        def shutdown(self) -> None:
            Broken.shut_down = True
            super().shutdown()

    @pipeline
    def two() -> None:
        square(3)

    app = Phloem.open()
    with pytest.raises(OSError, match="cannot start the workers"):
        phloem.run(two, executor=Broken(), app=app)
    assert Broken.shut_down  # whatever it started before failing is stopped
    (run,) = app.store.list_runs(pipeline="two")
    assert run.owner is None  # released: this process does not drive it any more
    r = phloem.retry(run.run_id, pipeline=two, executor="inline", app=app)
    assert r.succeeded
    app.close()
