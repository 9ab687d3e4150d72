"""Task caching end to end: hits reuse outputs, and every way a key can go stale is a miss,
never a silent wrong hit. Runs on the in-memory store, SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
import secrets
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import phloem
from phloem.api import RunResult
from phloem.app import Phloem
from phloem.caching import CacheMode, Versions
from phloem.driver import Driver
from phloem.runs import create_run
from phloem.states import RunState, TaskState


class Project:
    """The user's own modules, written to a directory on sys.path under names unique to the
    test, so editing one and reloading it is what a user editing a file does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"u{secrets.token_hex(4)}_"
        self.modules: dict[str, ModuleType] = {}

    def name(self, short: str) -> str:
        return self.prefix + short

    def write(self, short: str, text: str) -> None:
        body = textwrap.dedent(text).replace("{p}", self.prefix)
        (self.root / f"{self.name(short)}.py").write_text(body)
        importlib.invalidate_caches()

    def load(self, short: str) -> ModuleType:
        name = self.name(short)
        mod = sys.modules.get(name)
        mod = importlib.reload(mod) if mod is not None else importlib.import_module(name)
        self.modules[short] = mod
        return mod

    def close(self) -> None:
        for short in self.modules:
            sys.modules.pop(self.name(short), None)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "code"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    p = Project(root)
    yield p
    p.close()


@pytest.fixture
def app(store_url: str, tmp_path: Path) -> Iterator[Phloem]:
    a = Phloem.open(store_url, tmp_path / "home")
    yield a
    a.close()


def drive(
    app: Phloem,
    pipe: phloem.Pipeline,
    *,
    params: dict[str, Any] | None = None,
    mode: CacheMode = CacheMode.USE,
    versions: Versions | None = None,
    clock: Callable[[], float] = time.time,
) -> RunResult:
    record = create_run(app.store, pipe.spec, params)
    Driver(
        app.store,
        app.executor("inline"),
        pipe.spec,
        record,
        app.artifacts,
        app.logs_dir,
        clock=clock,
        cache_mode=mode,
        cache_versions=versions,
    ).drive()
    return RunResult(app, pipe.spec, app.store.get_run(record.run_id))


HELPERS = """
import numpy as np

def clean(xs):
    return [x for x in xs if x is not None]

def mean(xs):
    return float(np.mean(xs))
"""

#: how the user modules below record their calls: a file beside them (a module-level list
#: would be part of the tasks' code, by content, as any module-level value they read is)
NOTE = """
def note(what):
    with open(__file__ + ".calls", "a") as fh:
        fh.write(f"{what}\\n")
"""

PIPE = """
import phloem
import {p}helpers as helpers
""" + NOTE + """

@phloem.task(cache=True)
def load(n: int) -> list:
    note("load")
    return list(range(n)) + [None]

@phloem.task(cache=True)
def prepare(xs: list) -> list:
    note("prepare")
    return helpers.clean(xs)

@phloem.task(cache=True)
def score(xs: list) -> float:
    note("score")
    return helpers.mean(xs)

@phloem.pipeline
def scoring(n: int = 5):
    score(prepare(load(n)))
"""


def calls(mod: ModuleType) -> list[str]:
    path = Path(f"{mod.__file__}.calls")
    return path.read_text().split() if path.exists() else []


def clear(mod: ModuleType) -> None:
    Path(f"{mod.__file__}.calls").unlink(missing_ok=True)


def _setup(project: Project) -> ModuleType:
    project.write("helpers", HELPERS)
    project.load("helpers")
    project.write("pipe", PIPE)
    return project.load("pipe")


def _outcomes(app: Phloem, r: RunResult) -> dict[str, str]:
    return {
        c.task_id if c.map_index < 0 else f"{c.task_id}[{c.map_index}]": c.outcome
        for c in app.store.cache.checks(r.run_id)
    }


def test_a_second_run_is_served_from_the_cache(app: Phloem, project: Project) -> None:
    mod = _setup(project)
    first = drive(app, mod.scoring)
    assert first.state is RunState.SUCCESS and calls(mod) == ["load", "prepare", "score"]
    clear(mod)
    second = drive(app, mod.scoring)
    assert second.state is RunState.SUCCESS
    assert calls(mod) == []
    assert set(second.states().values()) == {"cached"}
    assert second.output("score") == first.output("score") == 2.0
    assert _outcomes(app, second) == {"load": "hit", "prepare": "hit", "score": "hit"}
    assert app.store.attempts(second.run_id) == []  # no attempt ran
    events = [e for e in app.store.events(second.run_id) if e.new_state == "cached"]
    assert all(first.run_id in (e.reason or "") for e in events)
    assert len(app.store.cache.entries(mod.scoring.name)) == 3


def test_a_changed_parameter_recomputes_only_what_it_reaches(
    app: Phloem, project: Project
) -> None:
    mod = _setup(project)
    drive(app, mod.scoring, params={"n": 5})
    clear(mod)
    r = drive(app, mod.scoring, params={"n": 6})
    assert calls(mod) == ["load", "prepare", "score"]
    assert _outcomes(app, r)["load"] == "miss"


def test_editing_a_helper_in_another_module_is_a_miss(app: Phloem, project: Project) -> None:
    mod = _setup(project)
    drive(app, mod.scoring)
    project.write("helpers", HELPERS.replace("float(np.mean(xs))", "float(np.median(xs))"))
    project.load("helpers")
    clear(mod)
    r = drive(app, mod.scoring)
    # load and prepare do not reach mean(): still hits; score does: a miss
    assert calls(mod) == ["score"]
    assert r.states() == {"load": "cached", "prepare": "cached", "score": "success"}
    from phloem.caching.explain import explain

    check = app.store.cache.check(r.run_id, "score")
    assert check is not None and check.outcome == "miss"
    ex = explain(app.store, check)
    assert ex.differences == (f"code of {project.name('helpers')}.mean changed",)


def test_a_comment_or_a_moved_line_is_not_a_change(app: Phloem, project: Project) -> None:
    mod = _setup(project)
    drive(app, mod.scoring)
    project.write("helpers", "# a comment\n\n" + HELPERS)
    project.load("helpers")
    clear(mod)
    drive(app, mod.scoring)
    assert calls(mod) == []


def test_a_library_version_change_is_a_miss(app: Phloem, project: Project) -> None:
    mod = _setup(project)
    drive(app, mod.scoring)
    clear(mod)
    import numpy

    upgraded = Versions({"numpy": numpy.__version__ + ".post1"})
    r = drive(app, mod.scoring, versions=upgraded)
    assert calls(mod) == ["score"]  # only score's code reaches numpy (through helpers.mean)
    from phloem.caching.explain import explain

    check = app.store.cache.check(r.run_id, "score")
    assert check is not None
    assert explain(app.store, check).differences == (
        f"numpy {numpy.__version__} -> {numpy.__version__}.post1",
    )


def test_the_version_salt_invalidates(app: Phloem, project: Project) -> None:
    mod = _setup(project)
    drive(app, mod.scoring)
    salted = mod.prepare.with_options(cache=phloem.Cache(version="2"))

    @phloem.pipeline(name=mod.scoring.name)
    def scoring(n: int = 5) -> None:
        mod.score(salted(mod.load(n)))

    clear(mod)
    drive(app, scoring)
    assert calls(mod) == ["prepare"]  # its output is the same, so score still hits


def test_expired_entries_are_misses(app: Phloem, project: Project) -> None:
    mod = _setup(project)
    daily = mod.load.with_options(cache=phloem.Cache(expire=timedelta(days=1)))

    @phloem.pipeline(name="expiring")
    def expiring(n: int = 5) -> None:
        mod.prepare(daily(n))

    drive(app, expiring)
    clear(mod)
    drive(app, expiring, clock=lambda: time.time() + 3600)
    assert calls(mod) == []
    r = drive(app, expiring, clock=lambda: time.time() + 2 * 86400)
    assert calls(mod) == ["load"]
    check = app.store.cache.check(r.run_id, "load")
    assert check is not None and "expired" in (check.reason or "")


MAPPED = """
import phloem
""" + NOTE + """

@phloem.task(cache=True)
def double(x: int) -> int:
    note(x)
    return 2 * x

@phloem.task(cache=True)
def total(xs: list) -> int:
    return sum(xs)

@phloem.pipeline
def fan(xs: list = [1, 2, 3]):
    total(double.expand(x=xs))
"""


def test_a_fan_out_reruns_only_changed_elements(app: Phloem, project: Project) -> None:
    project.write("mapped", MAPPED)
    mod = project.load("mapped")
    drive(app, mod.fan, params={"xs": [1, 2, 3]})
    clear(mod)
    r = drive(app, mod.fan, params={"xs": [1, 5, 3, 4]})
    assert sorted(calls(mod)) == ["4", "5"]
    assert r.output("total") == 26
    assert r.task_state("double", 0) is TaskState.CACHED
    assert r.task_state("double", 1) is TaskState.SUCCESS
    assert r.task_state("double", 2) is TaskState.CACHED


SAME_INPUT = """
import phloem
""" + NOTE + """

@phloem.task
def produce() -> list:
    note("produce")
    return list(range(30000))  # large: stored as an artifact

@phloem.task(cache=True)
def consume(xs: list) -> list:
    note("consume")
    return [x * 2 for x in xs]

@phloem.task
def after(xs: list) -> int:
    return len(xs)

@phloem.pipeline
def same():
    after(consume(produce()))
"""


def test_the_same_input_made_by_another_run_is_a_hit_with_lineage(
    app: Phloem, project: Project
) -> None:
    project.write("same", SAME_INPUT)
    mod = project.load("same")
    first = drive(app, mod.same)
    clear(mod)
    r = drive(app, mod.same)
    # produce does not cache: it runs again and makes the same content; consume hits, and a
    # downstream task that does not cache runs on the cached output (cached counts as success)
    assert calls(mod) == ["produce"]
    assert r.states() == {"produce": "success", "consume": "cached", "after": "success"}
    assert r.output("after") == 30000
    uses = {(u.task_id, u.role) for u in app.store.artifact_uses(r.run_id)}
    assert ("consume", "output") in uses and ("consume", "input") in uses
    first_out = {u.digest for u in app.store.artifact_uses(first.run_id) if u.task_id == "consume"}
    now_out = {u.digest for u in app.store.artifact_uses(r.run_id) if u.task_id == "consume"}
    assert first_out == now_out


def _artifact_paths(app: Phloem, r: RunResult, task: str) -> list[Path]:
    from phloem.artifacts import ArtifactRef
    from phloem.artifacts.codec import from_stored_json

    ref = from_stored_json(r.tasks[(task, -1)].output)
    assert isinstance(ref, ArtifactRef)
    return [Path(app.artifacts.location(ref))]


@pytest.mark.parametrize("damage", ["deleted", "corrupt"])
def test_a_damaged_cached_artifact_is_a_miss_and_recomputed(
    app: Phloem, project: Project, damage: str
) -> None:
    project.write("same", SAME_INPUT)
    mod = project.load("same")
    first = drive(app, mod.same)
    (path,) = _artifact_paths(app, first, "consume")
    if damage == "deleted":
        path.unlink()
    else:
        data = bytearray(path.read_bytes())
        data[10] ^= 0xFF
        path.write_bytes(bytes(data))
    clear(mod)
    r = drive(app, mod.same)
    assert r.state is RunState.SUCCESS
    assert calls(mod) == ["produce", "consume"]
    check = app.store.cache.check(r.run_id, "consume")
    assert check is not None and check.outcome == "miss"
    assert ("missing" if damage == "deleted" else "corrupt") in (check.reason or "")
    clear(mod)
    again = drive(app, mod.same)  # the recomputed entry replaced the broken one
    assert calls(mod) == ["produce"] and again.output("after") == 30000


class Unstable:
    """An object whose pickle changes every time (it records when it was pickled)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unstable, (), {"at": time.perf_counter_ns()})

    def __setstate__(self, state: Any) -> None:
        pass


def _gen() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda tmp: open(tmp / "f.txt", "w"), "open file"),  # noqa: SIM115
        (lambda tmp: _gen(), "generator"),
        (lambda tmp: (lambda x: x), "lambda"),
        (lambda tmp: Unstable(), "pickles differently"),
    ],
    ids=["file-handle", "generator", "lambda", "unstable-pickle"],
)
def test_an_input_without_a_stable_hash_runs_and_says_why(
    app: Phloem, tmp_path: Path, make: Callable[[Path], Any], why: str
) -> None:
    calls: list[int] = []
    value = make(tmp_path)

    @phloem.task(cache=True)
    def use(v: Any) -> int:
        calls.append(1)
        return 1

    @phloem.pipeline(name="unhashable")
    def unhashable() -> None:
        use(value)

    try:
        for _ in range(2):
            r = drive(app, unhashable)
            assert r.state is RunState.SUCCESS
        assert len(calls) == 2  # never served from the cache
        check = app.store.cache.check(r.run_id, "use")
        assert check is not None and check.outcome == "uncacheable"
        assert "input 'v'" in (check.reason or "") and why in (check.reason or "")
        assert app.store.cache.entries("unhashable") == []
    finally:
        if hasattr(value, "close"):
            value.close()


def test_no_cache_and_refresh_cache(app: Phloem, project: Project) -> None:
    mod = _setup(project)
    r = drive(app, mod.scoring, mode=CacheMode.OFF)
    assert app.store.cache.entries(mod.scoring.name) == []
    assert app.store.cache.checks(r.run_id) == []
    drive(app, mod.scoring)
    before = {e.key: e.run_id for e in app.store.cache.entries(mod.scoring.name)}
    clear(mod)
    refreshed = drive(app, mod.scoring, mode=CacheMode.REFRESH)
    assert calls(mod) == ["load", "prepare", "score"]
    after = {e.key: e.run_id for e in app.store.cache.entries(mod.scoring.name)}
    assert after.keys() == before.keys()
    assert set(after.values()) == {refreshed.run_id}


def test_two_runs_computing_one_key_at_once_both_succeed_with_one_entry(
    app: Phloem, store_url: str, tmp_path: Path
) -> None:
    if store_url == "memory":
        pytest.skip("a private store cannot be shared by two drivers")
    both_inside = threading.Barrier(2, timeout=60)

    @phloem.task(cache=True)
    def slow(n: int) -> int:
        both_inside.wait()  # each run looked its key up before either wrote an entry
        return n + 1

    @phloem.pipeline(name="race")
    def race() -> None:
        slow(1)

    results: list[RunResult] = []
    errors: list[BaseException] = []

    def one() -> None:
        other = Phloem.open(store_url, tmp_path / "home")
        try:
            results.append(drive(other, race))
        except BaseException as exc:
            errors.append(exc)
        finally:
            other.close()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert [r.state for r in results] == [RunState.SUCCESS, RunState.SUCCESS]
    assert len(app.store.cache.entries("race")) == 1
    r = drive(app, race)  # and the next run hits it
    assert r.states() == {"slow": "cached"}


def test_cached_branch_follows_its_earlier_choice(app: Phloem) -> None:
    calls: list[str] = []

    @phloem.task.branch(cache=True)
    def choose(x: int) -> str:
        calls.append("choose")
        return "left" if x > 0 else "right"

    @phloem.task
    def left() -> str:
        return "L"

    @phloem.task
    def right() -> str:
        return "R"

    @phloem.pipeline(name="branchy")
    def branchy(x: int = 1) -> None:
        choose(x) >> [left(), right()]

    drive(app, branchy)
    r = drive(app, branchy)
    assert calls == ["choose"]
    assert r.states() == {"choose": "cached", "left": "success", "right": "skipped"}


def test_pipeline_default_task_options_turn_caching_on(app: Phloem) -> None:
    calls: list[int] = []

    @phloem.task
    def one() -> int:
        calls.append(1)
        return 1

    @phloem.pipeline(name="defaults", default_task_options={"cache": True})
    def defaults() -> None:
        one()

    drive(app, defaults)
    assert drive(app, defaults).states() == {"one": "cached"}
    assert calls == [1]


def test_a_key_function_replaces_the_inputs(app: Phloem) -> None:
    calls: list[int] = []

    def by_day(ctx: Any) -> str:
        return ctx.logical_date[:10]

    @phloem.task(cache=phloem.Cache(key=by_day))
    def fetch(n: int) -> int:
        calls.append(n)
        return n

    @phloem.pipeline(name="keyed")
    def keyed(n: int = 1) -> None:
        fetch(n)

    drive(app, keyed, params={"n": 1})
    r = drive(app, keyed, params={"n": 2})  # same day: the key function says same key
    assert calls == [1] and r.output("fetch") == 1


def test_bad_cache_options_are_definition_errors() -> None:
    with pytest.raises(phloem.DefinitionError, match="option 'cache' must be True"):
        phloem.task(cache="yes")(lambda: 1)
    with pytest.raises(phloem.DefinitionError, match="expire must be a positive"):
        phloem.Cache(expire=-1)
    with pytest.raises(phloem.DefinitionError, match="key must be a function"):
        phloem.Cache(key="x")  # type: ignore[arg-type]


def test_an_unknown_cache_mode_is_a_clear_error(tmp_path: Path) -> None:
    @phloem.task(cache=True)
    def one() -> int:
        return 1

    @phloem.pipeline(name="modes")
    def modes() -> None:
        one()

    with pytest.raises(phloem.PhloemError, match="unknown cache mode 'sometimes'"):
        phloem.run(modes, store="memory", home=tmp_path, cache="sometimes")


CFG = """
class Scaler:
    factor = 2

    def apply(self, x):
        return x * self.factor
"""

CFG_PIPE = """
import phloem
import {p}cfg as cfg


@phloem.task(cache=True)
def use(scaler, x: int) -> int:
    return scaler.apply(x)


@phloem.pipeline
def scaled():
    use(cfg.Scaler(), 21)
"""


def test_an_input_of_the_users_own_class_counts_by_its_code(
    app: Phloem, project: Project
) -> None:
    # the task never names the class: its methods reach it through the argument
    project.write("cfg", CFG)
    project.load("cfg")
    project.write("cfgpipe", CFG_PIPE)
    mod = project.load("cfgpipe")
    assert drive(app, mod.scaled).output("use") == 42
    assert drive(app, mod.scaled).states() == {"use": "cached"}
    project.write("cfg", CFG.replace("x * self.factor", "x * self.factor + 1"))
    project.load("cfg")
    mod = project.load("cfgpipe")
    r = drive(app, mod.scaled)
    assert r.states() == {"use": "success"} and r.output("use") == 43


CFG_CHAIN = """
import phloem
import {p}cfg as cfg


@phloem.task(cache=True)
def make():
    return cfg.Scaler()


@phloem.task(cache=True)
def apply(scaler, x: int) -> int:
    return scaler.apply(x)


@phloem.pipeline
def chained():
    apply(make(), 21)
"""


def test_an_upstream_object_of_the_users_own_class_counts_by_its_code(
    app: Phloem, project: Project
) -> None:
    project.write("cfg", CFG)
    project.load("cfg")
    project.write("chain", CFG_CHAIN)
    mod = project.load("chain")
    assert drive(app, mod.chained).output("apply") == 42
    project.write("cfg", CFG.replace("x * self.factor", "x * self.factor + 1"))
    project.load("cfg")
    r = drive(app, mod.chained)
    # make's pickle is the same bytes (same state), but apply calls the changed method
    assert r.states() == {"make": "success", "apply": "success"}
    assert r.output("apply") == 43
