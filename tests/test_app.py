"""The application object, settings read once, the pure reopen plan, and the shape rules that
keep them so (no module reads the environment on its own, no import cycle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import phloem
from phloem.app import Phloem
from phloem.config import Settings
from phloem.engine.model import TI
from phloem.engine.reopen import plan_reopen
from phloem.errors import PhloemError
from phloem.states import RunState, TaskState
from phloem.store import MemoryStore, SqlStore

S = TaskState
SRC = Path(phloem.__file__).parent


@phloem.task
def breaks() -> None:
    raise ValueError("bad row")


@phloem.task
def after(x: object) -> str:
    return "never"


@phloem.pipeline
def failing() -> None:
    after(breaks())


# -- settings ------------------------------------------------------------------------------------


def test_settings_are_read_from_the_environment_given(tmp_path: Path) -> None:
    env = {
        "PHLOEM_HOME": str(tmp_path),
        "PHLOEM_DB_OUTAGE_TIMEOUT": "1.5",
        "PHLOEM_PARALLELISM": "3",
        "PHLOEM_LEASE_TTL": "12",
        "PHLOEM_WORKERS": "4",
        "PHLOEM_SECRET_KEY": "k" * 44,
    }
    s = Settings.from_env(environ=env)
    assert s.home == tmp_path and s.db_url == f"sqlite:///{tmp_path / 'phloem.db'}"
    assert (s.db_outage_timeout, s.parallelism, s.lease_ttl, s.workers) == (1.5, 3, 12.0, 4)
    assert s.secret_key == "k" * 44 and "kkkk" not in repr(s)  # a secret is never printed


def test_a_bad_setting_says_which_and_what_to_do(tmp_path: Path) -> None:
    env = {"PHLOEM_HOME": str(tmp_path), "PHLOEM_DB_OUTAGE_TIMEOUT": "soon"}
    with pytest.raises(PhloemError, match="PHLOEM_DB_OUTAGE_TIMEOUT='soon' is not valid"):
        Settings.from_env(environ=env)


def test_the_api_s_cpu_class_is_a_setting_checked_at_start(tmp_path: Path) -> None:
    home = {"PHLOEM_HOME": str(tmp_path)}
    assert Settings.from_env(environ=home).api_sched == "idle"
    assert Settings.from_env(environ={**home, "PHLOEM_API_SCHED": "NICE"}).api_sched == "nice"
    with pytest.raises(PhloemError, match="PHLOEM_API_SCHED='fast' is not valid: use 'idle'"):
        Settings.from_env(environ={**home, "PHLOEM_API_SCHED": "fast"})


def test_the_store_waits_as_long_as_the_settings_say(tmp_path: Path) -> None:
    settings = replace(
        Settings.from_env(tmp_path), db_url=f"sqlite:///{tmp_path / 'p.db'}", db_outage_timeout=0.25
    )
    with Phloem(settings) as app:
        assert app.store.outage_timeout == 0.25
        assert app.store.catalog.outage_timeout == 0.25


def test_no_module_reads_the_environment_on_its_own() -> None:
    """Settings come from ``Settings.from_env`` only; the others may pass the environment
    on to a child (shell tasks) or leave a user's thread settings alone."""
    allowed = {"config.py", "tasks/shell.py", "executors/threads.py"}
    readers = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and rel not in allowed
            ):
                readers.append(f"{rel}:{node.lineno}")
    assert readers == []


# -- the application object ----------------------------------------------------------------------


def test_the_app_opens_its_store_on_first_use_and_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHLOEM_DB_URL", raising=False)
    app = Phloem(Settings.from_env(tmp_path / "home"))
    assert app._store is None  # nothing opened by building it
    assert isinstance(app.store, SqlStore) and app.store.capabilities.shared
    assert (tmp_path / "home" / "phloem.db").exists()
    app.close()
    assert app._store is None


def test_a_private_store_gets_a_private_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHLOEM_HOME", raising=False)
    a, b = Phloem.open("memory"), Phloem.open("memory")
    assert isinstance(a.store, MemoryStore)
    assert a.home != b.home and a.home.name.startswith("phloem-")
    given = MemoryStore()
    c = Phloem.open(given)
    assert c.store is given and c.home.name.startswith("phloem-")
    c.close()  # a store it was given stays open
    assert given.list_runs() == []


def test_run_and_retry_use_the_app_they_are_given(tmp_path: Path) -> None:
    app = Phloem.open("memory", tmp_path)
    r = phloem.run(failing, executor="inline", app=app)
    assert r.state is RunState.FAILED
    assert app.store.get_run(r.run_id).state is RunState.FAILED  # the app's store
    again = phloem.retry(r.run_id, pipeline=failing, executor="inline", app=app)
    assert again.run_id == r.run_id and again.state is RunState.FAILED
    assert again.tasks[("breaks", -1)].try_number == 2  # reopened and run once more


# -- reopening: a pure plan ----------------------------------------------------------------------


def test_reopen_plan_resets_failed_instances_only() -> None:
    spec = failing.spec
    tis = [
        replace(TI(task_id="breaks"), state=S.FAILED, try_number=2),
        replace(TI(task_id="after"), state=S.UPSTREAM_FAILED),
    ]
    plan = plan_reopen(tis, spec)
    assert [old for old, _ in plan.resets] == tis and not plan.placeholders
    new = plan.resets[0][1]
    assert new.state is S.PENDING and new.retry_base == 2 and new.output is None
    assert [old for old, _ in plan_reopen(tis, spec, task="after").resets] == [tis[1]]
    both = plan_reopen(tis, spec, task="breaks", downstream=True)
    assert {old.task_id for old, _ in both.resets} == {"breaks", "after"}
    with pytest.raises(PhloemError):
        plan_reopen(tis, spec, task="nope")


# -- shape -----------------------------------------------------------------------------------------


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle anywhere in phloem (lazy and type-checking imports count too): the
    CLI's sub-command modules never import ``cli.main``, the store's parts never import
    ``sql``."""
    import grimp

    graph = grimp.build_graph("phloem")
    cycles = [
        (module, imported)
        for module in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(imported, module)
    ]
    assert cycles == []


def test_import_phloem_loads_no_store() -> None:
    code = "import sys, phloem; print('sqlalchemy' in sys.modules, 'phloem.app' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_connections_are_encrypted_with_the_settings_key(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    settings = replace(
        Settings.from_env(tmp_path), db_url=f"sqlite:///{tmp_path / 'p.db'}", secret_key=key
    )
    with Phloem(settings) as app:
        app.variables.set_variable("threshold", 0.5)
        app.variables.add_connection("wh", "postgresql://ana:pw@wh/dw")
        assert app.variables.get_variable("threshold") == 0.5
        assert app.variables.get_connection_uri("wh") == "postgresql://ana:pw@wh/dw"
    assert not (tmp_path / "secret.key").exists()  # the settings' key, not a new key file
