"""Drift-triggered retraining on the real scheduler: a monitoring pipeline emits
``Asset("drift:fraud")`` only when the drift report crosses its threshold; the retraining
pipeline scheduled on that asset runs once per event, trains a real model and promotes it
only if it passes its gate, in the model registry."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pandas as pd

import phloem
from phloem.app import Phloem
from phloem.records import RunRecord
from phloem.scheduler.commands import trigger
from phloem.states import RunState, TaskState
from test_scheduler import drive, make, write

PIPELINES = textwrap.dedent(
    """
    import numpy as np
    import pandas as pd

    import phloem
    from phloem import Asset, pipeline, task

    FEATURES = ["amount", "hour", "distance"]


    def transactions(n: int, shift: float, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        x = rng.normal(0.0, 1.0, size=(n, 3)) + np.array([shift, 0.0, 0.0])
        logit = 1.5 * x[:, 0] - 1.0 * x[:, 2] + rng.normal(0.0, 0.7, n)
        return pd.DataFrame(x, columns=FEATURES).assign(fraud=(logit > 1.0).astype(int))


    @task
    def check_drift(shift: float) -> float:
        reference = transactions(3000, 0.0, 1)[FEATURES]
        current = transactions(1000, shift, 2)[FEATURES]
        report = phloem.drift.report(reference, current, threshold=0.2)
        if report.drifted:
            phloem.emit(
                Asset("drift:fraud"),
                metadata={"max_psi": report.max_psi, "features": list(report.drifted_features)},
            )
        return report.max_psi


    # in production: schedule=timedelta(hours=1); the test triggers it as the hour would
    @pipeline(tags=["monitoring"])
    def fraud_monitoring(shift: float = 0.0):
        check_drift(shift)


    @task
    def train() -> dict:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        data = transactions(4000, 0.5, 3)
        fit, test = data.iloc[:3000], data.iloc[3000:]
        phloem.expect(fit, name="train").not_null(*FEATURES).row_count(min=1000).check()
        model = LogisticRegression().fit(fit[FEATURES], fit["fraud"])
        auc = float(roc_auc_score(test["fraud"], model.predict_proba(test[FEATURES])[:, 1]))
        phloem.log_metric("auc", auc)
        return {"model": model, "auc": auc}


    @task.branch
    def gate(trained: dict) -> str:
        min_auc = phloem.variable("fraud_min_auc", 0.8)
        verdict = phloem.gate({"auc": trained["auc"]}, {"auc": f">= {min_auc}"},
                              raise_on_fail=False)
        return "promote" if verdict else "hold"


    @task
    def promote(trained: dict) -> int:
        version = phloem.models.register(
            "fraud", trained["model"], metrics={"auc": trained["auc"]}, tags={"trigger": "drift"}
        )
        phloem.models.set_alias("fraud", version, "production", reason="passed its gate")
        return version


    @task
    def hold(trained: dict) -> float:
        return trained["auc"]


    @pipeline(schedule=[Asset("drift:fraud")])
    def fraud_retraining():
        trained = train()
        gate(trained) >> [promote(trained), hold(trained)]
    """
)


def test_drift_starts_exactly_one_retraining_and_only_a_gated_model_is_promoted(
    home: Path, tmp_path: Path
) -> None:
    env = Phloem.open()
    folder = tmp_path / "pipelines"
    write(folder, "fraud.py", PIPELINES)
    sched = make(env, folder)
    store = env.store

    def retrainings() -> list[RunRecord]:
        return store.list_runs(pipeline="fraud_retraining")

    def finished(run_id: str) -> bool:
        return store.get_run(run_id).state.is_terminal

    def settle() -> None:
        for _ in range(15):
            sched.step()

    try:
        sched.refresh(time.time())

        # no drift: the monitoring run succeeds and nothing is retrained
        quiet, _ = trigger(env, "fraud_monitoring", params={"shift": 0.0})
        drive(sched, lambda: finished(quiet.run_id), timeout=60)
        assert store.get_run(quiet.run_id).state is RunState.SUCCESS
        settle()
        assert retrainings() == []
        assert store.listing.asset_events("drift:fraud").items == []

        # drift: exactly one retraining run, whose model passes the gate and is promoted
        drifted, _ = trigger(env, "fraud_monitoring", params={"shift": 1.5})
        drive(sched, lambda: len(retrainings()) == 1, timeout=60)
        first = retrainings()[0]
        drive(sched, lambda: finished(first.run_id), timeout=120)
        settle()
        assert len(retrainings()) == 1
        assert store.get_run(first.run_id).state is RunState.SUCCESS
        assert first.run_type == "asset"
        states = {ti.task_id: ti.state for ti in store.load_instances(first.run_id)}
        assert states["promote"] is TaskState.SUCCESS and states["hold"] is TaskState.SKIPPED
        (event,) = store.listing.asset_events("drift:fraud").items
        assert event.run_id == drifted.run_id and event.metadata is not None
        assert event.metadata["features"] == ["amount"] and event.metadata["max_psi"] > 0.2
        auc = store.tracking.final([first.run_id])[first.run_id]["auc"]
        (version,) = phloem.models.versions("fraud", app=env)
        assert version.version == 1 and version.metrics == {"auc": auc}
        assert phloem.models.aliases("fraud", app=env) == {"production": 1}
        (move,) = phloem.models.history("fraud", "production", app=env)
        assert move.reason == "passed its gate"
        model = phloem.models.load("fraud@production", app=env)
        row = pd.DataFrame([[0.0, 0.0, 0.0]], columns=["amount", "hour", "distance"])
        assert model.predict_proba(row).shape == (1, 2)

        # drift again, with a gate the model cannot pass: retrained once more, not promoted
        store.variables().set_variable("fraud_min_auc", 0.999)
        again, _ = trigger(env, "fraud_monitoring", params={"shift": 2.0})
        drive(sched, lambda: len(retrainings()) == 2, timeout=60)
        second = next(r for r in retrainings() if r.run_id != first.run_id)
        drive(sched, lambda: finished(second.run_id), timeout=120)
        settle()
        assert len(retrainings()) == 2
        states = {ti.task_id: ti.state for ti in store.load_instances(second.run_id)}
        assert states["hold"] is TaskState.SUCCESS and states["promote"] is TaskState.SKIPPED
        assert [v.version for v in phloem.models.versions("fraud", app=env)] == [1]
        assert phloem.models.aliases("fraud", app=env) == {"production": 1}
        assert again.run_id in {e.run_id for e in store.listing.asset_events("drift:fraud").items}
    finally:
        sched.shutdown()
        env.close()
