"""Lineage: from an artifact, a task instance or a model version back to what made it and
forward to what used it, on every store; targets parsed strictly with clear errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import phloem
from phloem import pipeline, task
from phloem.artifacts.codec import from_stored_json
from phloem.artifacts.structured import Structured
from phloem.cli.main import app
from phloem.errors import LineageError, PhloemError, RunNotFound, TaskNotFound
from phloem.lineage import (
    ArtifactTarget,
    InstanceTarget,
    lineage,
    resolve_target,
    target_parsers,
)
from phloem.states import RunState
from phloem.store import schema as s


@task
def load(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(n), "y": np.arange(n) % 2})


@task
def features(df: pd.DataFrame) -> dict[str, Any]:
    return {"X": df[["x"]], "y": df["y"].to_numpy(), "n": len(df)}


@task
def train(X: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    return {"weights": np.full(3, float(y.sum())), "auc": 0.9}


@task
def score(weights: np.ndarray, X: pd.DataFrame) -> pd.DataFrame:
    return X.assign(s=float(weights[0]))


@task
def shard(i: int, X: pd.DataFrame) -> pd.DataFrame:
    return X.assign(part=i)


@pipeline
def fraud(n: int = 10) -> None:
    f = features(load(n))
    t = train(f["X"], f["y"])
    score(t["weights"], f["X"])
    shard.partial(X=f["X"]).expand(i=[0, 1])


def digests(run: Any, task_id: str) -> dict[str, str]:
    node = from_stored_json(run.app.store.get_instance(run.run_id, task_id).output)
    assert isinstance(node, Structured)
    return {str(k): n.digest for k, n in zip(node.keys, node.items, strict=True)
            if hasattr(n, "digest")}  # fmt: skip


@pytest.fixture
def run(store_url: str, tmp_path: Path) -> Any:
    r = phloem.run(fraud, executor="inline", store=store_url, home=tmp_path,
                   logical_date="2026-03-01")  # fmt: skip
    assert r.state is RunState.SUCCESS
    return r


def test_upstream_of_a_task_reaches_raw_inputs_with_code_and_params(run: Any) -> None:
    store = run.app.store
    g = lineage(store, InstanceTarget(run.run_id, "score"))
    tasks = {n.attrs["task_id"] for n in g.nodes.values() if n.kind == "task"}
    assert tasks == {"score", "train", "features", "load"}
    node = g.nodes[f"task:{run.run_id}/load"]
    assert node.attrs["pipeline"] == "fraud" and node.attrs["params"] == {"n": 10}
    assert node.attrs["code_hash"] == run.run.code_hash and node.attrs["state"] == "success"
    assert node.attrs["logical_date"].startswith("2026-03-01")
    f = digests(run, "features")
    # per value: score read X and the weights, train read X and y; nobody upstream of score
    # read y except train
    edges = {(e.source, e.target, e.role) for e in g.edges}
    assert (f"artifact:{f['X']}", f"task:{run.run_id}/score", "input") in edges
    assert (f"artifact:{f['y']}", f"task:{run.run_id}/train", "input") in edges
    assert (f"task:{run.run_id}/features", f"artifact:{f['y']}", "output") in edges
    assert (f"artifact:{f['y']}", f"task:{run.run_id}/score", "input") not in edges
    frame = g.nodes[f"artifact:{f['X']}"].attrs
    assert frame["type_name"] == "pandas.DataFrame" and frame["metadata"]["rows"] == 10
    assert g.truncated is None
    # stable: the same walk gives the same JSON
    assert lineage(store, InstanceTarget(run.run_id, "score")).to_json() == g.to_json()


def test_downstream_of_one_value_follows_only_its_readers(run: Any) -> None:
    store = run.app.store
    y = digests(run, "features")["y"]
    g = lineage(store, resolve_target(store, [y[:10]]), "downstream")
    assert g.roots == [f"artifact:{y}"]
    tasks = {n.attrs["task_id"] for n in g.nodes.values() if n.kind == "task"}
    assert tasks == {"train", "score"}  # y -> train -> weights -> score; not shard, not load
    whole = lineage(store, InstanceTarget(run.run_id, "load"), "downstream")
    names = {(n.attrs["task_id"], n.attrs["map_index"]) for n in whole.nodes.values()
             if n.kind == "task"}  # fmt: skip
    assert names == {("load", None), ("features", None), ("train", None), ("score", None),
                     ("shard", 0), ("shard", 1)}  # fmt: skip


def test_a_mapped_task_is_every_instance_or_one(run: Any) -> None:
    store = run.app.store
    every = lineage(store, resolve_target(store, [run.run_id, "shard"]))
    assert every.roots == [f"task:{run.run_id}/shard[0]", f"task:{run.run_id}/shard[1]"]
    one = lineage(store, resolve_target(store, [run.run_id[:12], "shard"], map_index=1))
    assert one.roots == [f"task:{run.run_id}/shard[1]"]
    assert one.nodes[one.roots[0]].attrs["map_index"] == 1


def test_the_walk_is_bounded_and_says_so(run: Any) -> None:
    store = run.app.store
    deep = lineage(store, InstanceTarget(run.run_id, "score"), max_depth=1)
    assert deep.truncated is not None and "--max-depth" in deep.truncated
    small = lineage(store, InstanceTarget(run.run_id, "score"), max_nodes=3)
    assert small.truncated is not None and "--max-nodes" in small.truncated
    assert len(small.nodes) <= 6
    ids = set(small.nodes)
    assert all(e.source in ids and e.target in ids for e in small.edges)  # no dangling edge
    with pytest.raises(LineageError, match="at least 1"):
        lineage(store, InstanceTarget(run.run_id, "score"), max_nodes=0)


def test_bad_targets_are_clear_errors(run: Any) -> None:
    store = run.app.store
    with pytest.raises(LineageError, match="too short"):
        resolve_target(store, ["abc"])
    with pytest.raises(LineageError, match=r"no artifact with hash 000000"):
        resolve_target(store, ["000000"])
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        resolve_target(store, ["nope", "score"])
    with pytest.raises(TaskNotFound, match=r"has no task 'scor' \(its tasks: features, load"):
        resolve_target(store, [run.run_id, "scor"])
    with pytest.raises(TaskNotFound, match="no map index 5"):
        resolve_target(store, [run.run_id, "shard"], map_index=5)
    with pytest.raises(TaskNotFound, match="not mapped"):
        resolve_target(store, [run.run_id, "score"], map_index=0)
    with pytest.raises(LineageError, match="no model registry is available"):
        resolve_target(store, ["fraud:3"])
    with pytest.raises(LineageError, match="no model registry is available"):
        resolve_target(store, ["fraud@production"])
    with pytest.raises(LineageError, match="cannot tell what 'not a target!'"):
        resolve_target(store, ["not a target!"])
    y = digests(run, "features")["y"]
    with pytest.raises(LineageError, match="RUN TASK target only"):
        resolve_target(store, [y], map_index=1)


def test_an_ambiguous_prefix_lists_the_matches(run: Any) -> None:
    store = run.app.store
    y = digests(run, "features")["y"]
    twin = y[:8] + "0" * 56 if y[8] != "0" else y[:8] + "1" * 56
    with store.engine.begin() as conn:  # a second record sharing the first 8 digits
        conn.execute(s.artifacts.insert().values(
            digest=twin, serializer="pickle", type_name="object", size=1,
            key=f"sha256/{twin[:2]}/{twin}.pkl", created_at=time.time()))  # fmt: skip
    with pytest.raises(LineageError, match=rf"prefix '{y[:8]}' is ambiguous: it matches"):
        resolve_target(store, [y[:8]])
    assert resolve_target(store, [f"sha256:{y[:12].upper()}"]) == ArtifactTarget(y)


def test_a_model_registry_plugs_in_its_resolver(run: Any) -> None:
    store = run.app.store
    weights = digests(run, "train")["weights"]
    versions = {("fraud", 3): weights}

    def resolve(name: str, version: int | None, alias: str | None) -> ArtifactTarget:
        version = 3 if alias == "production" else version
        if (name, version) not in versions:
            raise LineageError(f"model {name!r} has no version {version}")
        return ArtifactTarget(versions[(name, version)])

    parsers = target_parsers(resolve_model=resolve)
    assert resolve_target(store, ["fraud:3"], parsers=parsers) == ArtifactTarget(weights)
    assert resolve_target(store, ["fraud@production"], parsers=parsers) == ArtifactTarget(weights)
    with pytest.raises(LineageError, match="has no version 4"):
        resolve_target(store, ["fraud:4"], parsers=parsers)


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=2),
       map_index=st.none() | st.integers(min_value=0, max_value=3))  # fmt: skip
def test_any_words_resolve_or_fail_clearly(words: list[str], map_index: int | None) -> None:
    from phloem.store import open_store

    store = _SHARED.get("store")
    if store is None:
        store = _SHARED["store"] = open_store("memory")
    try:
        target = resolve_target(store, words, map_index)
    except PhloemError as exc:
        assert str(exc)
    else:  # an empty store has nothing to find
        raise AssertionError(f"{words!r} resolved to {target!r} in an empty store")


_SHARED: dict[str, Any] = {}


def teardown_module() -> None:
    store = _SHARED.pop("store", None)
    if store is not None:
        store.close()


# -- across runs -------------------------------------------------------------------------------


@task
def daily_stats() -> dict[str, Any]:
    return {"hist": np.arange(5), "when": phloem.context().ds}


@pipeline
def daily() -> None:
    daily_stats()


@task
def compare() -> float:
    prev = phloem.outputs.latest("daily", "daily_stats")
    return float(prev["hist"].sum())


@pipeline
def monitor() -> None:
    compare()


def test_lineage_crosses_runs_read_with_outputs_latest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    d = phloem.run(daily, executor="local", store=url, home=tmp_path, logical_date="2026-03-01")
    m = phloem.run(monitor, executor="local", store=url, home=tmp_path, logical_date="2026-03-02")
    assert d.state is m.state is RunState.SUCCESS
    g = lineage(m.app.store, InstanceTarget(m.run_id, "compare"))
    runs = {n.attrs["run_id"]: n.attrs["pipeline"] for n in g.nodes.values() if n.kind == "task"}
    assert runs == {m.run_id: "monitor", d.run_id: "daily"}
    down = lineage(d.app.store, InstanceTarget(d.run_id, "daily_stats"), "downstream")
    assert f"task:{m.run_id}/compare" in down.nodes


# -- the command -----------------------------------------------------------------------------


def test_phloem_lineage_prints_a_tree_or_json(home: Path) -> None:
    r = phloem.run(fraud, executor="inline", logical_date="2026-03-01")
    cli = CliRunner()
    tree = cli.invoke(app, ["lineage", r.run_id, "score"])
    assert tree.exit_code == 0, tree.output
    text = tree.stdout
    assert text.index("fraud.score") < text.index("fraud.train") < text.index("fraud.load")
    assert "pandas.DataFrame parquet-pandas" in text and "params {\"n\"=10}" in text
    assert "(shown above)" in text  # features is reached twice, printed once

    down = cli.invoke(app, ["lineage", r.run_id, "load", "--downstream", "--json"])
    doc = json.loads(down.stdout)
    assert doc["direction"] == "downstream" and doc["format"] == 1
    assert doc["roots"] == [f"task:{r.run_id}/load"]
    assert {e["role"] for e in doc["edges"]} == {"input", "output"}
    assert doc["truncated"] is None

    small = cli.invoke(app, ["lineage", r.run_id, "score", "--max-nodes", "2"])
    assert small.exit_code == 0 and "note: stopped at 2 nodes" in small.stdout

    for args, message in [
        (["fraud:3"], "no model named 'fraud' in the registry"),
        (["abc"], "too short"),
        ([r.run_id, "score", "--upstream", "--downstream"], "not both"),
        (["a", "b", "c"], "one or two words"),
        (["nope", "score"], "no run 'nope'"),
    ]:
        bad = cli.invoke(app, ["lineage", *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert message in bad.stderr, (args, bad.stderr)


# -- model versions ----------------------------------------------------------------------------


@task
def prepare(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(n, dtype=float), "y": np.arange(n) % 2})


@task
def fit(df: pd.DataFrame) -> int:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(df[["x"]], df["y"])
    version = phloem.models.register("churn", model, metrics={"auc": 0.8}, eval_data=df)
    phloem.models.set_alias("churn", version, "production")
    return version


@task
def predict(version: int) -> float:
    model = phloem.models.load(f"churn:{version}")
    return float(model.predict_proba(pd.DataFrame({"x": [1.0]}))[0][1])


@pipeline
def churn(n: int = 20) -> None:
    predict(fit(prepare(n)))


def test_a_model_version_is_a_target_through_the_registry(home: Path) -> None:
    r = phloem.run(churn, executor="inline", logical_date="2026-03-01")
    assert r.state is RunState.SUCCESS
    cli = CliRunner()
    for ref in ("churn:1", "churn@production"):
        up = cli.invoke(app, ["lineage", ref, "--json"])
        assert up.exit_code == 0, up.output
        doc = json.loads(up.stdout)
        tasks = {n["task_id"] for n in doc["nodes"] if n["kind"] == "task"}
        assert tasks == {"fit", "prepare"}  # the model, the task that registered it, its data
        roles = {e["role"] for e in doc["edges"]}
        assert {"model", "input", "output"} <= roles
    down = json.loads(cli.invoke(app, ["lineage", "churn:1", "--downstream", "--json"]).stdout)
    assert {n["task_id"] for n in down["nodes"] if n["kind"] == "task"} == {"predict"}
    tree = cli.invoke(app, ["lineage", "churn@production"]).stdout
    assert "churn.fit" in tree and "model" in tree
    for ref, message in [("churn:9", "version"), ("nochurn:1", "nochurn"),
                         ("churn@staging", "no alias 'staging'")]:  # fmt: skip
        bad = cli.invoke(app, ["lineage", ref])
        assert bad.exit_code == 2 and message in bad.stderr, (ref, bad.stderr)


# -- cache hits --------------------------------------------------------------------------------


@task(cache=True)
def make_pair(n: int) -> dict[str, Any]:
    return {"model": np.arange(n), "data": pd.DataFrame({"x": np.arange(n)})}


@task(cache=True)
def use_model_only(model: np.ndarray) -> int:
    return int(model.sum())


@pipeline
def cached_pair(n: int = 4) -> None:
    use_model_only(make_pair(n)["model"])


def test_a_cache_hit_records_lineage_per_value(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    first = phloem.run(cached_pair, executor="inline", store=url, home=tmp_path,
                       logical_date="2026-03-01")  # fmt: skip
    second = phloem.run(cached_pair, executor="inline", store=url, home=tmp_path,
                        logical_date="2026-03-02")  # fmt: skip
    store = second.app.store
    assert store.get_instance(second.run_id, "use_model_only").state.value == "cached"
    pair = digests(first, "make_pair")
    inputs = {u.digest for u in store.artifact_uses(second.run_id)
              if u.task_id == "use_model_only" and u.role == "input"}  # fmt: skip
    assert inputs == {pair["model"]}
