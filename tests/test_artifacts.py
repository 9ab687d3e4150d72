"""phloem.artifacts: serializers, the content-addressed store and the output codec."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import phloem.artifacts
from phloem.artifacts import (
    ArtifactRef,
    ArtifactStore,
    Inline,
    decode_output,
    encode_output,
    from_stored_json,
    to_stored_json,
)
from phloem.artifacts.serializers import REGISTRY, by_name, choose
from phloem.artifacts.serializers.json import encode, fits_inline
from phloem.artifacts.structured import Structured
from phloem.errors import ArtifactError, SerializationError


@dataclass
class Point:
    x: int
    y: float


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def roundtrip(value: object, store: ArtifactStore) -> tuple[Inline | ArtifactRef, object]:
    """Encode, go through the database text form, and decode again, like the runner does."""
    encoded = encode_output(value, store)
    text = to_stored_json(encoded)
    assert from_stored_json(text) == encoded
    return encoded, decode_output(from_stored_json(text), store)


# ---- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, -7, 2**62, True, None, 1.5, "héllo ☃", "", [], {}, [1, "a", None, 2.5],
     {"a": {"b": [1, {"c": False}]}, "z": []}],
    ids=repr,
)  # fmt: skip
def test_small_json_values_are_inline(value: object, store: ArtifactStore) -> None:
    encoded, back = roundtrip(value, store)
    assert encoded == Inline(value)
    assert back == value and type(back) is type(value)
    assert not Path(store.root).exists()  # nothing was written


def test_large_list_becomes_a_json_artifact(store: ArtifactStore) -> None:
    value = list(range(50_000))
    encoded, back = roundtrip(value, store)
    assert isinstance(encoded, ArtifactRef)
    assert (encoded.serializer, encoded.type_name) == ("json", "list")
    assert back == value
    assert (
        Path(store.location(encoded)).read_bytes()
        == json.dumps(value, separators=(",", ":")).encode()
    )


def test_pandas_frame_keeps_index_and_dtypes(store: ArtifactStore) -> None:
    df = pd.DataFrame(
        {"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, None, 2.0]},
        index=pd.Index([10, 20, 30], name="id"),
    )
    encoded, back = roundtrip(df, store)
    assert isinstance(encoded, ArtifactRef)
    assert encoded.serializer == "parquet-pandas"
    assert encoded.type_name == "pandas.DataFrame"
    assert encoded.key.endswith(".parquet")
    pd.testing.assert_frame_equal(back, df)  # type: ignore[arg-type]


def test_pandas_frame_pyarrow_cannot_convert_falls_back_to_pickle(store: ArtifactStore) -> None:
    df = pd.DataFrame({"mixed": [1, "x", 2.5]})
    ref = store.put(df)
    assert ref.serializer == "pickle"
    pd.testing.assert_frame_equal(store.get(ref), df)  # type: ignore[arg-type]


def test_polars_frame_comes_back_as_polars(store: ArtifactStore) -> None:
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"a": [1, 2], "s": ["x", None], "l": [[1], [2, 3]]})
    encoded, back = roundtrip(df, store)
    assert isinstance(encoded, ArtifactRef)
    assert (encoded.serializer, encoded.type_name) == ("parquet-polars", "polars.DataFrame")
    assert isinstance(back, pl.DataFrame)
    assert back.equals(df)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.linspace(0.0, 1.0, 20).reshape(4, 5),
        np.asfortranarray(np.eye(3, dtype=np.float32)),
        np.array(["a", "bc"]),
        np.zeros((0, 3)),
    ],
    ids=["int-2d", "float-2d", "fortran-f32", "unicode", "empty"],
)
def test_numpy_arrays(array: np.ndarray, store: ArtifactStore) -> None:
    encoded, back = roundtrip(array, store)
    assert isinstance(encoded, ArtifactRef)
    assert (encoded.serializer, encoded.type_name) == ("numpy", "numpy.ndarray")
    assert isinstance(back, np.ndarray)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.flags.f_contiguous == array.flags.f_contiguous
    np.testing.assert_array_equal(back, array)


def test_numpy_object_array_goes_to_pickle(store: ArtifactStore) -> None:
    array = np.array([{"a": 1}, None], dtype=object)
    ref = store.put(array)
    assert ref.serializer == "pickle"
    back = store.get(ref)
    assert isinstance(back, np.ndarray) and list(back) == list(array)


def test_sklearn_model_uses_joblib(store: ArtifactStore) -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = linear_model.LogisticRegression().fit(x, y)
    encoded, back = roundtrip(model, store)
    assert isinstance(encoded, ArtifactRef)
    assert encoded.serializer == "joblib"
    assert encoded.type_name == "sklearn.linear_model.LogisticRegression"
    np.testing.assert_array_equal(back.predict(x), model.predict(x))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    [{1: "int key"}, np.float64(0.25), b"raw"],
    ids=["int-keys", "np-float64", "bytes"],
)
def test_values_json_would_change_go_to_pickle(value: object, store: ArtifactStore) -> None:
    encoded, back = roundtrip(value, store)
    assert isinstance(encoded, ArtifactRef)
    assert encoded.serializer == "pickle"
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize(
    "value",
    [Point(1, 2.5), (1, 2), {"t": (1,)}],
    ids=["dataclass", "tuple", "nested-tuple"],
)
def test_tuples_and_dataclasses_are_kept_value_by_value(
    value: object, store: ArtifactStore
) -> None:
    # never turned into JSON lists or dicts: each value is kept on its own, the type in the
    # structure, so what comes back is equal and of the same type
    encoded, back = roundtrip(value, store)
    assert isinstance(encoded, Structured)
    assert back == value and type(back) is type(value)


def test_nan_and_infinity_are_not_json(store: ArtifactStore) -> None:
    for value in (float("nan"), [1.0, float("inf")]):
        ref = encode_output(value, store)
        assert isinstance(ref, ArtifactRef) and ref.serializer == "pickle"
    assert decode_output(encode_output([float("-inf")], store), store) == [float("-inf")]


def test_self_referencing_list_is_stored_by_pickle(store: ArtifactStore) -> None:
    value: list[object] = [1]
    value.append(value)
    back = decode_output(encode_output(value, store), store)
    assert isinstance(back, list) and back[1] is back


def test_registry_order_and_choose() -> None:
    assert [s.name for s in REGISTRY] == [
        "json", "parquet-pandas", "parquet-polars", "numpy", "joblib", "pickle",
    ]  # fmt: skip
    assert choose({"a": 1}).name == "json"
    assert choose(pd.DataFrame()).name == "parquet-pandas"
    assert choose(np.zeros(2)).name == "numpy"
    assert choose(object()).name == "pickle"
    with pytest.raises(ArtifactError, match="unknown serializer 'msgpack'"):
        by_name("msgpack")


# ---- inline limit and stored text ----------------------------------------------------------


def test_inline_limit_boundary(store: ArtifactStore) -> None:
    limit = 100
    at_limit = "x" * (limit - 2)  # two quotes make exactly `limit` bytes
    assert encode_output(at_limit, store, inline_limit=limit) == Inline(at_limit)
    over = at_limit + "x"
    ref = encode_output(over, store, inline_limit=limit)
    assert isinstance(ref, ArtifactRef) and ref.size == limit + 1
    assert decode_output(ref, store) == over

    items = [123456789] * 10  # "[" + 10 * 9 digits + 9 commas + "]" = 101 bytes
    assert isinstance(encode_output(items, store, inline_limit=100), ArtifactRef)
    assert encode_output(items, store, inline_limit=101) == Inline(items)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)  # fmt: skip


@given(value=json_values, slack=st.integers(-3, 3))
def test_inline_decision_matches_the_encoded_size(value: object, slack: int) -> None:
    """The size bound used to bail out early never rejects a value that would fit."""
    size = len(encode(value))
    limit = max(size + slack, 0)
    assert fits_inline(value, limit) == (size <= limit)


def test_escaped_strings_count_by_encoded_size(store: ArtifactStore) -> None:
    value = "\n" * 10  # each newline is encoded as two bytes
    assert isinstance(encode_output(value, store, inline_limit=21), ArtifactRef)
    assert encode_output(value, store, inline_limit=22) == Inline(value)


def test_tiny_inline_limit_still_applies_to_scalars(store: ArtifactStore) -> None:
    assert isinstance(encode_output(123456, store, inline_limit=5), ArtifactRef)
    assert encode_output(12345, store, inline_limit=5) == Inline(12345)


def test_stored_json_forms() -> None:
    assert to_stored_json(Inline({"b": 1, "a": [1, 2]})) == '{"a":[1,2],"b":1}'
    assert from_stored_json("3") == Inline(3)
    ref = ArtifactRef("ab" * 32, "json", "list", 10, f"sha256/ab/{'ab' * 32}.json")
    assert json.loads(to_stored_json(ref))["__artifact__"] == 1
    assert from_stored_json(to_stored_json(ref)) == ref
    assert ArtifactRef.from_json(json.loads(json.dumps(ref.to_json()))) == ref


@pytest.mark.parametrize(
    "value", [{"__artifact__": 1}, {"__inline__": 2}, {"__inline__": 2, "x": 3}]
)
def test_inline_dicts_with_marker_keys_are_not_mistaken_for_refs(value: object) -> None:
    assert from_stored_json(to_stored_json(Inline(value))) == Inline(value)


def test_decode_inline_returns_an_independent_copy(store: ArtifactStore) -> None:
    encoded = encode_output({"rows": [1, 2]}, store)
    first = decode_output(encoded, store)
    first["rows"].append(3)  # type: ignore[index]
    assert decode_output(encoded, store) == {"rows": [1, 2]}


def test_malformed_references_are_rejected() -> None:
    digest = "cd" * 32
    with pytest.raises(ArtifactError, match="does not match its digest"):
        ArtifactRef(digest, "pickle", "x", 1, "../../etc/passwd")
    with pytest.raises(ArtifactError, match="does not match its digest"):
        ArtifactRef(digest, "pickle", "x", 1, f"sha256/ab/{digest}.pkl")
    with pytest.raises(ArtifactError, match="not a sha256"):
        ArtifactRef("nothex", "pickle", "x", 1, "sha256/no/nothex.pkl")
    good = ArtifactRef(digest, "pickle", "x", 1, f"sha256/cd/{digest}.pkl").to_json()
    with pytest.raises(ArtifactError, match="lacks field 'size'"):
        ArtifactRef.from_json({k: v for k, v in good.items() if k != "size"})
    with pytest.raises(ArtifactError, match="newer phloem"):
        ArtifactRef.from_json({**good, "__artifact__": 2})
    with pytest.raises(ArtifactError, match="not valid JSON"):
        from_stored_json("{nope")


# ---- the store -----------------------------------------------------------------------------


def test_same_value_twice_is_stored_once(store: ArtifactStore) -> None:
    df = pd.DataFrame({"a": range(100)})
    first, second = store.put(df), store.put(df.copy())
    assert first == second
    big = list(range(20_000))
    assert store.put(big) == store.put(list(big))
    assert len(stored_files(Path(store.root))) == 2


def test_put_leaves_no_temporary_files(store: ArtifactStore) -> None:
    for value in ([1] * 40_000, np.ones(10), Point(1, 2.0), pd.DataFrame({"a": [1]})):
        store.put(value)
    names = [p.name for p in stored_files(Path(store.root))]
    assert len(names) == 4
    assert not [n for n in names if n.startswith(".tmp")]


def test_failed_rename_cleans_up_and_raises(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(ArtifactError, match=r"cannot write artifact to .*Permission denied"):
        store.put(np.arange(5))
    assert stored_files(Path(store.root)) == []


def test_torn_copy_is_rewritten(store: ArtifactStore) -> None:
    ref = store.put(np.arange(100))
    path = Path(store.location(ref))
    path.write_bytes(path.read_bytes()[:10])
    assert not store.exists(ref)
    assert store.put(np.arange(100)) == ref
    assert store.exists(ref)
    np.testing.assert_array_equal(ArtifactStore(store.root).get(ref), np.arange(100))


def test_corrupt_artifact_is_refused(store: ArtifactStore) -> None:
    ref = store.put(Point(1, 2.0))
    path = Path(store.location(ref))
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt or was modified") as info:
        store.get(ref)
    assert str(path) in str(info.value)
    assert "refuses to load or unpickle" in str(info.value)
    # the bad copy is moved aside: storing the value again repairs the artifact
    assert not path.exists() and list(path.parent.glob(path.name + ".corrupt-*"))
    assert store.put(Point(1, 2.0)) == ref
    assert ArtifactStore(store.root).get(ref) == Point(1, 2.0)


def test_missing_artifact_names_its_location(store: ArtifactStore) -> None:
    ref = store.put([0] * 40_000)
    Path(store.location(ref)).unlink()
    assert not store.exists(ref)
    with pytest.raises(ArtifactError, match="is missing at") as info:
        store.get(ref)
    assert store.location(ref) in str(info.value)
    assert "same artifact root" in str(info.value)


def test_bytes_that_do_not_load_raise_serialization_error(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"not a pickle", "pickle", "mymodule.Thing")
    with pytest.raises(SerializationError, match=r"a mymodule\.Thing stored with pickle"):
        store.get(ref)


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (lambda: (i for i in range(3)), "builtins.generator"),
        (threading.Lock, "_thread.lock"),
        # a dict is kept value by value: the error names the value that cannot be stored
        (lambda: {"nested": threading.Lock()}, "_thread.lock"),
    ],
    ids=["generator", "lock", "lock-in-dict"],
)
def test_unpicklable_values_name_their_type(
    make: object, type_name: str, store: ArtifactStore
) -> None:
    value = make()  # type: ignore[operator]
    with pytest.raises(SerializationError) as info:
        encode_output(value, store)
    message = str(info.value)
    assert f"cannot store a value of type {type_name}" in message
    assert "return plain data" in message
    assert info.value.context["type"] == type_name
    assert stored_files(Path(store.root)) == []


def test_get_returns_fresh_objects_each_time(store: ArtifactStore) -> None:
    df_ref = store.put(pd.DataFrame({"a": [1, 2]}))
    first = store.get(df_ref)
    first["a"] = 0  # type: ignore[index]
    assert store.get(df_ref)["a"].tolist() == [1, 2]  # type: ignore[index]
    arr_ref = store.put(np.arange(3))
    store.get(arr_ref)[0] = 99  # type: ignore[index]
    assert store.get(arr_ref)[0] == 0  # type: ignore[index]


def test_cache_is_bounded(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path), cache_entries=2)
    refs = [store.put(np.full(10, i)) for i in range(5)]
    for i, ref in enumerate(refs):
        assert store.get(ref)[0] == i  # type: ignore[index]
    assert len(store._cache._items) == 2


def test_fsspec_url_root() -> None:
    store = ArtifactStore("memory://phloem-tests/artifacts")
    ref = store.put({"weights": list(range(20_000))})
    assert store.location(ref) == f"memory://phloem-tests/artifacts/{ref.key}"
    assert store.exists(ref)
    assert store.put({"weights": list(range(20_000))}) == ref
    assert ArtifactStore(store.root).get(ref) == {"weights": list(range(20_000))}


def test_store_pickles_by_configuration(store: ArtifactStore) -> None:
    ref = store.put(np.arange(4))
    clone = pickle.loads(pickle.dumps(store))
    assert clone.root == store.root
    np.testing.assert_array_equal(clone.get(ref), np.arange(4))


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore("art")
    assert store.root == str(tmp_path / "art")


# ---- import cost ---------------------------------------------------------------------------


def test_import_does_not_load_heavy_libraries() -> None:
    src = Path(phloem.artifacts.__file__).resolve().parents[2]
    heavy = ["pandas", "numpy", "pyarrow", "polars", "joblib", "sklearn", "fsspec"]
    code = (
        "import sys, phloem.artifacts\n"
        "from phloem.artifacts import ArtifactStore\n"
        "ArtifactStore('x')\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
