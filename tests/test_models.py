"""The model registry: versions registered from tasks become usable exactly once, with their
attempt's success; aliases move with a history; register_if_better compares like with like."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.context import TaskContext
from phloem.effects import AttemptEffects, collect
from phloem.models.refs import ModelRef, parse
from phloem.models.registry import Registry
from phloem.records import TI, Transition
from phloem.states import RunState, TaskState

S = TaskState
X = np.arange(40, dtype=float).reshape(20, 2)
Y = (X[:, 0] > 15).astype(int)


def _model(c: float = 1.0) -> LogisticRegression:
    return LogisticRegression(C=c).fit(X, Y)


@pytest.fixture
def app(store_url: str, tmp_path: Path) -> Iterator[Phloem]:
    a = Phloem.open(store_url, tmp_path)
    yield a
    a.close()


@pytest.fixture
def shared_app(store_url: str, tmp_path: Path) -> Iterator[Phloem]:
    """A store that worker processes can open (tasks register into it)."""
    url = store_url
    if url == "memory":
        pytest.skip("tasks in worker processes need a shared store (tested apart)")
    a = Phloem.open(url, tmp_path)
    yield a
    a.close()


# -- from a task, in real runs ---------------------------------------------------------------


@task
def train(c: float) -> int:
    model = _model(c)
    version = phloem.models.register(
        "fraud",
        model,
        metrics={"auc": 0.9, "n": np.int64(20)},
        params={"C": c},
        tags={"team": "risk"},
        eval_data=X,
    )
    phloem.models.set_alias("fraud", version, "staging", reason="fresh from training")
    return version


@task
def use(version: int) -> float:
    model = phloem.models.load(f"fraud:{version}")
    return float(model.predict(X[:1])[0])


@pipeline
def training(c: float = 1.0) -> None:
    use(train(c))


def test_a_task_registers_a_version_linked_to_its_run(shared_app: Phloem) -> None:
    r = phloem.run(training, executor="local", app=shared_app)
    assert r.state is RunState.SUCCESS, r.tasks
    models = shared_app.store.models
    [v] = models.versions("fraud")
    assert (v.version, v.status, v.run_id, v.task_id, v.try_number) == (
        1, "ready", r.run_id, "train", 1,
    )
    assert v.metrics == {"auc": 0.9, "n": 20.0}
    assert v.params == {"C": 1.0} and v.tags == {"team": "risk"}
    assert v.eval_digest is not None and v.aliases == ("staging",)
    assert "training run" in v.registered_by and "task train" in v.registered_by
    [move] = models.alias_history("fraud")
    assert (move.version, move.previous, move.reason, move.run_id, move.task_id) == (
        1, None, "fresh from training", r.run_id, "train",
    )
    roles = {(u.task_id, u.role, u.digest) for u in shared_app.store.artifact_uses(r.run_id)}
    assert ("train", "model", v.artifact.digest) in roles
    assert ("train", "input", v.eval_digest) in roles
    assert ("use", "input", v.artifact.digest) in roles  # loading it is lineage too
    loaded = phloem.models.load("fraud@staging", app=shared_app)
    assert loaded.predict(X).tolist() == _model().predict(X).tolist()


@task(retries=2, retry_delay=0)
def flaky_train(marker: str) -> int:
    version = phloem.models.register("churn", _model(), metrics={"auc": 0.8})
    phloem.models.set_alias("churn", version, "production")
    tries = Path(marker)
    n = int(tries.read_text()) if tries.exists() else 0
    tries.write_text(str(n + 1))
    if n < 2:
        raise RuntimeError(f"try {n + 1} fails after registering version {version}")
    return version


@pipeline
def flaky_training(marker: str = "") -> None:
    flaky_train(marker)


def test_a_failing_then_retried_task_leaves_exactly_one_usable_version(
    shared_app: Phloem, tmp_path: Path
) -> None:
    r = phloem.run(
        flaky_training, params={"marker": str(tmp_path / "tries")}, executor="local",
        app=shared_app,
    )
    assert r.state is RunState.SUCCESS
    assert r.tasks[("flaky_train", -1)].try_number == 3
    models = shared_app.store.models
    # each retry took the pending version of the try before it over: one number, one version
    assert [(v.version, v.try_number) for v in models.versions("churn")] == [(1, 3)]
    assert [(v.version, v.status) for v in models.versions("churn", include_pending=True)] == [
        (1, "ready")
    ]
    assert models.aliases("churn") == {"production": 1}
    assert len(models.alias_history("churn")) == 1  # the failed tries' moves never landed


@task
def register_then_fail() -> None:
    version = phloem.models.register("spam", _model(), metrics={"auc": 0.7})
    phloem.models.set_alias("spam", version, "production")
    phloem.models.register_if_better(
        "spam", _model(2.0), metric="auc", metrics={"auc": 0.9}, eval_data=X
    )
    raise phloem.Fail("the evaluation gate failed")


@pipeline
def failing_training() -> None:
    register_then_fail()


def test_a_failed_attempt_leaves_no_usable_version_alias_or_decision(shared_app: Phloem) -> None:
    r = phloem.run(failing_training, executor="local", app=shared_app)
    assert r.state is RunState.FAILED
    models = shared_app.store.models
    assert models.versions("spam") == []
    pending = models.versions("spam", include_pending=True)
    assert [(v.version, v.status) for v in pending] == [(1, "pending"), (2, "pending")]
    assert models.aliases("spam") == {} and models.alias_history("spam") == []
    assert models.decisions("spam") == []
    with pytest.raises(phloem.ModelNotFound, match=r"version 1 of model 'spam' cannot be used"):
        phloem.models.load("spam:1", app=shared_app)
    with pytest.raises(phloem.ModelNotFound, match="no model named 'spam'"):
        phloem.models.load("spam", app=shared_app)


@task.branch
def decide(auc: float) -> str | None:
    decision = phloem.models.register_if_better(
        "ctr", _model(auc), metric="auc", metrics={"auc": auc}, eval_data=X
    )
    return decision.choose("deploy", "keep")


@task
def deploy() -> str:
    return "deployed"


@task
def keep() -> str:
    return "kept"


@pipeline
def promotion(auc: float = 0.8) -> None:
    decide(auc) >> [deploy(), keep()]


def test_register_if_better_in_a_branch_promotes_only_a_better_model(shared_app: Phloem) -> None:
    outcomes = []
    for day, auc in enumerate([0.80, 0.85, 0.83], start=1):
        r = phloem.run(
            promotion, params={"auc": auc}, logical_date=f"2026-03-0{day}", executor="local",
            app=shared_app,
        )
        assert r.state is RunState.SUCCESS
        outcomes.append(
            (r.tasks[("deploy", -1)].state, r.tasks[("keep", -1)].state)
        )
    assert outcomes == [(S.SUCCESS, S.SKIPPED), (S.SUCCESS, S.SKIPPED), (S.SKIPPED, S.SUCCESS)]
    models = shared_app.store.models
    assert [v.version for v in models.versions("ctr")] == [1, 2]
    assert models.aliases("ctr") == {"champion": 2}
    decisions = [d.decision for d in models.decisions("ctr")]
    assert [d["promoted"] for d in decisions] == [True, True, False]
    assert "not better" in decisions[2]["reason"] and decisions[2]["champion"] == 2


def test_registering_from_a_task_on_a_private_store_says_what_to_do(tmp_path: Path) -> None:
    r = phloem.run(training, executor="inline", store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    error = r.tasks[("train", -1)].error or ""
    assert "models registered from tasks need a shared store" in error


# -- the landing rule with a zombie -------------------------------------------------------------


def _ctx(run_id: str, try_number: int, app: Phloem) -> TaskContext:
    import logging
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    return TaskContext(
        run_id, "p", "t", None, try_number, now, now, now, {}, logging.getLogger("t"),
        store_url=app.store.shared_url, artifacts=app.artifacts,
    )


def test_a_zombie_attempts_version_and_alias_move_never_land(app: Phloem) -> None:
    from test_store import make_run

    store = app.store
    run = store.create_run(make_run("run-z"), [TI("t", state=S.RUNNING, try_number=2)]).run_id
    phloem.models.register("m", _model(), app=app)
    phloem.models.set_alias("m", 1, "production", app=app)
    # try 1 is a zombie: try 2 runs now; both register and move the alias
    recorded: dict[int, AttemptEffects] = {}
    for try_number in (1, 2):
        r = Registry(store, app.artifacts, f"try {try_number}", attempt=_ctx(run, try_number, app))
        with collect() as pending:
            v = r.register("m", _model(), metrics={"try": try_number})
            r.set_alias("m", v, "production", reason=f"try {try_number}")
        recorded[try_number] = AttemptEffects("t", -1, try_number, tuple(pending))

    def end(try_number: int) -> Transition:
        return Transition(
            TI("t", state=S.RUNNING, try_number=try_number),
            TI("t", state=S.SUCCESS, try_number=try_number),
        )

    from phloem.store import Commit

    [lost] = store.commit_many([Commit(run, (end(1),), effects=(recorded[1],))])
    assert lost.lost  # try 1 is not current: its end, and its effects, are refused
    assert store.models.aliases("m") == {"production": 1}
    store.commit_many([Commit(run, (end(2),), effects=(recorded[2],))])
    # try 2 took the zombie's pending version over (one number for the task instance)
    assert [(v.version, v.try_number, v.metrics) for v in store.models.versions("m")] == [
        (1, None, {}), (2, 2, {"try": 2.0})
    ]
    assert store.models.aliases("m") == {"production": 2}
    assert [(m.version, m.previous, m.reason) for m in store.models.alias_history("m")] == [
        (1, None, None), (2, 1, "try 2")
    ]


# -- outside tasks ----------------------------------------------------------------------------


def test_register_load_and_aliases_outside_a_task(app: Phloem) -> None:
    v1 = phloem.models.register("fraud", _model(1.0), metrics={"auc": 0.8}, app=app)
    v2 = phloem.models.register("fraud", _model(0.1), metrics={"auc": 0.9}, app=app)
    assert (v1, v2) == (1, 2)
    assert phloem.models.get("fraud", app=app).version == 2  # the latest
    move = phloem.models.set_alias("fraud", 1, "production", reason="first", app=app)
    assert move is not None and (move.version, move.previous) == (1, None)
    phloem.models.set_alias("fraud", 2, "production", reason="better auc", app=app)
    assert phloem.models.get("fraud@production", app=app).version == 2
    assert phloem.models.get("fraud:1", app=app).metrics == {"auc": 0.8}
    model = phloem.models.load("fraud@production", app=app)
    assert model.get_params()["C"] == 0.1
    history = phloem.models.history("fraud", "production", app=app)
    assert [(h.version, h.previous, h.reason) for h in history] == [
        (1, None, "first"), (2, 1, "better auc")
    ]
    assert all(h.who and h.at > 0 for h in history)
    [summary] = phloem.models.list_models(app=app)
    assert (summary.name, summary.latest, summary.versions, summary.aliases) == (
        "fraud", 2, 2, {"production": 2}
    )


def test_rollback_moves_the_alias_back_and_records_the_move(app: Phloem) -> None:
    for c in (1.0, 0.5, 0.1):
        v = phloem.models.register("fraud", _model(c), app=app)
        phloem.models.set_alias("fraud", v, "production", app=app)
    back = phloem.models.rollback("fraud", "production", reason="v3 misbehaves", app=app)
    assert (back.version, back.previous, back.kind) == (2, 3, "rollback")
    assert back.reason == "v3 misbehaves"
    back = phloem.models.rollback("fraud", "production", app=app)
    assert (back.version, back.reason) == (1, "rollback from version 2")
    with pytest.raises(phloem.PhloemError, match="no earlier version to roll back to"):
        phloem.models.rollback("fraud", "production", app=app)
    moves = phloem.models.history("fraud", app=app)
    assert [(m.version, m.kind) for m in moves] == [
        (1, "set"), (2, "set"), (3, "set"), (2, "rollback"), (1, "rollback")
    ]


def test_load_errors_list_what_exists(app: Phloem) -> None:
    with pytest.raises(phloem.ModelNotFound, match=r"no model named 'fraud' .*models: none yet"):
        phloem.models.load("fraud", app=app)
    phloem.models.register("fraud", _model(), app=app)
    phloem.models.register("fraud", _model(), app=app)
    phloem.models.set_alias("fraud", 2, "champion", app=app)
    with pytest.raises(phloem.ModelNotFound, match=r"no model named 'frau' .*models: fraud"):
        phloem.models.load("frau@champion", app=app)
    with pytest.raises(phloem.ModelNotFound, match=r"has no version 7 \(versions: 1-2\)"):
        phloem.models.load("fraud:7", app=app)
    with pytest.raises(
        phloem.ModelNotFound, match=r"no alias 'production' \(aliases: champion -> 2\)"
    ):
        phloem.models.load("fraud@production", app=app)
    with pytest.raises(phloem.ModelNotFound, match="has no version 9"):
        phloem.models.set_alias("fraud", 9, "production", app=app)
    with pytest.raises(phloem.PhloemError, match="must be a number"):
        phloem.models.load("fraud:latest", app=app)
    with pytest.raises(phloem.PhloemError, match="model name 'a/b' is not valid"):
        phloem.models.register("a/b", _model(), app=app)
    with pytest.raises(phloem.PhloemError, match="metric 'auc' must be a number"):
        phloem.models.register("fraud", _model(), metrics={"auc": "high"}, app=app)
    with pytest.raises(phloem.PhloemError, match="unknown model format 'onnx'"):
        phloem.models.register("fraud", _model(), format="onnx", app=app)
    assert [v.version for v in phloem.models.versions("fraud", app=app)] == [1, 2]


def test_register_if_better_promotes_keeps_and_refuses(app: Phloem) -> None:
    other = X[:10]

    def attempt(auc: float, data: object = X, **kw: object) -> phloem.models.Decision:
        return phloem.models.register_if_better(
            "fraud", _model(), metric="auc", metrics={"auc": auc}, eval_data=data, app=app,
            **kw,  # type: ignore[arg-type]
        )

    first = attempt(0.80)
    assert first and first.version == 1 and first.champion is None
    assert "no 'champion' yet" in first.reason
    kept = attempt(0.79)
    assert not kept and kept.version is None and kept.champion == 1
    assert kept.choose("deploy", "notify") == "notify"
    same = attempt(0.80)  # equal is not better
    assert not same
    better = attempt(0.85)
    assert better and better.version == 2 and better.delta == pytest.approx(0.05)
    with pytest.raises(phloem.EvalDataMismatch, match="different evaluation sets"):
        attempt(0.99, other)
    with pytest.raises(phloem.EvalDataMismatch, match="pass eval_data="):
        attempt(0.99, None)
    allowed = attempt(0.99, other, allow_different_eval=True)
    assert allowed and allowed.different_eval and "different evaluation data" in allowed.reason
    assert not attempt(0.86, other, min_delta=0.2)  # now the champion's data: compared
    lower = phloem.models.register_if_better(
        "latency", _model(), metric="ms", higher_is_better=False, metrics={"ms": 30}, eval_data=X,
        app=app,
    )
    faster = phloem.models.register_if_better(
        "latency", _model(), metric="ms", higher_is_better=False, metrics={"ms": 20}, eval_data=X,
        app=app,
    )
    assert lower and faster and faster.delta == 10
    assert phloem.models.aliases("fraud", app=app) == {"champion": 3}
    decisions = app.store.models.decisions("fraud")
    assert [d.decision["promoted"] for d in decisions] == [True, False, False, True, True, False]
    with pytest.raises(phloem.PhloemError, match="metric 'auc' is not in metrics="):
        phloem.models.register_if_better(
            "fraud", _model(), metric="auc", metrics={"f1": 0.5}, eval_data=X, app=app
        )


@pytest.mark.postgres
def test_concurrent_registrations_get_distinct_versions(pg_url: str, tmp_path: Path) -> None:
    apps = [Phloem.open(pg_url, tmp_path) for _ in range(4)]
    for a in apps:
        a.store  # noqa: B018 (schema made before the race: only allocation races)
    got: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(apps))
    model = _model()

    def worker(a: Phloem) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                got.append(phloem.models.register("race", model, app=a))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(a,)) for a in apps]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sorted(got) == list(range(1, 21))
        assert [v.version for v in apps[0].store.models.versions("race")] == list(range(1, 21))
    finally:
        for a in apps:
            a.close()


def test_native_and_skops_formats_load_back(app: Phloem) -> None:
    lgb = pytest.importorskip("lightgbm")
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 1},
        lgb.Dataset(X, Y),
        num_boost_round=3,
    )
    v = phloem.models.register("gbm", booster, app=app)
    assert phloem.models.get(f"gbm:{v}", app=app).artifact.serializer == "lightgbm"
    again = phloem.models.load(f"gbm:{v}", app=app)
    assert np.allclose(again.predict(X), booster.predict(X))
    pytest.importorskip("skops")
    v = phloem.models.register("lr", _model(), format="skops", app=app)
    assert phloem.models.get("lr", app=app).artifact.serializer == "skops"
    assert phloem.models.load("lr", app=app).predict(X).tolist() == _model().predict(X).tolist()


def test_registering_outside_a_task_uses_the_configured_store(home: Path) -> None:
    assert phloem.models.register("fraud", _model()) == 1
    assert phloem.models.get("fraud").version == 1
    assert (home / "phloem.db").exists()


# -- references, as a parser ------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
aliases = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,20}", fullmatch=True)


@given(names, st.one_of(st.none(), st.integers(1, 10**6), aliases))
def test_references_round_trip(name: str, which: int | str | None) -> None:
    ref = (
        ModelRef(name)
        if which is None
        else ModelRef(name, version=which)
        if isinstance(which, int)
        else ModelRef(name, alias=which)
    )
    assert parse(str(ref)) == ref


@given(st.text(max_size=30))
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        ref = parse(text)
    except phloem.PhloemError as exc:
        assert "not valid" in str(exc) or "must be a number" in str(exc) or "version" in str(exc)
    else:
        assert parse(str(ref)) == ref


# -- the parts format ---------------------------------------------------------------------------


def test_large_models_are_stored_in_verified_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phloem.models import parts

    monkeypatch.setattr(parts, "CHUNK", 1000)
    app = Phloem.open("memory", tmp_path)
    try:
        weights = np.arange(5000, dtype=float)
        model = {"w": weights, "strided": weights[::2], "name": "m"}
        v = phloem.models.register("big", model, app=app)
        stored = phloem.models.get(f"big:{v}", app=app).artifact
        assert stored.serializer == "model-parts"
        loaded = phloem.models.load("big", app=app)
        assert np.array_equal(loaded["w"], weights) and loaded["w"].flags.writeable
        assert np.array_equal(loaded["strided"], weights[::2]) and loaded["name"] == "m"
        # a chunk changed on disk: refused before anything is unpickled
        manifest = app.artifacts.get(_ref(stored))
        digest, key = manifest["chunks"][3][1], manifest["chunks"][3][3]
        path = Path(app.artifacts.root) / key
        path.write_bytes(b"x" * path.stat().st_size)
        with pytest.raises(phloem.ArtifactError, match="corrupt or was modified"):
            phloem.models.load("big", app=app)
        assert digest
    finally:
        app.close()


def _ref(a: object) -> object:
    from phloem.artifacts import ArtifactRef

    return ArtifactRef(a.digest, a.serializer, a.type_name, a.size, a.key)  # type: ignore[attr-defined]
