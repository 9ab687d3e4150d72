"""The benchmark workloads stay correct (sizes shrunk; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import phloem
from phloem.app import Phloem

WORKLOADS = Path(__file__).resolve().parent.parent / "benchmarks" / "workloads.py"


@pytest.fixture(scope="module")
def workloads() -> ModuleType:
    spec = importlib.util.spec_from_file_location("phloem_bench_workloads", WORKLOADS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_w2_chain_of_ten(workloads: ModuleType, home: Path) -> None:
    pipeline = workloads.make_w2("W2_smoke", length=10)
    result = phloem.run(pipeline, workers=2)
    assert result.succeeded
    assert len(result.tasks) == 10
    assert result.output("add_one__9") == 10 == workloads.plain_w2(lambda: None, 10)
    store = Phloem.open(None, home).store
    attempts = store.attempts(result.run_id)
    store.close()
    assert len(attempts) == 10
    assert all(a.started_at is not None and a.ended_at is not None for a in attempts)


def test_w1_fan_out_of_twenty(workloads: ModuleType, home: Path) -> None:
    result = phloem.run(workloads.W1, params={"n": 20}, workers=2)
    assert result.succeeded
    assert result.output("noop") == list(range(20))
    assert result.output("total") == sum(range(20)) == workloads.plain_w1(lambda: None, 20)
    assert sum(1 for task_id, _ in result.tasks if task_id == "noop") == 20


def test_import_benchmark_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location(
        "phloem_bench_imports", WORKLOADS.parent / "imports.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--repeat", "1", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "import phloem: median" in out
    assert "  phloem" in out.split("slowest modules", 1)[1]  # phloem itself is the slowest


@pytest.mark.parametrize("shape", ["distinct", "mapped"])
def test_fan_in_benchmark_runs_both_shapes(shape: str, home: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "phloem_bench_fan_in", WORKLOADS.parent / "fan_in.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.measure(shape, 30)
    assert figures["ok"]
    assert set(figures) == {"define", "run", "engine", "cpu", "ok"}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """``benchmarks/run.py`` (registered, as its dataclasses need their module)."""
    spec = importlib.util.spec_from_file_location("phloem_bench_run", WORKLOADS.parent / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_floor_s_hello_can_import_the_store_s_library_first(
    bench: ModuleType, tmp_path: Path
) -> None:
    wall, _, seconds = bench.plain_run(
        "hello", tmp_path / "with", durable=True, imports=bench.HELLO_STORE_IMPORTS
    )
    assert wall > seconds >= 0
    assert (tmp_path / "with" / "floor.db").exists()  # the task's durable writes were made
    with pytest.raises(SystemExit, match="No module named 'phloem_no_such_module'"):
        bench.plain_run("hello", tmp_path / "without", True, imports=("phloem_no_such_module",))


def test_the_hello_target_line_says_what_the_store_s_library_alone_costs(bench: ModuleType) -> None:
    sample = bench.Sample(0.34, 0.34, 0.01, 1, 0.0001, 0.13, 0.13)
    sample.floor_sqlalchemy_wall = 0.30
    _, lines = bench.summarize("hello", [sample], txn=1e-5)
    assert "2.62x <= 2x  MISS" in lines[1]
    assert "`import sqlalchemy` added: 0.300 s = 2.31x the floor's, already above" in lines[2]
    sample.floor_sqlalchemy_wall = 0.20
    assert "within the 2x target" in bench.store_import_line([sample], 0.13)
    sample.floor_sqlalchemy_wall = None
    assert bench.store_import_line([sample], 0.13) is None
