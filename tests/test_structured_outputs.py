"""Outputs with structure (a dict, tuple or dataclass of values, each stored its own way) and
``phloem.Output`` metadata, from the codec to runs on real stores and worker processes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

import phloem
from phloem import pipeline, task
from phloem.artifacts import ArtifactRef, ArtifactStore, Inline, decode_output, encode_output
from phloem.artifacts.codec import from_stored_json, to_stored_json
from phloem.artifacts.output import Output, automatic
from phloem.artifacts.structured import MAX_ITEMS, Structured, pick
from phloem.errors import ArtifactError, SerializationError
from phloem.states import RunState

EXECUTORS = ["inline", "local"]


class Tracked:
    """Writes its name to ``log`` each time it is unpickled: counts decodes, in any process."""

    def __init__(self, name: str, log: str) -> None:
        self.name, self.log = name, log

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        with open(state["log"], "a") as f:
            f.write(self.name + "\n")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tracked) and other.name == self.name


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    seed: int


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


def frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"a": list(range(n)), "b": [f"x{i}" for i in range(n)]})


def roundtrip(value: object, store: ArtifactStore) -> tuple[Any, object]:
    node = encode_output(value, store)
    back = from_stored_json(to_stored_json(node))
    assert back == node
    return node, decode_output(back, store)


# ---- the codec ---------------------------------------------------------------------------


def test_a_dict_keeps_each_value_with_its_own_serializer(store: ArtifactStore) -> None:
    value = {"df": frame(), "arr": np.arange(5), "n": 3, "name": "fraud"}
    node, back = roundtrip(value, store)
    assert isinstance(node, Structured) and node.kind == "dict"
    kinds = {k: n.serializer if isinstance(n, ArtifactRef) else "inline" for k, n in
             zip(node.keys, node.items, strict=True)}  # fmt: skip
    assert kinds == {"df": "parquet-pandas", "arr": "numpy", "n": "inline", "name": "inline"}
    assert list(back) == list(value)  # key order kept
    pd.testing.assert_frame_equal(back["df"], value["df"])  # type: ignore[index]
    np.testing.assert_array_equal(back["arr"], value["arr"])  # type: ignore[index]
    assert back["n"] == 3 and back["name"] == "fraud"  # type: ignore[index]


def test_tuples_and_dataclasses_come_back_as_themselves(store: ArtifactStore) -> None:
    split = Split(frame(4), frame(2), seed=7)
    node, back = roundtrip(split, store)
    assert isinstance(node, Structured) and node.cls == f"{__name__}:Split"
    assert isinstance(back, Split) and back.seed == 7
    pd.testing.assert_frame_equal(back.train, split.train)

    pair = (frame(), {"w": np.ones(3)})
    node, back = roundtrip(pair, store)
    assert isinstance(node, Structured) and node.kind == "tuple"
    assert isinstance(node.items[1], Structured)  # nested, stored value by value too
    assert type(back) is tuple and type(back[1]) is dict  # type: ignore[index]
    np.testing.assert_array_equal(back[1]["w"], np.ones(3))  # type: ignore[index]


def test_plain_json_and_what_cannot_be_split_stay_whole(store: ArtifactStore) -> None:
    big = {"xs": list(range(30_000))}  # plain data: one JSON artifact, as before
    node, back = roundtrip(big, store)
    assert isinstance(node, ArtifactRef) and node.serializer == "json" and back == big
    wide = {f"k{i}": np.zeros(1) for i in range(MAX_ITEMS + 1)}  # too many values
    node = encode_output(wide, store)
    assert isinstance(node, ArtifactRef) and node.serializer == "pickle"
    small = {"a": 1, "b": [1, 2]}
    assert encode_output(small, store) == Inline(small)


def test_reading_one_value_decodes_only_that_value(store: ArtifactStore, tmp_path: Path) -> None:
    log = tmp_path / "decodes.log"
    node = encode_output({"model": Tracked("model", str(log)), "df": Tracked("df", str(log))},
                         store)  # fmt: skip
    reads: list[str] = []
    model = pick(node, ("model",), store, reads)
    assert model == Tracked("model", "") and log.read_text().split() == ["model"]
    assert isinstance(node, Structured)
    assert reads == [node.items[0].digest]  # type: ignore[union-attr]
    # the sibling may even be corrupt: reading the model does not touch it
    df_ref = node.items[1]
    assert isinstance(df_ref, ArtifactRef)
    Path(store.location(df_ref)).write_bytes(b"garbage")
    fresh = ArtifactStore(store.root)  # no cached bytes
    assert pick(node, ("model",), fresh) == Tracked("model", "")
    with pytest.raises(ArtifactError, match="corrupt"):
        decode_output(node, fresh)


def test_missing_keys_fail_as_the_value_would(store: ArtifactStore) -> None:
    node = encode_output({"df": frame(), "n": 1}, store)
    with pytest.raises(KeyError, match="modle"):
        pick(node, ("modle",), store)
    tup = encode_output((frame(), 1), store)
    with pytest.raises(IndexError):
        pick(tup, (5,), store)
    split = encode_output(Split(frame(), frame(), 1), store)
    with pytest.raises(AttributeError, match="no field 'tset'"):
        pick(split, ("tset",), store)
    assert pick(split, ("seed",), store) == 1


def test_a_malformed_structure_is_a_clear_error() -> None:
    with pytest.raises(ArtifactError, match="newer phloem"):
        from_stored_json(json.dumps({"__struct__": 9, "kind": "dict", "items": []}))
    with pytest.raises(ArtifactError, match="malformed"):
        from_stored_json(json.dumps({"__struct__": 1, "kind": "set", "items": []}))
    with pytest.raises(ArtifactError, match="differ in number"):
        from_stored_json(json.dumps({"__struct__": 1, "kind": "dict", "keys": ["a"], "items": []}))
    # an inline dict that uses the marker key is never mistaken for a structure
    value = {"__struct__": 1, "kind": "dict"}
    assert from_stored_json(to_stored_json(Inline(value))) == Inline(value)


# ---- metadata ------------------------------------------------------------------------------


def test_frames_describe_themselves() -> None:
    df = frame(3)
    meta = automatic(df)
    assert meta == {"rows": 3, "columns": 2, "schema": {"a": "int64", "b": str(df["b"].dtype)}}
    pmeta = automatic(pl.DataFrame({"a": [1, 2], "s": ["x", "y"]}))
    assert pmeta == {"rows": 2, "columns": 2, "schema": {"a": "Int64", "s": "String"}}
    assert automatic([1, 2]) is None


def test_output_metadata_must_be_json() -> None:
    assert Output(1, metadata={"auc": np.float64(0.5)}).metadata == {"auc": 0.5}
    with pytest.raises(SerializationError, match=r"'conn' is a builtins\.object"):
        Output(1, metadata={"conn": object()})
    with pytest.raises(SerializationError, match="keys must be strings"):
        Output(1, metadata={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(SerializationError, match="more than"):
        Output(1, metadata={"blob": "x" * 70_000})
    with pytest.raises(SerializationError, match="must be a dict"):
        Output(1, metadata=[("a", 1)])  # type: ignore[arg-type]


# ---- runs ----------------------------------------------------------------------------------


@task
def produce(log: str) -> dict[str, Any]:
    df = pd.DataFrame({"id": [1, 2, 3], "amount": [9.5, 1.0, 3.25]})
    return {
        "df": phloem.Output(df, metadata={"source": "unit test", "null_ids": 0}),
        "model": Tracked("model", log),
        "auc": np.float64(0.91),
    }


@task
def use_model(model: Tracked) -> str:
    return model.name


@task
def use_all(out: dict[str, Any]) -> list[str]:
    return sorted(out)


@task
def split_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame(5), frame(2)


@task
def count_rows(df: pd.DataFrame) -> int:
    return len(df)


@pipeline
def structured(log: str = "") -> None:
    out = produce(log)
    use_model(out["model"])
    use_all(out)
    count_rows.expand(df=split_rows())


@pytest.mark.parametrize("executor", EXECUTORS)
def test_downstream_reads_only_the_value_it_names(
    executor: str, store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "decodes.log"
    r = phloem.run(
        structured, params={"log": str(log)}, executor=executor, store=store_url,
        home=tmp_path,
    )  # fmt: skip
    assert r.state is RunState.SUCCESS, r
    assert r.output("use_model") == "model"
    assert r.output("use_all") == ["auc", "df", "model"]
    assert r.output("count_rows") == [5, 2]  # mapping over a tuple kept value by value
    # use_model decoded the model once, use_all once; the driver decoded nothing
    assert sorted(log.read_text().split()) == ["model", "model"]

    whole = r.output("produce")
    assert set(whole) == {"df", "model", "auc"} and whole["auc"] == 0.91
    assert type(whole["auc"]) is float  # a NumPy number became readable JSON
    assert list(whole["df"]["id"]) == [1, 2, 3]

    store = r.app.store
    node = from_stored_json(store.get_instance(r.run_id, "produce").output)
    assert isinstance(node, Structured)
    digests = {k: n.digest for k, n in zip(node.keys, node.items, strict=True)
               if isinstance(n, ArtifactRef)}  # fmt: skip
    assert set(digests) == {"df", "model"}
    uses = store.artifact_uses(r.run_id)
    outputs = {u.digest for u in uses if u.role == "output" and u.task_id == "produce"}
    assert outputs == set(digests.values())  # each value is an artifact of its own
    model_inputs = {u.digest for u in uses if u.role == "input" and u.task_id == "use_model"}
    assert model_inputs == {digests["model"]}  # lineage is per value
    all_inputs = {u.digest for u in uses if u.role == "input" and u.task_id == "use_all"}
    assert all_inputs == set(digests.values())
    record = store.artifact(digests["df"])
    assert record is not None and record.serializer == "parquet-pandas"

    meta = {m.path: m for m in store.lineage.output_metadata(r.run_id, "produce")}
    assert set(meta) == {'["df"]'}
    assert meta['["df"]'].digest == digests["df"]
    assert meta['["df"]'].metadata == {
        "rows": 3, "columns": 2, "schema": {"id": "int64", "amount": "float64"},
        "source": "unit test", "null_ids": 0,
    }  # fmt: skip


@task
def frame_out() -> pl.DataFrame:
    return pl.DataFrame({"x": list(range(10))})


@task
def small_out() -> Any:
    return phloem.Output({"ok": True}, metadata={"checked": 12})


@task
def bad_meta() -> Any:
    return phloem.Output(1, metadata={"when": object()})


@pipeline
def described() -> None:
    frame_out()
    small_out()


@pipeline
def badly_described() -> None:
    bad_meta()


def test_whole_outputs_keep_metadata_inline_or_not(store_url: str, tmp_path: Path) -> None:
    r = phloem.run(described, executor="inline", store=store_url, home=tmp_path)
    assert r.state is RunState.SUCCESS
    assert r.output("small_out") == {"ok": True}  # downstream gets the value itself
    lineage = r.app.store.lineage
    (fm,) = lineage.output_metadata(r.run_id, "frame_out")
    assert fm.path == "[]" and fm.digest is not None
    assert fm.metadata == {"rows": 10, "columns": 1, "schema": {"x": "Int64"}}
    (sm,) = lineage.output_metadata(r.run_id, "small_out")
    assert sm.digest is None and sm.metadata == {"checked": 12}


def test_metadata_that_is_not_json_fails_the_task(tmp_path: Path) -> None:
    r = phloem.run(badly_described, executor="inline", store="memory", home=tmp_path)
    assert r.state is RunState.FAILED
    error = r.app.store.get_instance(r.run_id, "bad_meta").error or ""
    assert "Output metadata 'when'" in error and "not JSON" in error


# ---- phloem output -------------------------------------------------------------------------


def test_phloem_output_shows_values_one_by_one_with_metadata(home: Path) -> None:
    from typer.testing import CliRunner

    from phloem.cli.main import app

    r = phloem.run(structured, params={"log": str(home / "log")}, executor="inline")
    r2 = phloem.run(described, executor="inline")
    cli = CliRunner()

    shown = cli.invoke(app, ["output", r.run_id, "produce"])
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert "dict of 3 values" in text and "['df']" in text and "['model']" in text
    assert "pandas.DataFrame, parquet-pandas" in text and "3 x 2" in text
    assert "source:   unit test" in text and "rows:     3" in text

    as_json = json.loads(cli.invoke(app, ["output", r.run_id, "produce", "--json"]).stdout)
    assert as_json["structure"] == "dict"
    df = as_json["values"]["['df']"]
    assert df["serializer"] == "parquet-pandas" and df["shape"] == [3, 2]
    assert df["metadata"]["null_ids"] == 0 and list(df["metadata"]["schema"]) == ["id", "amount"]
    assert as_json["values"]["['auc']"] == {"value": 0.91}

    meta = json.loads(cli.invoke(app, ["output", r.run_id, "produce", "--metadata"]).stdout)
    assert set(meta) == {"['df']"} and meta["['df']"]["rows"] == 3

    # an inline value: --json stays the value itself; the metadata is shown beside it
    small = cli.invoke(app, ["output", r2.run_id, "small_out", "--json"])
    assert json.loads(small.stdout) == {"ok": True}
    plain = cli.invoke(app, ["output", r2.run_id, "small_out"]).stdout
    assert '"ok": true' in plain and "checked:  12" in plain
    meta = json.loads(cli.invoke(app, ["output", r2.run_id, "small_out", "--metadata"]).stdout)
    assert meta == {"": {"checked": 12}}


# ---- any nesting round-trips ---------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_leaves = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=30),
    st.none(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=5),
    st.integers(min_value=0, max_value=50).map(lambda n: np.arange(n)),
    st.integers(min_value=0, max_value=5).map(frame),
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=12,
)


def _equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, pd.DataFrame):
        return bool(a.equals(b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        # inline JSON keeps keys sorted (canonical); a structured dict keeps their order
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=60, deadline=None)
@given(value=_values)
def test_any_nesting_comes_back_equal_and_each_path_reads_alone(value: Any) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        store = ArtifactStore(root)
        node = from_stored_json(to_stored_json(encode_output(value, store)))
        assert _equal(decode_output(node, store), value)
        if isinstance(node, Structured):
            for path, _ in node.leaves():
                expected = value
                for p in path:
                    expected = expected[p]
                assert _equal(pick(node, path, store), expected)
