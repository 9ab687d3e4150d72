"""``phloem.emit``: an asset event recorded with the success of the attempt that emitted it,
with its metadata, starting the pipelines scheduled on that asset exactly once."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import phloem
from phloem import Asset, pipeline, task
from phloem.app import Phloem
from phloem.states import RunState
from phloem.store import Store


def _events(store: Store, asset: str) -> list[tuple[str | None, str | None, object]]:
    page = store.listing.asset_events(asset)
    return [(e.task_id, e.run_id, e.metadata) for e in reversed(page.items)]


@task(retries=1, retry_delay=0)
def monitor(psi: float, marker: str) -> float:
    if psi > 0.2:
        phloem.emit(Asset("drift:fraud"), metadata={"psi": np.float64(psi), "features": ["amount"]})
    if marker and not Path(marker).exists():
        Path(marker).write_text("x")
        raise RuntimeError("first try fails after emitting")
    return psi


@pipeline
def monitoring(psi: float = 0.0, marker: str = "") -> None:
    monitor(psi, marker)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_an_emitted_event_lands_once_with_its_metadata(
    store_url: str, tmp_path: Path, executor: str
) -> None:
    app = Phloem.open(store_url, tmp_path)
    try:
        r = phloem.run(monitoring, params={"psi": 0.05}, executor=executor, app=app)
        assert r.state is RunState.SUCCESS and _events(app.store, "drift:fraud") == []
        r = phloem.run(
            monitoring,
            params={"psi": 0.31, "marker": str(tmp_path / "m")},
            executor=executor,
            app=app,
            logical_date="2026-03-01",
        )
        assert r.state is RunState.SUCCESS and r.tasks[("monitor", -1)].try_number == 2
        # the first try emitted too, then failed: its event never landed
        assert _events(app.store, "drift:fraud") == [
            ("monitor", r.run_id, {"features": ["amount"], "psi": 0.31})
        ]
    finally:
        app.close()


def test_consuming_asset_events_is_a_compare_and_set(store: Store) -> None:
    assert store.catalog.consume_assets("retrain", {"drift:fraud": 3})
    assert not store.catalog.consume_assets("retrain", {"drift:fraud": 3})
    assert store.catalog.consume_assets("retrain", {"drift:fraud": 4})


def test_bad_input_is_refused_precisely() -> None:
    with pytest.raises(phloem.PhloemError, match=r"phloem.emit\(\) only works while a task runs"):
        phloem.emit(Asset("drift:fraud"))
    with pytest.raises(phloem.PhloemError, match="takes an Asset"):
        phloem.emit(3)  # type: ignore[arg-type]
    with pytest.raises(phloem.PhloemError, match="metadata is not JSON"):
        phloem.emit("a", metadata={"when": object()})
    with pytest.raises(phloem.PhloemError, match="NaN and infinities are refused"):
        phloem.emit("a", metadata={"psi": float("nan")})
    with pytest.raises(phloem.PhloemError, match="metadata must be a dict"):
        phloem.emit("a", metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(phloem.PhloemError, match="more than 65536"):
        phloem.emit("a", metadata={"x": "y" * 70_000})


MONITORING = textwrap.dedent(
    """
    import phloem
    from phloem import Asset, pipeline, task

    @task
    def check(psi: float = 0.0) -> float:
        if psi > 0.2:
            phloem.emit(Asset("drift:fraud"), metadata={"psi": psi})
        return psi

    @task
    def retrain() -> str:
        return "trained"

    @pipeline
    def monitor(psi: float = 0.0):
        check(psi)

    @pipeline(schedule=[Asset("drift:fraud")])
    def retraining():
        retrain()
    """
)


def test_an_emitted_event_starts_the_asset_scheduled_pipeline_once(
    home: Path, tmp_path: Path
) -> None:
    from phloem.scheduler.commands import trigger
    from test_scheduler import drive, make, write

    env = Phloem.open()
    folder = tmp_path / "pipelines"
    write(folder, "monitoring.py", MONITORING)
    sched = make(env, folder)
    try:
        sched.refresh(time.time())

        def done(run_id: str) -> bool:
            return env.store.get_run(run_id).state is RunState.SUCCESS

        quiet, _ = trigger(env, "monitor", params={"psi": 0.01})
        drive(sched, lambda: done(quiet.run_id))
        for _ in range(10):
            sched.step()
        assert env.store.list_runs(pipeline="retraining") == []
        trigger(env, "monitor", params={"psi": 0.4})
        drive(sched, lambda: len(env.store.list_runs(pipeline="retraining")) == 1)
        drive(sched, lambda: done(env.store.list_runs(pipeline="retraining")[0].run_id))
        for _ in range(10):
            sched.step()
        runs = env.store.list_runs(pipeline="retraining")
        assert len(runs) == 1 and runs[0].run_type == "asset"
    finally:
        sched.shutdown()
        env.close()
