"""Memory limits enforced by local workers, retries that grow them after running out, and what
each attempt costs (CPU seconds, peak RSS), recorded with the attempt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.dsl.options import TaskOptions, build_options
from phloem.engine.retry import attempt_memory
from phloem.errors import DefinitionError
from phloem.runner.usage import human_bytes
from phloem.states import RunState

MiB = 2**20


@task(resources={"memory": "200MiB"}, retries=2, retry_memory_factor=2.0)
def hungry() -> int:
    block = np.ones(300 * MiB // 8)  # 1.5 times the first limit
    return int(block.nbytes)


@pipeline
def grows() -> None:
    hungry()


@task(resources={"memory": "200MiB"}, retries=2, retry_memory_factor=2.0, max_memory="250MiB")
def capped_task() -> int:
    return int(np.ones(300 * MiB // 8).nbytes)


@pipeline
def capped() -> None:
    capped_task()


def test_out_of_memory_is_retried_with_more_memory(tmp_path: Path) -> None:
    app = Phloem.open(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, workers=1)
    try:
        r = phloem.run(grows, executor="local", app=app)
        assert r.state is RunState.SUCCESS, r.tasks
        first, second = app.store.attempts(r.run_id, "hungry")
        assert (first.error or "").startswith("out of memory at 200 MiB (MemoryError")
        assert first.memory_limit == 200 * MiB and second.memory_limit == 400 * MiB
        assert second.error is None
        # what each attempt cost was measured where it ran
        assert second.peak_rss is not None and second.peak_rss >= 300 * MiB
        assert first.cpu_seconds is not None and second.cpu_seconds is not None
    finally:
        app.close()


def test_growth_stops_at_max_memory(tmp_path: Path) -> None:
    app = Phloem.open(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, workers=1)
    try:
        r = phloem.run(capped, executor="local", app=app)
        assert r.state is RunState.FAILED
        limits = [a.memory_limit for a in app.store.attempts(r.run_id, "capped_task")]
        assert limits == [200 * MiB, 250 * MiB, 250 * MiB]
        assert (r.tasks[("capped_task", -1)].error or "").startswith("out of memory at 250 MiB")
    finally:
        app.close()


def test_every_attempt_on_local_workers_records_its_cost(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from phloem.cli.main import app as cli_app

    f = tmp_path / "p.py"
    f.write_text(
        "from phloem import pipeline, task\n"
        "@task\n"
        "def busy() -> int:\n"
        "    return sum(i * i for i in range(200_000))\n"
        "@pipeline\n"
        "def costly():\n"
        "    busy()\n"
    )
    env = {"PHLOEM_HOME": str(tmp_path / "home")}
    cli = CliRunner()
    r = cli.invoke(cli_app, ["run", str(f), "--json"], env=env)
    assert r.exit_code == 0, r.output
    run_id = json.loads(r.stdout)["run_id"]
    shown = cli.invoke(cli_app, ["runs", "show", run_id, "--json"], env=env)
    [attempt] = json.loads(shown.stdout)["tasks"][0]["attempts"]
    assert attempt["cpu_seconds"] > 0 and attempt["peak_rss"] > 10 * MiB
    assert attempt["memory_limit"] is None
    assert attempt["gpu_seconds"] is None  # no GPU held (only Ray's workers hold GPUs)
    table = cli.invoke(cli_app, ["runs", "show", run_id], env=env).stdout
    assert "peak memory" in table and "MiB" in table
    assert "gpu reserved" not in table


def test_memory_options_are_checked_where_they_are_written() -> None:
    base = TaskOptions(name="t")
    with pytest.raises(DefinitionError, match="retry_memory_factor needs the memory of the first"):
        build_options(base, {"retry_memory_factor": 2.0, "retries": 1}, "here")
    with pytest.raises(DefinitionError, match="must be a number > 1"):
        build_options(base, {"retry_memory_factor": 1.0}, "here")
    with pytest.raises(DefinitionError, match="the task has none: add retries=N"):
        build_options(base, {"resources": {"memory": "1GiB"}, "retry_memory_factor": 2}, "here")
    with pytest.raises(DefinitionError, match=r"max_memory .* is less than resources memory"):
        build_options(base, {"resources": {"memory": "2GiB"}, "max_memory": "1GiB"}, "here")


def test_attempt_memory_grows_from_the_largest_limit_that_ran_out() -> None:
    o = build_options(
        TaskOptions(name="t"),
        {"resources": {"memory": "1GiB"}, "retries": 5, "retry_memory_factor": 1.5,
         "max_memory": "3GiB"},
        "here",
    )
    g = 2**30
    assert attempt_memory(o, []) == g
    assert attempt_memory(o, [g]) == int(1.5 * g)
    assert attempt_memory(o, [g, int(1.5 * g)]) == int(2.25 * g)
    assert attempt_memory(o, [int(2.25 * g)]) == 3 * g  # capped
    plain = TaskOptions(name="t")
    assert attempt_memory(plain, [g]) is None


def test_human_bytes() -> None:
    assert human_bytes(2 * 2**30) == "2 GiB"
    assert human_bytes(1.5 * 2**30) == "1.5 GiB"
    assert human_bytes(200 * MiB) == "200 MiB"
    assert human_bytes(512) == "512 B"


# -- the peak of each attempt ------------------------------------------------------------------


def _status_peak() -> int:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_a_peak_taken_from_getrusage_is_the_one_proc_status_shows() -> None:
    """The meter reads the peak from ``getrusage`` when that is exact (above what the process
    carried over from before it measured), else from /proc/self/status: the same number."""
    from phloem.runner.usage import UsageMeter

    meter = UsageMeter()
    try:
        meter.start()
        block = np.ones(64 * MiB // 8)  # written, so resident
        used = meter.stop()
        shown = _status_peak()
        del block
        assert used.peak_rss is not None and used.peak_rss >= 64 * MiB
        assert abs(used.peak_rss - shown) < 2 * MiB  # read a moment apart
        meter._floor = 1 << 62  # as if getrusage could not say: /proc/self/status is read
        meter.start()
        again = meter.stop()
        assert again.peak_rss is not None and abs(again.peak_rss - _status_peak()) < 2 * MiB
        assert again.peak_rss < used.peak_rss - 32 * MiB  # the block is gone: the peak reset
    finally:
        meter.close()


@task
def holds_a_block() -> int:
    return int(np.ones(256 * MiB // 8).sum())


@task
def holds_nothing(_after: int) -> int:
    return 1


@pipeline
def big_then_small() -> None:
    holds_nothing(holds_a_block())


def test_each_attempt_on_a_worker_records_its_own_peak(tmp_path: Path) -> None:
    app = Phloem.open(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, workers=1)
    try:
        r = phloem.run(big_then_small, executor="local", app=app)
        assert r.state is RunState.SUCCESS, r.tasks
        [big] = app.store.attempts(r.run_id, "holds_a_block")
        [small] = app.store.attempts(r.run_id, "holds_nothing")
        assert big.peak_rss is not None and big.peak_rss >= 256 * MiB
        assert small.peak_rss is not None and small.peak_rss < big.peak_rss - 200 * MiB
    finally:
        app.close()
