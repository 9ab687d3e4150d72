"""Metrics and parameters logged from tasks: committed with the attempt that logged them,
exactly once, and read back per run and across runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.effects import AttemptEffects, Effect, MetricLogged, collect, record
from phloem.records import TI, Transition
from phloem.states import RunState, TaskState
from phloem.store import Applied, Commit, Store, open_store
from phloem.store.effects import landing
from phloem.store.tracking import MetricRow, final_values

S = TaskState


@task
def train(lr: float) -> float:
    phloem.log_params({"lr": lr, "model": "gbm", "layers": [3, 2]})
    for epoch in range(3):
        phloem.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    phloem.log_metrics({"auc": 0.9 + lr, "rows": np.int64(1000)})
    return lr


@pipeline
def experiment(lr: float = 0.01) -> None:
    train(lr)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_metrics_and_params_are_kept_with_the_run(
    executor: str, store_url: str, tmp_path: Path
) -> None:
    app = Phloem.open(store_url, tmp_path)
    try:
        r = phloem.run(experiment, params={"lr": 0.05}, executor=executor, app=app)
        assert r.state is RunState.SUCCESS
        rows = app.store.tracking.metrics([r.run_id])
        assert [(m.key, m.value, m.step) for m in rows] == [
            ("loss", 1.0, 0),
            ("loss", 0.5, 1),
            ("loss", pytest.approx(1 / 3), 2),
            ("auc", pytest.approx(0.95), None),
            ("rows", 1000.0, None),
        ]
        assert {m.try_number for m in rows} == {1}
        assert app.store.tracking.final([r.run_id]) == {
            r.run_id: {"loss": pytest.approx(1 / 3), "auc": pytest.approx(0.95), "rows": 1000.0}
        }
        assert app.store.tracking.params([r.run_id]) == {
            r.run_id: {"lr": 0.05, "model": "gbm", "layers": [3, 2]}
        }
    finally:
        app.close()


@task(retries=1)
def flaky(marker: str) -> int:
    first = not Path(marker).exists()
    phloem.log_metric("attempt_auc", 0.5 if first else 0.8)
    phloem.log_param("first", first)
    if first:
        Path(marker).write_text("x")
        raise RuntimeError("first try fails")
    return 1


@pipeline
def flaky_pipeline(marker: str = "") -> None:
    flaky(marker)


def test_a_failed_try_keeps_its_metrics_and_the_last_try_wins(
    store_url: str, tmp_path: Path
) -> None:
    app = Phloem.open(store_url, tmp_path)
    try:
        r = phloem.run(
            flaky_pipeline, params={"marker": str(tmp_path / "m")}, executor="local", app=app
        )
        assert r.state is RunState.SUCCESS
        rows = app.store.tracking.metrics([r.run_id])
        assert [(m.try_number, m.value) for m in rows] == [(1, 0.5), (2, 0.8)]
        assert app.store.tracking.final([r.run_id])[r.run_id] == {"attempt_auc": 0.8}
        assert app.store.tracking.params([r.run_id])[r.run_id] == {"first": False}
    finally:
        app.close()


@task
def bad_metric() -> None:
    phloem.log_metric("auc", "high")  # type: ignore[arg-type]


@pipeline
def bad_metric_pipeline() -> None:
    bad_metric()


def test_a_metric_that_is_not_a_number_fails_the_task_with_its_name(tmp_path: Path) -> None:
    r = phloem.run(bad_metric_pipeline, executor="inline", store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    error = r.tasks[("bad_metric", -1)].error or ""
    assert "metric 'auc' must be a number, not str" in error


def test_logging_outside_a_task_says_where_it_works() -> None:
    with pytest.raises(phloem.PhloemError, match=r"phloem.log_metric\(\) only works while a task"):
        phloem.log_metric("auc", 0.9)
    with pytest.raises(phloem.PhloemError, match="non-empty string"):
        phloem.log_param("", 1)


def test_nan_and_infinity_are_kept(store_url: str) -> None:
    store = open_store(store_url)
    try:
        run = _run_row(store)
        with collect() as pending:
            phloem.log_metric("loss", float("nan"), step=0)
            phloem.log_metric("loss", float("inf"), step=1)
        _end(store, run, pending, S.SUCCESS)
        values = [m.value for m in store.tracking.metrics([run])]
        assert math.isnan(values[0]) and values[1] == math.inf
    finally:
        store.close()


@task
def score(x: int) -> int:
    phloem.log_metric("x", x)
    return x


@pipeline
def scores() -> None:
    score.expand(x=[0, 1, 2])


def test_trend_follows_a_metric_across_runs(store_url: str, tmp_path: Path) -> None:
    app = Phloem.open(store_url, tmp_path)
    try:
        for day, lr in enumerate([0.01, 0.02, 0.03], start=1):
            phloem.run(
                experiment,
                params={"lr": lr},
                logical_date=f"2026-01-0{day}",
                app=app,
                executor="inline",
            )
        points = app.store.tracking.trend("experiment", "auc", last=2)
        assert [p.logical_date[:10] for p in points] == ["2026-01-02", "2026-01-03"]
        assert [p.value for p in points] == [pytest.approx(0.92), pytest.approx(0.93)]
        assert app.store.tracking.trend("experiment", "nothing") == []
    finally:
        app.close()


def test_each_mapped_instance_logs_its_own_values(tmp_path: Path) -> None:
    app = Phloem.open("memory", tmp_path)
    try:
        r = phloem.run(scores, executor="local", app=app)
        rows = app.store.tracking.metrics([r.run_id])
        assert sorted((m.map_index, m.value) for m in rows) == [(0, 0.0), (1, 1.0), (2, 2.0)]
    finally:
        app.close()


# -- the landing rule, as a pure function -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moved(Effect):
    """A success-only effect, as an alias move or a watermark advance is."""

    on_success_only: ClassVar[bool] = True
    name: str


def _ended(task_id: str, try_number: int, new: TaskState, old: TaskState = S.RUNNING) -> Transition:
    before = TI(task_id, state=old, try_number=try_number)
    return Transition(before, TI(task_id, state=new, try_number=try_number))


def _effects(task_id: str, try_number: int) -> AttemptEffects:
    return AttemptEffects(
        task_id, -1, try_number, (MetricLogged("m", 1.0, None, 0.0), Moved("alias"))
    )


def test_effects_land_only_with_the_end_of_their_own_attempt() -> None:
    pending = [_effects("ok", 1), _effects("bad", 1), _effects("zombie", 1), _effects("old", 1)]
    applied = Applied(
        transitions=[
            _ended("ok", 1, S.SUCCESS),
            _ended("bad", 1, S.UP_FOR_RETRY),
            _ended("old", 2, S.SUCCESS),  # a later try ended, not the one that recorded
            _ended("zombie", 1, S.RUNNING, old=S.QUEUED),  # started, not ended
        ]
    )
    landed = [(a.task_id, type(e).__name__) for a, e in landing(applied, pending)]
    assert landed == [("ok", "MetricLogged"), ("ok", "Moved"), ("bad", "MetricLogged")]


def test_final_value_is_the_latest_try_then_the_latest_time() -> None:
    rows = [
        MetricRow("r", "t", -1, 2, "auc", 0.7, None, 1.0),
        MetricRow("r", "t", -1, 1, "auc", 0.9, None, 5.0),
        MetricRow("r", "t", -1, 2, "auc", 0.8, None, 2.0),
    ]
    assert final_values(rows) == {"r": {"auc": 0.8}}


def test_record_outside_collect_names_the_caller() -> None:
    with pytest.raises(phloem.PhloemError, match="my_fn only works"):
        record(Moved("x"), what="my_fn")


# -- helpers ----------------------------------------------------------------------------------


def _run_row(store: Store) -> str:
    from test_store import make_run

    run = store.create_run(make_run("run-t"), [TI("t", state=S.RUNNING, try_number=1)])
    return run.run_id


def _end(store: Store, run_id: str, pending: list[Effect], state: TaskState) -> None:
    t = Transition(TI("t", state=S.RUNNING, try_number=1), TI("t", state=state, try_number=1))
    store.commit_many(
        [Commit(run_id, (t,), effects=(AttemptEffects("t", -1, 1, tuple(pending)),))]
    )


# -- the CLI ----------------------------------------------------------------------------------

EXPERIMENT = """
import phloem
from phloem import pipeline, task

@task
def train(lr: float) -> float:
    phloem.log_param("optimizer", "adam")
    phloem.log_metric("auc", 0.8 + lr)
    phloem.log_metric("loss", 1 - lr)
    return lr

@pipeline
def exp(lr: float = 0.1):
    train(lr)
"""


def test_cli_compares_runs_and_shows_a_trend(home: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from phloem.cli.main import app

    cli = CliRunner()
    f = tmp_path / "exp.py"
    f.write_text(EXPERIMENT)
    ids = []
    for day, lr in [(1, 0.1), (2, 0.05), (3, 0.15)]:
        r = cli.invoke(
            app,
            ["run", str(f), "--param", f"lr={lr}", "--logical-date", f"2026-02-0{day}", "--json"],
        )
        assert r.exit_code == 0, r.output
        ids.append(json.loads(r.stdout)["run_id"])

    r = cli.invoke(app, ["runs", "compare", ids[0], ids[1], "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert [g["metrics"]["auc"] for g in got] == [pytest.approx(0.9), pytest.approx(0.85)]
    assert got[0]["params"] == {"optimizer": "adam"} and got[0]["run_params"] == {"lr": 0.1}

    r = cli.invoke(app, ["runs", "compare", ids[0], ids[2], "--metric", "loss"])
    assert r.exit_code == 0, r.output
    assert "loss" in r.stdout and "auc" not in r.stdout and "param optimizer" in r.stdout

    r = cli.invoke(app, ["runs", "compare", ids[0]])
    assert r.exit_code == 2 and "at least two runs" in r.output

    r = cli.invoke(app, ["metrics", "exp", "--metric", "auc", "--last", "3"])
    assert r.exit_code == 0, r.output
    assert "auc over 3 runs of exp" in r.stdout and "▄▁█" in r.stdout

    r = cli.invoke(app, ["metrics", "exp", "--metric", "auc", "--json"])
    assert [p["value"] for p in json.loads(r.stdout)] == [
        pytest.approx(0.9),
        pytest.approx(0.85),
        pytest.approx(0.95),
    ]
    r = cli.invoke(app, ["metrics", "exp", "--metric", "f1"])
    assert r.exit_code == 1 and "no run of pipeline 'exp' logged metric 'f1'" in r.output


def test_sparkline_scales_between_extremes() -> None:
    from phloem.cli.tracking_cmds import sparkline

    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([2.0, 2.0]) == "▁▁"
    assert sparkline([math.nan, 1.0]) == "?▁"
