"""File dependencies (``phloem.File``, as ``dvc repro``), the cache commands, the engine's
``cached`` fact, and properties of the key."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import phloem
from phloem.app import Phloem
from phloem.caching.explain import differences
from phloem.caching.hashing import Unhashable, value_digest
from phloem.caching.keys import KeyParts
from phloem.cli.main import app as cli_app
from phloem.engine import CacheHit, Snapshot, cached, draft, finish
from phloem.engine.allocate import Grant
from phloem.records import TI
from phloem.states import RunState, TaskState

runner = CliRunner()

FILES = """
import phloem
from phloem import File

DATA = {data!r}


def note(what):
    with open(DATA + "/calls.txt", "a") as fh:
        fh.write(what + "\\n")


@phloem.task(cache=True)
def prepare(raw: File) -> File:
    note("prepare")
    rows = [r for r in raw.read_text().splitlines() if r.strip()]
    out = File(DATA + "/prepared.txt")
    with open(out, "w") as fh:
        fh.write("\\n".join(r.upper() for r in rows))
    return out


@phloem.task(cache=True)
def featurize(prepared: File) -> File:
    note("featurize")
    out = File(DATA + "/features.txt")
    with open(out, "w") as fh:
        fh.write(str(len(prepared.read_text())))
    return out


@phloem.task(cache=True)
def train(features: File, params: File) -> int:
    note("train")
    return int(features.read_text()) * 10 + len(params.read_text())


@phloem.pipeline
def files():
    train(featurize(prepare(File(DATA + "/raw.csv"))), File(DATA + "/params.yaml"))
"""


@pytest.fixture
def dvc(tmp_path: Path) -> tuple[str, Path]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "raw.csv").write_text("a,1\nb,2\n")
    (data / "params.yaml").write_text("alpha: 1\n")
    path = tmp_path / "files_pipeline.py"
    path.write_text(textwrap.dedent(FILES.format(data=str(data))))
    return f"{path}:files", data


def _calls(data: Path) -> list[str]:
    path = data / "calls.txt"
    out = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return out


def test_a_file_pipeline_reruns_only_the_stages_whose_files_changed(
    dvc: tuple[str, Path], tmp_path: Path
) -> None:
    target, data = dvc
    app = Phloem.open(f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "home")

    def run() -> phloem.RunResult:
        r = phloem.run(target, app=app, executor="local", workers=2)
        assert r.state is RunState.SUCCESS, r.states()
        return r

    first = run()
    assert _calls(data) == ["prepare", "featurize", "train"]
    assert first.output("train") == 7 * 10 + 9
    assert isinstance(first.output("featurize"), phloem.File)
    assert set(run().states().values()) == {"cached"} and _calls(data) == []

    # same length, other content: prepare and featurize run, and train, whose input file
    # holds the same text as before, is served from the cache
    (data / "raw.csv").write_text("c,3\nd,4\n")
    r = run()
    assert _calls(data) == ["prepare", "featurize"]
    assert r.states() == {"prepare": "success", "featurize": "success", "train": "cached"}

    (data / "params.yaml").write_text("alpha: 22\n")
    assert run().states()["train"] == "success" and _calls(data) == ["train"]

    # an output file deleted or edited by hand: its stage runs again, and what comes after
    # it is reused when the stage writes the same content again
    (data / "features.txt").unlink()
    r = run()
    assert _calls(data) == ["featurize"] and r.states()["train"] == "cached"
    check = app.store.cache.check(r.run_id, "featurize")
    assert check is not None and "no longer exists" in (check.reason or "")
    (data / "prepared.txt").write_text("edited by hand")
    r = run()
    assert _calls(data) == ["prepare"]
    assert r.states() == {"prepare": "success", "featurize": "cached", "train": "cached"}
    check = app.store.cache.check(r.run_id, "prepare")
    assert check is not None and "changed since it was cached" in (check.reason or "")
    app.close()


def test_a_missing_input_file_runs_uncached_and_says_which(tmp_path: Path) -> None:
    seen: list[int] = []

    @phloem.task(cache=True)
    def read(f: phloem.File) -> int:
        seen.append(1)
        return 0

    @phloem.pipeline(name="missing_file")
    def missing_file() -> None:
        read(phloem.File(tmp_path / "nope.csv"))

    app = Phloem.open("memory", tmp_path / "home")
    r = phloem.run(missing_file, app=app, executor="inline")
    assert r.state is RunState.SUCCESS and seen == [1]
    check = app.store.cache.check(r.run_id, "read")
    assert check is not None and check.outcome == "uncacheable"
    assert "nope.csv" in (check.reason or "") and "does not exist" in (check.reason or "")


# -- the commands ---------------------------------------------------------------------------------

CLI_PIPE = """
import phloem

@phloem.task(cache=True)
def double(x: int) -> int:
    return 2 * x

@phloem.task(cache=True)
def total(xs: list) -> int:
    return sum(xs)

@phloem.pipeline
def cli_cache(xs: list = [1, 2]):
    total(double.expand(x=xs))
"""


def _cli(*args: str) -> object:
    return runner.invoke(cli_app, [str(a) for a in args])


def _run_id(out: str) -> str:
    return str(json.loads(out)["run_id"])


def test_cache_commands(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "cli_cache.py"
    path.write_text(textwrap.dedent(CLI_PIPE))
    first = _cli("run", path, "--executor", "inline", "--json")
    assert first.exit_code == 0, first.output
    second = _cli("run", path, "--executor", "inline", "--json", "-p", "xs=[1, 3]")
    assert second.exit_code == 0, second.output
    run2 = _run_id(second.stdout)

    hit = _cli("cache", "explain", run2, "double", "--map-index", "0")
    assert hit.exit_code == 0, hit.output
    assert "double[0] in run" in hit.stdout and ": hit" in hit.stdout
    assert _run_id(first.stdout) in hit.stdout  # where the output came from
    miss = _cli("cache", "explain", run2, "total")
    assert miss.exit_code == 0, miss.output
    assert ": miss" in miss.stdout and "input xs changed" in miss.stdout
    as_json = json.loads(_cli("cache", "explain", run2, "total", "--json").stdout)
    assert as_json["outcome"] == "miss" and as_json["differences"] == ["input xs changed"]
    assert "cli_cache.total" in "".join(as_json["parts"]["code"])

    needs_index = _cli("cache", "explain", run2, "double")
    assert needs_index.exit_code == 2 and "--map-index" in needs_index.stderr
    unknown = _cli("cache", "explain", run2, "nope")
    assert unknown.exit_code == 2 and "no cache record" in unknown.stderr
    negative = _cli("cache", "explain", run2, "double", "--map-index", "-2")
    assert negative.exit_code == 2 and "--map-index" in negative.stderr  # as `logs`, `output`

    listed = _cli("cache", "list", "--pipeline", "cli_cache", "--json")
    entries = json.loads(listed.stdout)
    assert sorted(e["task_id"] for e in entries) == ["double", "double", "double", "total", "total"]
    assert "double" in _cli("cache", "list").stdout
    cleared = _cli("cache", "clear", "--pipeline", "cli_cache", "--task", "total")
    assert cleared.stdout.strip() == "cleared 2 cache entries"
    assert len(json.loads(_cli("cache", "list", "--json").stdout)) == 3

    fresh = _cli("run", path, "--executor", "inline", "--json", "--refresh-cache")
    assert fresh.exit_code == 0
    states = {t["task_id"]: t["state"] for t in json.loads(fresh.stdout)["tasks"]}
    assert set(states.values()) == {"success"}
    off = _cli("run", path, "--executor", "inline", "--json", "--no-cache")
    assert _cli("cache", "explain", _run_id(off.stdout), "total").exit_code == 2
    both = _cli("run", path, "--no-cache", "--refresh-cache")
    assert both.exit_code == 2 and "contradict" in both.stderr
    assert _cli("cache", "clear").stdout.strip() == "cleared 4 cache entries"
    assert _cli("cache", "list").stdout.strip() == "no cache entries"


# -- the engine -----------------------------------------------------------------------------------


def test_the_engine_makes_a_hit_cached_and_triggers_what_follows() -> None:
    @phloem.task(cache=True)
    def a() -> int:
        return 1

    @phloem.task
    def b(x: int) -> int:
        return x

    @phloem.pipeline(name="engine_cached")
    def p() -> None:
        b(a())

    spec = p.spec
    snap = Snapshot.build(spec, "r1", RunState.RUNNING, {}, [TI("a"), TI("b")])
    d = draft(snap, 100.0)
    assert list(d.ready) == [("a", -1)]
    cached(d, [CacheHit(("a", -1), "1", reason="cache hit: run r0")], 100.0)
    assert list(d.ready) == [("b", -1)]  # b's upstream is cached: a success for all_success
    decision = finish(d, 100.0, Grant(slots=10))
    states = {t.new.task_id: t.new.state for t in decision.transitions}
    assert states == {"a": TaskState.CACHED, "b": TaskState.QUEUED}
    a_ti = [t.new for t in decision.transitions if t.new.task_id == "a"][-1]
    assert a_ti.output == "1" and a_ti.try_number == 0
    # a stale fact (the instance is no longer scheduled) changes nothing
    d2 = draft(snap, 101.0)
    queued = replace(d2.w.get(("a", -1)), state=TaskState.QUEUED)
    d2.w.set(queued)
    cached(d2, [CacheHit(("a", -1), "1")], 101.0)
    assert d2.w.get(("a", -1)).state is TaskState.QUEUED


# -- properties of the key ------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
_names = st.text("abcdefgh.", min_size=1, max_size=6)
_parts = st.builds(
    KeyParts,
    code=st.dictionaries(_names, st.text("0123456789abcdef", min_size=4, max_size=4), max_size=3),
    packages=st.dictionaries(_names, st.text("0123456789.", min_size=1, max_size=4), max_size=3),
    inputs=st.dictionaries(_names, st.text("0123456789abcdef", min_size=4, max_size=4), max_size=3),
    version=st.text(max_size=3),
    custom=st.none() | st.text(max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(_parts, _parts)
def test_keys_are_equal_exactly_when_their_parts_are(a: KeyParts, b: KeyParts) -> None:
    same = a.to_json() == b.to_json()
    assert (a.digest() == b.digest()) == same
    assert (differences(a, b) == []) == same
    assert KeyParts.from_json(json.loads(json.dumps(a.to_json()))).digest() == a.digest()


@settings(max_examples=200, deadline=None)
@given(_json, _json)
def test_value_hashes_are_equal_exactly_when_values_are(x: object, y: object) -> None:
    assert value_digest(x) == value_digest(json.loads(json.dumps(x)))  # a copy hashes the same
    if x != y or json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True):
        assert value_digest(x) != value_digest(y)


def test_value_hashes_tell_types_and_order_apart() -> None:
    assert value_digest(1) != value_digest(1.0) != value_digest(True)
    assert value_digest([1, 2]) != value_digest((1, 2)) != value_digest([2, 1])
    assert value_digest({"a": 1, "b": 2}) == value_digest({"b": 2, "a": 1})
    assert value_digest({1, 2, 3}) == value_digest({3, 2, 1})
    import numpy as np

    arr = np.arange(6, dtype="int64")
    assert value_digest(arr) == value_digest(arr.copy())
    assert value_digest(arr) != value_digest(arr.reshape(2, 3))
    assert value_digest(arr) != value_digest(arr.astype("int32"))
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert value_digest(df) == value_digest(df.copy())
    changed = df.copy()
    changed.loc[1, "a"] = 3
    assert value_digest(df) != value_digest(changed)
    with pytest.raises(Unhashable, match="generator"):
        value_digest(x for x in [1])


def test_code_fingerprints_are_the_same_in_every_process(tmp_path: Path) -> None:
    """String hashing differs between processes (set order, frozenset constants): a key made
    in one process must match the one made in the next, or nothing would ever hit."""
    import os
    import subprocess
    import sys

    (tmp_path / "seeded_mod.py").write_text(
        textwrap.dedent(
            """
            KINDS = {"alpha", "beta", "gamma", "delta"}

            def helper(x):
                return x in {"a", "b", "c", "d", "e"} or x in KINDS
            """
        )
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import seeded_mod; "
        "from phloem.caching.fingerprint import function_digest; "
        "print(function_digest(seeded_mod.helper))"
    )
    digests = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


class _Broken:
    """Looks like a pydantic model whose dump fails: hashing it raises its own error."""

    model_fields: dict[str, object] = {}

    def model_dump(self, mode: str = "python") -> dict[str, object]:
        raise RuntimeError("dump failed")


def test_an_input_whose_hashing_raises_is_uncacheable_not_a_crash(tmp_path: Path) -> None:
    ran: list[int] = []

    @phloem.task(cache=True)
    def use(v: object) -> int:
        ran.append(1)
        return 1

    @phloem.pipeline(name="broken_input")
    def broken_input() -> None:
        use(_Broken())

    app = Phloem.open("memory", tmp_path / "home")
    r = phloem.run(broken_input, app=app, executor="inline")
    assert r.state is RunState.SUCCESS and ran == [1]
    check = app.store.cache.check(r.run_id, "use")
    assert check is not None and check.outcome == "uncacheable"
    assert "RuntimeError: dump failed" in (check.reason or "")


# -- the store's cache port (memory, SQLite, PostgreSQL) -------------------------------------------


def _entry(key: str, run_id: str, task: str = "a") -> object:
    from phloem.store import CacheEntry

    return CacheEntry(key, "etl", task, run_id, -1, '"out"', None, None, '{"format": 1}')


def _succeed(store: object, run_id: str, task: str, entries: tuple[object, ...]) -> object:
    from phloem.records import Transition
    from phloem.store import Commit

    ti = TI(task)
    ready = replace(ti, state=TaskState.SCHEDULED)
    running = replace(ready, state=TaskState.QUEUED, try_number=1)
    done = replace(running, state=TaskState.SUCCESS, output='"out"')
    req = Commit(
        run_id,
        (Transition(ti, ready), Transition(ready, running), Transition(running, done)),
        cache_entries=entries,  # type: ignore[arg-type]
    )
    return store.commit_many([req])[0]  # type: ignore[attr-defined]


def test_entries_are_written_with_the_success_and_only_once(store: object) -> None:
    from phloem.records import RunRecord
    from phloem.states import RunType

    def new(run_id: str, day: str) -> None:
        store.create_run(  # type: ignore[attr-defined]
            RunRecord(run_id, "etl", RunState.RUNNING, day, {}, 1.0, run_type=RunType.MANUAL),
            [TI("a")],
        )

    new("r1", "2026-01-01T00:00:00.000000+00:00")
    new("r2", "2026-01-02T00:00:00.000000+00:00")
    cache = store.cache  # type: ignore[attr-defined]
    assert cache.find(["k1"]) == {} and cache.tasks_with_entries("etl") == set()
    applied = _succeed(store, "r1", "a", (_entry("k1", "r1"),))
    assert not applied.lost  # type: ignore[attr-defined]
    assert cache.find(["k1", "nope"])["k1"].run_id == "r1"
    # a success that loses its compare-and-set writes no entry
    lost = _succeed(store, "r1", "a", (_entry("k2", "r1"),))
    assert lost.lost and cache.find(["k2"]) == {}  # type: ignore[attr-defined]
    # the same key from another run: the first entry stays
    _succeed(store, "r2", "a", (_entry("k1", "r2"),))
    assert cache.find(["k1"])["k1"].run_id == "r1"
    assert cache.tasks_with_entries("etl") == {"a"}
    assert [e.key for e in cache.entries("etl", "a")] == ["k1"]
    assert cache.clear("other") == 0 and cache.clear("etl", "a") == 1
    assert cache.entries() == []


def test_a_miss_that_fails_is_still_explained(tmp_path: Path) -> None:
    @phloem.task(cache=True)
    def boom(x: int) -> int:
        raise ValueError("no")

    @phloem.pipeline(name="failing_miss")
    def failing_miss() -> None:
        boom(1)

    app = Phloem.open("memory", tmp_path / "home")
    r = phloem.run(failing_miss, app=app, executor="inline")
    assert r.state is RunState.FAILED
    check = app.store.cache.check(r.run_id, "boom")
    assert check is not None and check.outcome == "miss" and check.parts
    assert app.store.cache.entries("failing_miss") == []
