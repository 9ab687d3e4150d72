"""Task options that shape a run: pools, priorities, callbacks, exits."""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import phloem
from phloem import pipeline, task
from phloem.artifacts import ArtifactStore
from phloem.errors import PhloemError
from phloem.states import TaskState


@task(pool="gpu")
def gpu_job(i: int) -> float:
    start = time.time()
    time.sleep(0.15)
    return start


@pipeline
def gpu_jobs() -> None:
    gpu_job.expand(i=[0, 1, 2])


def test_pool_slots_bound_concurrency(store: object, tmp_path: Path) -> None:
    store.set_pool("gpu", 1)  # type: ignore[attr-defined]
    r = phloem.run(gpu_jobs, store=store, home=tmp_path, workers=3)  # type: ignore[arg-type]
    assert r.succeeded
    spans = sorted((a.started_at, a.ended_at) for a in r.app.store.attempts(r.run_id))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01  # one at a time


@task(priority=10)
def urgent() -> float:
    return time.time()


@task
def routine() -> float:
    return time.time()


@pipeline
def prioritized() -> None:
    routine()
    routine()
    urgent()


def test_higher_priority_starts_first_when_slots_are_scarce(tmp_path: Path) -> None:
    r = phloem.run(prioritized, executor="inline", store="memory", home=tmp_path)
    starts = {t: r.output(t) for t in ("urgent", "routine", "routine__1")}
    assert starts["urgent"] < starts["routine"] and starts["urgent"] < starts["routine__1"]


calls: list[tuple[str, str, int]] = []


def record(ctx: object) -> None:
    calls.append((ctx.task_id, ctx.state, ctx.try_number))  # type: ignore[attr-defined]


def broken_callback(ctx: object) -> None:
    raise RuntimeError("callbacks must never break a run")


@task(retries=1, retry_delay=0, on_retry=record, on_failure=record)
def bad() -> None:
    raise ValueError("nope")


@task(on_success=broken_callback)
def good() -> int:
    return 1


@pipeline
def with_callbacks() -> None:
    bad()
    good()


def test_callbacks_fire_once_per_transition_and_cannot_break_a_run(tmp_path: Path) -> None:
    calls.clear()
    r = phloem.run(with_callbacks, executor="inline", store="memory", home=tmp_path)
    assert calls == [("bad", "up_for_retry", 1), ("bad", "failed", 2)]
    assert r.task_state("good") is TaskState.SUCCESS


#: the file ``next_step`` writes, and whether ``wait_for_next`` saw it
_NEXT: dict[str, Any] = {}


def wait_for_next(ctx: Any) -> None:
    """Holds the driver until ``next_step`` has run, for at most a minute: it can run only
    if it was handed out before this callback of the task it follows."""
    marker: Path = _NEXT["marker"]
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    _NEXT["seen"] = marker.exists()


@task(on_success=wait_for_next)
def first_step(marker: str) -> str:
    return marker


@task
def next_step(marker: str) -> None:
    Path(marker).write_text("ran")


@pipeline
def slow_callback(marker: str = "") -> None:
    next_step(first_step(marker))


def test_a_slow_callback_does_not_hold_up_the_tasks_after_it(tmp_path: Path) -> None:
    _NEXT.clear()
    _NEXT["marker"] = tmp_path / "next-ran"
    r = phloem.run(
        slow_callback,
        params={"marker": str(_NEXT["marker"])},
        executor="local",
        store="memory",
        home=tmp_path,
    )
    assert r.succeeded
    assert _NEXT["seen"] is True  # the next task ran while the callback waited


@task
def exits() -> None:
    sys.exit(3)


@pipeline
def exiting() -> None:
    exits()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_sys_exit_in_a_task_fails_only_that_task(executor: str, tmp_path: Path) -> None:
    r = phloem.run(exiting, executor=executor, store="memory", home=tmp_path)
    ti = r.tasks[("exits", -1)]
    assert ti.state is TaskState.FAILED
    assert "sys.exit(3)" in (ti.error or "")


@task
def skipper() -> None:
    phloem.skip("nothing new today")


@task
def downstream(x: object) -> str:
    return "ran"


@task(trigger_rule="none_failed")
def tolerant(x: object) -> str:
    return f"got {x!r}"


@pipeline
def skipping() -> None:
    s = skipper()
    downstream(s)
    tolerant(s)


def test_skip_from_inside_a_task_propagates_by_trigger_rules(tmp_path: Path) -> None:
    r = phloem.run(skipping, executor="inline", store="memory", home=tmp_path)
    assert r.states() == {"skipper": "skipped", "downstream": "skipped", "tolerant": "success"}
    assert r.output("tolerant") == "got None"


@task(teardown=True)
def tidy() -> str:
    return "tidied"


@task
def always_broken() -> None:
    raise ValueError("broken")


@task
def after_broken(x: object) -> None:
    return None


@pipeline
def with_teardown() -> None:
    a = always_broken()
    after_broken(a) >> tidy()


def test_teardown_runs_regardless_and_does_not_decide_the_run(tmp_path: Path) -> None:
    assert with_teardown.spec.tasks["tidy"].options.trigger_rule.value == "all_done"
    assert with_teardown.spec.leaves == ("after_broken",)
    r = phloem.run(with_teardown, executor="inline", store="memory", home=tmp_path)
    assert r.task_state("tidy") is TaskState.SUCCESS
    assert r.state is phloem.RunState.FAILED


@task
def uses_a_library() -> str:
    import json as _json
    from email import message_from_string

    return _json.dumps(str(message_from_string("a: b")["a"]))


@pipeline
def imports_inside() -> None:
    uses_a_library()


def test_modules_imported_in_task_bodies_are_preloaded_once_in_the_driver() -> None:
    from phloem.executors.preload import imported_in_tasks

    assert imported_in_tasks({"p": imports_inside.spec}) == ["json", "email"]


def test_imports_of_a_task_are_read_from_its_code() -> None:
    """Nested functions count, relative imports do not, and a task whose source cannot be read
    (exec'd here) is covered too."""
    from phloem.executors.preload import imported_in_tasks

    namespace: dict[str, Any] = {}
    exec(
        "def body():\n"
        "    import csv, xml.dom as dom\n"
        "    def inner():\n"
        "        from email import message\n"
        "    try:\n"
        "        from . import sibling\n"
        "    except ImportError:\n"
        "        pass\n"
        "    return [__import__('json') for _ in ()]\n",
        namespace,
    )

    @pipeline
    def sourceless() -> None:
        task(namespace["body"])()

    assert imported_in_tasks({"p": sourceless.spec}) == ["csv", "xml.dom", "email"]


# -- failures that must not be retried -------------------------------------------------------


class Transient(Exception):
    pass


@task(retries=3)
def refuses() -> None:
    raise phloem.Fail("schema changed: column 'amount' is gone")


@task(retries=3, retry_on=(TimeoutError, Transient))
def picky(kind: str) -> None:
    raise {"timeout": TimeoutError, "transient": Transient, "value": ValueError}[kind]("boom")


@task(retries=3, no_retry_on=KeyError)
def never_on_key() -> None:
    raise KeyError("missing")


@pipeline
def no_retries() -> None:
    refuses()
    picky.with_options(name="on_timeout")("timeout")
    picky.with_options(name="on_transient")("transient")
    picky.with_options(name="on_value")("value")
    never_on_key()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_fail_and_retry_filters_decide_whether_a_failure_retries(home: Path, executor: str) -> None:
    r = phloem.run(no_retries, executor=executor)
    tries = {k[0]: ti.try_number for k, ti in r.tasks.items()}
    assert {k[0]: ti.state for k, ti in r.tasks.items()} == {t: TaskState.FAILED for t in tries}
    assert tries == {
        "refuses": 1,
        "on_timeout": 4,
        "on_transient": 4,
        "on_value": 1,
        "never_on_key": 1,
    }
    assert r.tasks[("refuses", -1)].error == "Fail: schema changed: column 'amount' is gone"


def test_retry_filters_take_exception_classes_only() -> None:
    with pytest.raises(phloem.DefinitionError, match="'retry_on' must be an exception class"):
        task(retry_on="TimeoutError")(lambda: None)
    with pytest.raises(phloem.DefinitionError, match="'no_retry_on'"):
        task(no_retry_on=[KeyError, 3])(lambda: None)


@task(pool="gpu")
def gpu_once() -> int:
    return 1


@pipeline
def one_gpu_job() -> None:
    gpu_once()


def test_a_pool_is_shared_by_every_run_a_loop_drives(store: object, tmp_path: Path) -> None:
    """Two runs, one gpu slot, a driver with room for more: one run starts its task and the
    other waits; with the slot held by a run another scheduler drives, neither starts."""
    from phloem.app import Phloem
    from phloem.driver import Loop, RunSession
    from phloem.executors.inline import InlineExecutor
    from phloem.runs import create_run

    env = Phloem.open(store, tmp_path)  # type: ignore[arg-type]
    env.store.set_pool("gpu", 1)
    runs = [create_run(env.store, one_gpu_job.spec, logical_date=f"2026-01-0{i}") for i in (1, 2)]
    ex = InlineExecutor()
    ex.slots = 4  # type: ignore[misc]
    ex.start({"one_gpu_job": one_gpu_job.spec}, ArtifactStore(str(tmp_path / "artifacts")))
    loop = Loop(ex, pools={"gpu": 1})
    for run in runs:
        loop.add(RunSession(env.store, one_gpu_job.spec, run, env.artifacts, env.logs_dir))
    loop.set_pools({"gpu": 1}, held_elsewhere={"gpu": 1})
    loop.turn(max_wait=0)
    assert [len(env.store.attempts(r.run_id)) for r in runs] == [0, 0]
    loop.set_pools({"gpu": 1})
    loop.turn(max_wait=0)
    assert sorted(len(env.store.attempts(r.run_id)) for r in runs) == [0, 1]
    loop.run_until_idle()
    assert all(env.store.get_run(r.run_id).state.value == "success" for r in runs)


def test_an_unknown_executor_names_the_known_ones() -> None:
    from phloem.executors import make_executor
    from phloem.states import ExecutorKind

    with pytest.raises(
        PhloemError, match="unknown executor 'dask'; use 'inline' or 'local' or 'ray'"
    ):
        make_executor("dask", 1)
    assert type(make_executor("inline", 1)).__name__ == "InlineExecutor"
    assert type(make_executor(ExecutorKind.INLINE, 1)).__name__ == "InlineExecutor"
