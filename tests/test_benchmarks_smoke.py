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
