"""The Ray executor on a real Ray cluster started by the tests on this machine: a head node
(1 CPU), a node with 2 CPUs and a custom resource ``big_disk`` (127.0.0.2) and a node with one
fake GPU (127.0.0.3). One cluster is shared by the module (starting one takes a while)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import phloem
from attempts import make_attempt
from phloem.app import Phloem
from phloem.config import Settings
from phloem.errors import PhloemError
from phloem.records import RunRecord
from phloem.states import RunState, TaskState
from phloem.store import AttemptRow
from processes import Processes
from raycluster import Node, RayCluster

pytestmark = pytest.mark.slow

DISK_IP, GPU_IP = "127.0.0.2", "127.0.0.3"
PHLOEM = [sys.executable, "-m", "phloem"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    c = RayCluster(
        tmp_path_factory.mktemp("ray"),
        [
            Node("disk", DISK_IP, cpus=2, resources={"big_disk": 1}),
            Node("gpu", GPU_IP, cpus=1, gpus=1),
        ],
    )
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture
def ray_app(cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Phloem:
    """A phloem on SQLite (shared by the cluster's workers: attempts heartbeat) that runs
    its tasks on the test cluster."""
    monkeypatch.setenv("PHLOEM_EXECUTOR", "ray")
    monkeypatch.setenv("PHLOEM_RAY_ADDRESS", cluster.address)
    monkeypatch.delenv("PHLOEM_DB_URL", raising=False)
    monkeypatch.delenv("PHLOEM_ARTIFACTS_URL", raising=False)
    return Phloem(Settings.from_env(tmp_path / "home"))


WHERE = """
import json, os, time

def where():
    import ray
    return {"ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}

def note(ledger, event):
    \"\"\"One line in the test's ledger: which try of which task did what, where, when.\"\"\"
    ctx = phloem.context()
    line = {"task": ctx.task_id, "try": ctx.try_number, "event": event, "at": time.time(),
            **where()}
    with open(ledger, "a") as f:
        f.write(json.dumps(line) + "\\n")
"""


def _errors(result: phloem.RunResult) -> dict[str, str | None]:
    return {f"{k[0]}[{k[1]}]": ti.error for k, ti in result.tasks.items() if ti.error}


def _pipeline(tmp_path: Path, body: str, name: str = "flow.py") -> Path:
    path = tmp_path / name
    path.write_text(
        "import phloem\nfrom phloem import pipeline, task\n"
        + textwrap.dedent(WHERE)
        + textwrap.dedent(body)
    )
    return path


def test_same_pipeline_same_results_as_local(ray_app: Phloem, tmp_path: Path) -> None:
    imports = tmp_path / "imports.txt"
    path = _pipeline(
        tmp_path,
        f"""
        with open({str(imports)!r}, "a") as f:  # once per process that imports the file
            f.write(f"{{os.getpid()}}\\n")

        @task
        def numbers(n: int) -> list[int]:
            print("making", n)
            return list(range(n))

        @task
        def square(x: int) -> dict:
            return {{"square": x * x, "pid": os.getpid()}}

        @task
        def total(xs: list[dict]) -> int:
            return sum(x["square"] for x in xs)

        @task(resources={{"custom": {{"big_disk": 1}}}})
        def on_disk() -> dict:
            return where()

        @task(resources={{"gpus": 1}})
        def on_gpu() -> dict:
            return where()

        @pipeline
        def flow(n: int = 12):
            total(square.expand(x=numbers(n)))
            on_disk()
            on_gpu()
        """,
    )
    local = phloem.run(str(path), executor="local", store="memory")
    assert local.state is RunState.SUCCESS
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    assert result.output("total") == local.output("total") == sum(x * x for x in range(12))
    squares = result.output("square")
    assert [q["square"] for q in squares] == [q["square"] for q in local.output("square")]
    # warm workers: 12 squares ran in fewer processes, each of which imported the file once
    pids = [int(p) for p in imports.read_text().split()]
    workers = {q["pid"] for q in squares}
    assert len(workers) < len(squares)
    assert all(pids.count(p) == 1 for p in workers)
    # the custom resource and the GPU were placed by Ray on the nodes that have them
    assert result.output("on_disk")["ip"] == DISK_IP
    gpu = result.output("on_gpu")
    assert gpu["ip"] == GPU_IP and gpu["gpus"] == "0"
    # the task's output went to its attempt's log, as on local workers
    logs = list((ray_app.logs_dir / result.run_id).glob("numbers*.log"))
    assert logs and "making 12" in logs[0].read_text()


def test_a_batched_fan_out_on_ray_keeps_each_instance_s_own_state_and_log(
    ray_app: Phloem, tmp_path: Path
) -> None:
    path = _pipeline(
        tmp_path,
        """
        @task
        def numbers(n: int) -> list[int]:
            return list(range(n))

        @task(batch_size=10)
        def square(x: int) -> dict:
            import ray
            print("squaring", x)
            return {"square": x * x, "call": ray.get_runtime_context().get_task_id(),
                    "try": phloem.context().try_number}

        @task
        def total(xs: list[dict]) -> int:
            return sum(x["square"] for x in xs)

        @pipeline
        def batched(n: int = 40):
            total(square.expand(x=numbers(n)))
        """,
    )
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    assert result.output("total") == sum(x * x for x in range(40))
    squares = result.output("square")
    calls: dict[str, int] = {}
    for q in squares:
        assert q["call"] and q["try"] == 1
        calls[q["call"]] = calls.get(q["call"], 0) + 1
    # one Ray call per batch of at most ten instances, not one per instance
    assert len(calls) < len(squares) and max(calls.values()) <= 10
    # each instance kept its own attempt (started before it ended) and its own log
    attempts = ray_app.store.attempts(result.run_id, "square")
    assert sorted(a.map_index for a in attempts) == list(range(40))
    assert all(a.state == "success" and a.started_at and a.ended_at for a in attempts)
    assert all(a.started_at <= a.ended_at for a in attempts)  # type: ignore[operator]
    for i in (0, 17, 39):
        logs = list((ray_app.logs_dir / result.run_id).glob(f"square*{i}*.log"))
        assert any(f"squaring {i}\n" in log.read_text() for log in logs), logs


def test_a_batch_whose_worker_dies_runs_again_one_by_one_and_only_the_culprit_spends_a_try(
    ray_app: Phloem, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    path = _pipeline(
        tmp_path,
        f"""
        LEDGER = {str(ledger)!r}

        @task(batch_size=8, retries=1)
        def fragile(x: int) -> int:
            note(LEDGER, f"start {{x}}")
            if x == 5 and phloem.context().try_number == 1:
                os.kill(os.getpid(), 9)  # its worker dies mid-batch
            return x

        @pipeline
        def dies_mid_batch():
            fragile.expand(x=list(range(16)))
        """,
    )
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    assert result.output("fragile") == list(range(16))
    attempts = ray_app.store.attempts(result.run_id, "fragile")
    tries = {}
    for a in attempts:
        tries.setdefault(a.map_index, []).append(a.try_number)
    # the culprit's first try failed (it killed its worker twice: in its batch and alone);
    # the others of its batch ran again without spending a try
    assert tries.pop(5) == [1, 2]
    assert all(t == [1] for t in tries.values()), tries
    culprit = [a for a in attempts if a.map_index == 5]
    assert "died while running this attempt" in (culprit[0].error or ""), culprit[0].error
    started = [e["event"] for e in _ledger(ledger) if e["event"] == "start 5"]
    assert len(started) == 3  # in its batch, alone (try 1), and its retry


def test_a_batch_instance_that_hangs_times_out_alone_and_its_batch_goes_on(
    ray_app: Phloem, tmp_path: Path
) -> None:
    """An instance that hangs in the middle of a batch is seen started by a ping (so its
    timeout counts from then), is stopped when its timeout ends, and the others of its batch
    run again without spending a try."""
    ledger = tmp_path / "ledger.jsonl"
    path = _pipeline(
        tmp_path,
        f"""
        LEDGER = {str(ledger)!r}

        @task(batch_size=6, timeout=3)
        def slow(x: int) -> int:
            note(LEDGER, f"start {{x}}")
            if x == 2:
                time.sleep(300)  # stopped by its timeout
            return x

        @pipeline
        def hangs_mid_batch():
            slow.expand(x=list(range(6)))
        """,
    )
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.FAILED
    attempts = ray_app.store.attempts(result.run_id, "slow")
    by_index = {a.map_index: a for a in attempts}
    assert len(attempts) == 6, [(a.map_index, a.try_number) for a in attempts]
    hung = by_index[2]
    assert hung.state == "failed" and "timed out" in (hung.error or ""), hung.error
    # seen running (by a ping) before it ended: its timeout counted from its own start
    assert hung.started_at is not None and hung.ended_at is not None
    assert hung.ended_at - hung.started_at >= 3
    others = {i: (by_index[i].state, by_index[i].error) for i in (0, 1, 3, 4, 5)}
    assert all(st == "success" for st, _ in others.values()), others
    assert all(a.try_number == 1 for a in attempts)


def test_a_pipeline_made_inside_a_function_is_sent_to_the_workers_pickled(
    ray_app: Phloem,
) -> None:
    """Its file does not define it at the top level, so the workers cannot load it from
    there: they get it pickled instead."""

    def build() -> phloem.Pipeline:
        @phloem.task
        def double(x: int) -> int:
            return 2 * x

        @phloem.pipeline(name="made_in_a_function")
        def made_in_a_function() -> None:
            double.expand(x=list(range(5)))

        return made_in_a_function

    result = phloem.run(build(), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    assert result.output("double") == [0, 2, 4, 6, 8]


def test_a_slow_callback_does_not_hold_up_the_task_after_it_on_ray(
    ray_app: Phloem, tmp_path: Path
) -> None:
    """The next task goes to the cluster before the callback of the task it follows runs:
    the callback waits (at most a minute) for it to have run."""
    marker = tmp_path / "next-ran"
    seen: list[bool] = []

    def wait_for_next(ctx: object) -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(marker.exists())

    def build() -> phloem.Pipeline:
        @phloem.task(on_success=wait_for_next)
        def first_step() -> str:
            return str(marker)

        @phloem.task
        def next_step(path: str) -> None:
            Path(path).write_text("ran")

        @phloem.pipeline(name="slow_callback_on_ray")
        def slow_callback_on_ray() -> None:
            next_step(first_step())

        return slow_callback_on_ray

    result = phloem.run(build(), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    assert seen == [True]


def test_attempts_that_hold_a_gpu_record_the_gpu_seconds_they_reserved(
    ray_app: Phloem, tmp_path: Path
) -> None:
    """GPU seconds are reserved GPU time: the GPUs Ray gave the attempt's worker (half of the
    test cluster's fake GPU, or all of it) times the attempt's wall time, busy or not. An
    attempt without a GPU records none; ``runs show`` adds a column once a task reserved any."""
    from typer.testing import CliRunner

    from phloem.cli.main import app as cli_app

    path = _pipeline(
        tmp_path,
        """
        @task(resources={"gpus": 1})
        def whole() -> dict:
            time.sleep(0.5)  # idle: the GPU is reserved all the same
            return where()

        @task(resources={"gpus": 0.5})
        def half() -> dict:
            time.sleep(0.5)
            return where()

        @task
        def plain() -> int:
            return 1

        @pipeline
        def gpu_time():
            whole()
            half()
            plain()
        """,
        "gpu_time.py",
    )
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    assert result.output("whole")["ip"] == result.output("half")["ip"] == GPU_IP
    for task_id, gpus in (("whole", 1.0), ("half", 0.5)):
        [a] = ray_app.store.attempts(result.run_id, task_id)
        assert a.gpu_seconds is not None, task_id
        # at least the sleep, at most the attempt's span as the driver saw it
        assert a.gpu_seconds >= gpus * 0.5, (task_id, a.gpu_seconds)
        assert a.started_at is not None and a.ended_at is not None
        assert a.gpu_seconds <= gpus * (a.ended_at - a.started_at) + 0.01, (task_id, a)
    [plain] = ray_app.store.attempts(result.run_id, "plain")
    assert plain.gpu_seconds is None and plain.cpu_seconds is not None

    env = {"PHLOEM_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    cli = CliRunner()
    shown = cli.invoke(cli_app, ["runs", "show", result.run_id, "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    by_task = {t["task_id"]: t["attempts"] for t in json.loads(shown.stdout)["tasks"]}
    assert by_task["whole"][0]["gpu_seconds"] >= 0.5
    assert by_task["plain"][0]["gpu_seconds"] is None
    table = cli.invoke(cli_app, ["runs", "show", result.run_id], env=env).stdout
    assert "gpu reserved" in table
    [whole_line] = [ln for ln in table.splitlines() if ln.lstrip().startswith("whole")]
    [plain_line] = [ln for ln in table.splitlines() if ln.lstrip().startswith("plain")]
    assert whole_line.rstrip().endswith("s") and plain_line.rstrip().endswith("-")


def test_resources_no_node_has_fail_at_once_and_clearly(ray_app: Phloem, tmp_path: Path) -> None:
    path = _pipeline(
        tmp_path,
        """
        @task(resources={"cpus": 64, "custom": {"big_disk": 1}})
        def huge() -> int:
            return 1

        @task(resources={"custom": {"tpu": 1}})
        def alien() -> int:
            return 1

        @pipeline
        def greedy():
            huge()
            alien()
        """,
        "greedy.py",
    )
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.FAILED
    huge = result.tasks[("huge", -1)]
    assert huge.state is TaskState.FAILED
    assert "task 'huge' asks for 64 CPUs, 1 'big_disk'" in (huge.error or "")
    assert "the most any node has is 2 CPUs, 1 'big_disk'" in (huge.error or "")
    alien = result.tasks[("alien", -1)].error or ""
    assert "1 'tpu'" in alien and "0 'tpu'" in alien


# -- faults -------------------------------------------------------------------------------------


def _ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _in_background(fn: Callable[[], phloem.RunResult]) -> Future[phloem.RunResult]:
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(fn)
    finally:
        pool.shutdown(wait=False)


def _wait_for(
    what: str,
    check: Callable[[], object],
    running: Future[phloem.RunResult] | None = None,
    timeout: float = 120.0,
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if running is not None and running.done():
            result = running.result()
            pytest.fail(f"the run ended before {what}: {result!r} {_errors(result)}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _started(ledger: Path, task: str, try_number: int) -> Callable[[], dict | None]:
    def check() -> dict | None:
        return next(
            (
                e
                for e in _ledger(ledger)
                if e["task"] == task and e["try"] == try_number and e["event"] == "start"
            ),
            None,
        )

    return check


FRAGILE = """
LEDGER = {ledger!r}

@task(retries=1, resources={{"custom": {{"big_disk": 1}}}})
def fragile() -> dict:
    note(LEDGER, "start")
    if phloem.context().try_number == 1:
        time.sleep(300)  # the test kills it meanwhile
    note(LEDGER, "end")
    return where()

@pipeline
def {name}():
    fragile()
"""


def test_a_worker_killed_mid_task_fails_its_attempt_and_the_retry_succeeds(
    ray_app: Phloem, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    path = _pipeline(tmp_path, FRAGILE.format(ledger=str(ledger), name="killed_worker"))
    running = _in_background(lambda: phloem.run(str(path), app=ray_app))
    first = _wait_for("the first try to start", _started(ledger, "fragile", 1), running)
    assert isinstance(first, dict) and first["ip"] == DISK_IP
    os.kill(first["pid"], signal.SIGKILL)
    result = running.result(timeout=300)
    assert result.state is RunState.SUCCESS, _errors(result)
    tries = ray_app.store.attempts(result.run_id, "fragile")
    assert [a.try_number for a in tries] == [1, 2]
    assert f"worker process {first['pid']} on node {DISK_IP} died while running this attempt" in (
        tries[0].error or ""
    )
    assert result.output("fragile")["ip"] == DISK_IP
    # Ray retried nothing by itself: each try started once, the first never ended
    events = [(e["try"], e["event"]) for e in _ledger(ledger)]
    assert events == [(1, "start"), (2, "start"), (2, "end")]


def _retried_once_the_disk_node_is_back(
    cluster: RayCluster,
    app: Phloem,
    running: Future[phloem.RunResult],
    pipeline: str,
    task: str,
) -> tuple[phloem.RunResult, list[AttemptRow]]:
    """Wait for ``task``'s first try to fail (its node is gone), bring the ``disk`` node back,
    and return the run's result, which succeeded, and the task's attempts: exactly two."""
    _wait_for(
        "the first try to fail",
        lambda: any(
            a.error
            for r in app.store.list_runs(pipeline=pipeline)
            for a in app.store.attempts(r.run_id, task)
        ),
    )
    cluster.start_node("disk")
    cluster.wait_alive({"disk"})
    result = running.result(timeout=300)
    assert result.state is RunState.SUCCESS, _errors(result)
    tries = app.store.attempts(result.run_id, task)
    assert [a.try_number for a in tries] == [1, 2]
    return result, tries


def test_a_node_lost_mid_task_fails_its_attempt_and_the_retry_waits_for_room(
    cluster: RayCluster, ray_app: Phloem, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    path = _pipeline(tmp_path, FRAGILE.format(ledger=str(ledger), name="lost_node"))
    running = _in_background(lambda: phloem.run(str(path), app=ray_app))
    first = _wait_for("the first try to start", _started(ledger, "fragile", 1), running)
    assert isinstance(first, dict) and first["ip"] == DISK_IP
    cluster.kill_node("disk")  # the only node with big_disk: its raylet, workers, all
    # the attempt fails with the node's death; its retry waits for a node with big_disk
    result, tries = _retried_once_the_disk_node_is_back(
        cluster, ray_app, running, "lost_node", "fragile"
    )
    assert f"node {DISK_IP} died while running this attempt" in (tries[0].error or "")
    assert result.output("fragile")["ip"] == DISK_IP


def test_a_result_lost_with_its_node_fails_its_attempt_and_the_retry_succeeds(
    cluster: RayCluster, ray_app: Phloem, tmp_path: Path
) -> None:
    """A result larger than Ray sends back inline (100 KiB: here three assets' metadata) stays
    in the object store of the node that ran it until the driver fetches it. That node dies
    first (the raylet of the driver's node, through which the driver fetches, is held
    meanwhile): the result is lost, the attempt fails saying so, and the engine retries it."""
    from processes import descendants

    ledger, go = tmp_path / "ledger.jsonl", tmp_path / "go"
    path = _pipeline(
        tmp_path,
        f"""
        LEDGER, GO = {str(ledger)!r}, {str(go)!r}

        @task(retries=1, resources={{"custom": {{"big_disk": 1}}}})
        def bulky() -> dict:
            note(LEDGER, "start")
            while phloem.context().try_number == 1 and not os.path.exists(GO):
                time.sleep(0.05)
            for i in range(3):
                phloem.emit(f"bulky-{{i}}", {{"blob": "x" * 60_000}})
            note(LEDGER, "end")
            return {{"try": phloem.context().try_number, **where()}}

        @pipeline
        def lost_result():
            bulky()
        """,
        "lost_result.py",
    )
    assert cluster.head.proc is not None
    [raylet] = [p for p in descendants(cluster.head.proc.pid) if "raylet/raylet" in p.cmdline]
    running = _in_background(lambda: phloem.run(str(path), app=ray_app))
    first = _wait_for("the first try to start", _started(ledger, "bulky", 1), running)
    assert isinstance(first, dict) and first["ip"] == DISK_IP
    os.kill(raylet.pid, signal.SIGSTOP)  # the driver cannot fetch a result from now on
    try:
        go.touch()
        _wait_for(
            "the first try to end",
            lambda: (1, "end") in [(e["try"], e["event"]) for e in _ledger(ledger)],
            running,
        )
        time.sleep(1.0)  # its result stored on its node, and the driver told where it is
        cluster.kill_node("disk")
    finally:
        os.kill(raylet.pid, signal.SIGCONT)
    result, tries = _retried_once_the_disk_node_is_back(
        cluster, ray_app, running, "lost_result", "bulky"
    )
    assert f"the result of this attempt was lost with node {DISK_IP}" in (tries[0].error or "")
    assert result.output("bulky")["try"] == 2
    # each try ran once, to its end: Ray retried nothing by itself
    assert [(e["try"], e["event"]) for e in _ledger(ledger)] == [
        (1, "start"),
        (1, "end"),
        (2, "start"),
        (2, "end"),
    ]


def test_a_silent_worker_is_failed_after_the_heartbeat_timeout_and_never_commits(
    cluster: RayCluster, ray_app: Phloem, tmp_path: Path
) -> None:
    from dataclasses import replace

    from processes import wait_gone

    app = Phloem(replace(ray_app.settings, heartbeat_timeout=4.0))
    ledger = tmp_path / "ledger.jsonl"
    path = _pipeline(
        tmp_path,
        f"""
        LEDGER = {str(ledger)!r}

        @task(retries=1)
        def frozen() -> dict:
            note(LEDGER, "start")
            if phloem.context().try_number == 1:
                time.sleep(15)
            note(LEDGER, "end")
            return {{"try": phloem.context().try_number, **where()}}

        @pipeline
        def silent():
            frozen()
        """,
    )
    running = _in_background(lambda: phloem.run(str(path), app=app))
    first = _wait_for("the first try to start", _started(ledger, "frozen", 1), running)
    assert isinstance(first, dict)
    pid = first["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive, but silent: no heartbeat, no answer
    try:
        result = running.result(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # the zombie comes back, if it was not gone yet
    assert result.state is RunState.SUCCESS, _errors(result)
    tries = app.store.attempts(result.run_id, "frozen")
    assert [a.try_number for a in tries] == [1, 2]
    assert f"no heartbeat from its Ray worker (pid {pid} on node" in (tries[0].error or "")
    assert result.output("frozen")["try"] == 2
    # the stopped worker was stopped for good: it never finished its attempt or reported it
    assert wait_gone(lambda: [pid] if os.path.exists(f"/proc/{pid}") else [], 30) == []
    time.sleep(1)
    assert (1, "end") not in [(e["try"], e["event"]) for e in _ledger(ledger)]
    assert app.store.attempts(result.run_id, "frozen")[0].error == tries[0].error


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_lost_driver_s_attempts_end_and_its_successor_runs_them_once(
    cluster: RayCluster, tmp_path: Path, processes: Processes, how: str
) -> None:
    """``phloem run`` killed (or frozen) mid-task: its Ray workers die with it (they are its
    actors; a frozen driver's worker stops itself once its heartbeat is refused), a scheduler
    takes the run over once its lease expired, and the ledger shows that the task never ran
    in two places at once and finished once; the frozen driver, back, commits nothing."""
    from processes import wait_gone

    folder, home = tmp_path / "pipelines", tmp_path / "home"
    folder.mkdir()
    ledger = tmp_path / "ledger.jsonl"
    path = _pipeline(
        folder,
        f"""
        LEDGER = {str(ledger)!r}

        @task
        def before() -> int:
            return 1

        @task(resources={{"custom": {{"big_disk": 1}}}})
        def long(x: int) -> dict:
            note(LEDGER, "start")
            if phloem.context().try_number == 1:
                time.sleep(60)
            note(LEDGER, "end")
            return {{"try": phloem.context().try_number, **where()}}

        @pipeline
        def orphaned():
            long(before())
        """,
        "orphaned.py",
    )
    env = {
        **os.environ,
        "PHLOEM_HOME": str(home),
        "PHLOEM_RAY_ADDRESS": cluster.address,
        "PHLOEM_LEASE_TTL": "6",
    }
    env.pop("PHLOEM_EXECUTOR", None)  # the commands say it: --executor ray
    env.pop("PHLOEM_DB_URL", None)
    env.pop("PHLOEM_ARTIFACTS_URL", None)
    with open(tmp_path / "driver.log", "w") as log:
        driver = processes.start(
            [*PHLOEM, "run", str(path), "--executor", "ray"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    first = _wait_for("the first try to start", _started(ledger, "long", 1))
    assert isinstance(first, dict)
    app = Phloem(Settings.from_env(home, environ=env))

    def beating() -> bool:
        # the Ray worker writes the attempt's heartbeat to the store (attempts.heartbeat_at)
        runs = app.store.list_runs(pipeline="orphaned")
        if not runs:
            return False
        _, leases = app.store.attempt_leases.heartbeats(runs[0].run_id)
        lease = leases.get(("long", -1, 1))
        return lease is not None and lease.heartbeat_at is not None

    _wait_for("a heartbeat of the first try in the store", beating, timeout=60)
    if how == "killed":
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(10)
    else:
        os.killpg(driver.pid, signal.SIGSTOP)
    # the successor starts at once; meanwhile, note when the first try's worker is gone
    with open(tmp_path / "scheduler.log", "w") as log:
        successor = processes.start(
            [*PHLOEM, "scheduler", "--executor", "ray", "--pipelines", str(folder)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pid = first["pid"]
    # killed, its actor goes with it (Ray ends the actors of a driver that is gone); frozen,
    # its actor stops itself once the successor holds the run and its heartbeat is refused
    assert wait_gone(lambda: [pid] if os.path.exists(f"/proc/{pid}") else [], 60) == []
    gone_by = time.time()
    try:
        run = _wait_for(
            "the successor to finish the run",
            lambda: next(
                (
                    r
                    for r in app.store.list_runs(pipeline="orphaned")
                    if r.state is RunState.SUCCESS
                ),
                None,
            ),
            timeout=180,
        )
    finally:
        processes.stop(successor)
        if how == "frozen":
            os.killpg(driver.pid, signal.SIGCONT)  # back: it must find the run taken over
    if how == "frozen":
        assert driver.wait(60) != 0
        assert "taken over by another driver" in (tmp_path / "driver.log").read_text()
    assert isinstance(run, RunRecord)
    tries = app.store.attempts(run.run_id, "long")
    assert [a.try_number for a in tries] == [1, 2]
    assert [a.state.value for a in app.store.attempts(run.run_id, "before")] == ["success"]
    events = _ledger(ledger)
    assert [(e["try"], e["event"]) for e in events] == [(1, "start"), (2, "start"), (2, "end")]
    # never in two places at once: the retry started after the first try's worker was gone
    # (seen gone by the test at ``gone_by``, within its 50 ms poll)
    second = events[1]
    assert second["at"] > gone_by - 0.1 and second["pid"] != pid
    assert first["ip"] == second["ip"] == DISK_IP  # the scheduler placed it by its resources
    app.close()


@pytest.mark.parametrize("join", ["ray-client", "auto"])
def test_a_driver_joins_the_cluster_by_ray_client_or_auto(
    cluster: RayCluster, tmp_path: Path, processes: Processes, join: str
) -> None:
    """``PHLOEM_RAY_ADDRESS=ray://head:port`` (Ray Client, from off the cluster) or ``auto``
    (on a node, where Ray finds its cluster in ``RAY_ADDRESS``): the run goes on the cluster,
    and ``--json`` prints only JSON whatever Ray says."""
    path = _pipeline(
        tmp_path,
        """
        @task(resources={"custom": {"big_disk": 1}})
        def far() -> dict:
            print("from far away")
            return where()

        @pipeline
        def remote():
            far()
        """,
        "remote.py",
    )
    home = tmp_path / "home"
    env = {**os.environ, "PHLOEM_HOME": str(home), "PHLOEM_RAY_ADDRESS": cluster.client_address}
    if join == "auto":
        env.update(PHLOEM_RAY_ADDRESS="auto", RAY_ADDRESS=cluster.address)
    for k in ("PHLOEM_EXECUTOR", "PHLOEM_DB_URL", "PHLOEM_ARTIFACTS_URL"):
        env.pop(k, None)
    with open(tmp_path / "stderr.log", "w") as err:
        proc = processes.start(
            [*PHLOEM, "run", str(path), "--executor", "ray", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, (tmp_path / "stderr.log").read_text()[-3000:]
    record = json.loads(out)  # nothing but the run record on stdout
    assert record["state"] == "success"
    app = Phloem(Settings.from_env(home, environ=env))
    try:
        from phloem.api import RunResult
        from phloem.loading import load_pipeline

        run = app.store.get_run(record["run_id"])
        result = RunResult(app, load_pipeline(str(path)).spec, run)
        assert result.output("far")["ip"] == DISK_IP
        logs = list((app.logs_dir / run.run_id).glob("far*.log"))
        assert logs and "from far away" in logs[0].read_text()
    finally:
        app.close()


def test_a_scheduler_joins_a_restarted_ray_head_again(
    cluster: RayCluster, tmp_path: Path, processes: Processes
) -> None:
    """A Ray head of its own (no workers), reached through Ray Client, is killed and started
    again: the scheduler joins it again by itself and its next run succeeds there."""
    from phloem.loading import load_pipeline
    from phloem.runs import create_run

    lone = RayCluster(tmp_path / "lone", [], head_cpus=2)
    try:
        lone.start()
        folder, home = tmp_path / "pipelines", tmp_path / "home"
        folder.mkdir()
        path = _pipeline(
            folder,
            """
            @task
            def hello(n: int) -> dict:
                return {"n": n, **where()}

            @pipeline
            def again(n: int = 0):
                hello(n)
            """,
            "again.py",
        )
        env = {
            **os.environ,
            "PHLOEM_HOME": str(home),
            "PHLOEM_RAY_ADDRESS": lone.client_address,
            "RAY_CLIENT_RECONNECT_GRACE_PERIOD": "3",  # give up on the old head soon
        }
        for k in ("PHLOEM_EXECUTOR", "PHLOEM_DB_URL", "PHLOEM_ARTIFACTS_URL"):
            env.pop(k, None)
        app = Phloem(Settings.from_env(home, environ=env))
        spec = load_pipeline(f"{path}:again").spec

        def run(n: int) -> str:
            day = f"2026-01-0{n}"
            return create_run(app.store, spec, {"n": n}, day, source=f"{path}:again").run_id

        def done(run_id: str) -> Callable[[], bool]:
            return lambda: app.store.get_run(run_id).state.is_terminal

        with open(tmp_path / "scheduler.log", "w") as log:
            sched = processes.start(
                [*PHLOEM, "scheduler", "--executor", "ray", "--pipelines", str(folder)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            first = run(1)
            _wait_for("the first run", done(first), timeout=180)
            assert app.store.get_run(first).state is RunState.SUCCESS
            lone.kill_node("head")
            lone.start_node("head")
            lone._wait_port(180)
            second = run(2)
            _wait_for("the run after the head came back", done(second), timeout=240)
            log_text = (tmp_path / "scheduler.log").read_text()
            assert app.store.get_run(second).state is RunState.SUCCESS, log_text[-3000:]
            assert sched.poll() is None  # the same scheduler, never restarted
        finally:
            processes.stop(sched)
            app.close()
    finally:
        lone.close()


def test_joining_the_cluster_again_never_holds_the_driver_s_loop(
    cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A join may wait a minute for a head that is away: it runs on a thread of its own, and
    ``wait`` returns meanwhile (the driver's loop goes on: cron ticks, leases, the store)."""
    import threading

    from phloem.executors import ray as ray_executor

    let_go = threading.Event()
    real_init = ray_executor._init

    def slow_init(ray: Any, target: str) -> None:
        assert let_go.wait(120), "the test never let the join go"
        real_init(ray, target)

    ex = ray_executor.RayExecutor(address=cluster.address)
    ex.start({}, None)  # type: ignore[arg-type]
    try:
        monkeypatch.setattr(ray_executor, "_init", slow_init)
        ex._connection_lost(ConnectionError("the head went away (test)"))
        assert ex.wait(0) == []  # the join started, and is held: wait did not wait for it
        assert ex._joining is not None and not ex._joining.done()
        assert ex.wait(0.1) == [] and ex._lost is not None
        let_go.set()
        _wait_for("the join", lambda: (ex.wait(0.5), ex._lost is None)[1], timeout=120)
        assert ex._ray.is_initialized() and ex._nodes  # joined: it reads the nodes again
    finally:
        let_go.set()
        ex.shutdown()


def test_out_of_memory_on_ray_is_retried_with_more_memory(ray_app: Phloem, tmp_path: Path) -> None:
    """The attempt's memory is both Ray's reservation and the worker's limit: past it the
    attempt fails as out of memory, and its retry gets (and reserves) twice as much."""
    path = _pipeline(
        tmp_path,
        """
        import numpy as np

        @task(resources={"memory": "200MiB"}, retries=2, retry_memory_factor=2.0)
        def hungry() -> int:
            block = np.ones(300 * 2**20 // 8)  # 1.5 times the first limit
            return int(block.nbytes)

        @pipeline
        def grows():
            hungry()
        """,
        "grows.py",
    )
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    first, second = ray_app.store.attempts(result.run_id, "hungry")
    assert (first.error or "").startswith("out of memory at 200 MiB (MemoryError")
    assert (first.memory_limit, second.memory_limit) == (200 * 2**20, 400 * 2**20)
    assert second.peak_rss is not None and second.peak_rss >= 300 * 2**20
    assert second.cpu_seconds is not None


def test_a_local_ray_dies_with_its_driver(tmp_path: Path, processes: Processes) -> None:
    """Without PHLOEM_RAY_ADDRESS, ``phloem run --executor ray`` starts a Ray of its own on
    this machine; killed with SIGKILL, it leaves nothing running."""
    from processes import wait_gone

    ledger = tmp_path / "ledger.jsonl"
    path = _pipeline(
        tmp_path,
        f"""
        LEDGER = {str(ledger)!r}

        @task
        def first() -> int:
            return 1

        @task
        def stuck(x: int) -> None:
            note(LEDGER, "start")
            time.sleep(120)

        @pipeline
        def local_ray():
            stuck(first())
        """,
        "local_ray.py",
    )
    short = Path(tempfile.mkdtemp(prefix="phr", dir="/tmp"))
    # the head's output goes there too: a driver killed leaves it, and the test removes it
    env = _local_ray_env(tmp_path, short)
    try:
        with open(tmp_path / "driver.log", "w") as log:
            driver = processes.start(
                [*PHLOEM, "run", str(path), "--executor", "ray"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_for("the task to start on the local Ray", _started(ledger, "stuck", 1), timeout=180)
        assert len(processes.left_by(driver)) > 3  # the driver, Ray's own processes, a worker
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: Ray must follow it by itself
        driver.wait(10)
        left = wait_gone(lambda: processes.left_by(driver), 60)
        assert left == [], "\n".join(map(str, left))
    finally:
        shutil.rmtree(short, ignore_errors=True)


#: run in a process of its own (the tests' process is joined to the test cluster): a local Ray
#: whose first joins fail, then a pipeline run on it; prints what it saw as JSON
LOCAL_HEADS = """
import json, os, sys

import phloem
from phloem.errors import PhloemError
from phloem.executors import ray as rx

def below(root):
    # (pid, parent pid, arguments) of the processes below root
    kids = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            kids.setdefault(int(fields[1]), []).append((int(name), int(fields[1]), args))
    out, todo = [], [root]
    while todo:
        for p in kids.get(todo.pop(), []):
            out.append(p)
            todo.append(p[0])
    return out

def heads():
    # each local head is one `ray start --head` (not counting its forks on their way to
    # exec) with one GCS server below it
    procs = below(os.getpid())
    starts = {pid for pid, _, a in procs if "start" in a and "--head" in a and "-c" not in a}
    gcs = [a for _, _, a in procs if os.path.basename(a[0]) == "gcs_server"]
    return [len([pid for pid, ppid, _ in procs if pid in starts and ppid not in starts]), len(gcs)]

real, failures = rx._init, []

def flaky(ray, target):
    if len(failures) < 2:
        failures.append(target)
        raise RuntimeError("the raylet did not register in time (injected)")
    real(ray, target)

rx._init = flaky
seen = {"errors": [], "heads": []}
for _ in range(3):
    try:
        rx.connect(None)
    except PhloemError as exc:
        seen["errors"].append(str(exc))
    seen["heads"].append(heads())
seen["log"] = rx._local[0].log
seen["log_while_running"] = os.path.exists(seen["log"])
result = phloem.run(sys.argv[1], executor="ray", store="memory")
seen["state"] = result.state.value
seen["output"] = result.output("hello")
seen["log_after"] = os.path.exists(seen["log"])
seen["heads_after"] = heads()
print(json.dumps(seen))
"""


def _local_ray_env(tmp_path: Path, short: Path) -> dict[str, str]:
    """A driver's environment for a local Ray of its own, its files (and the temp folder,
    where its head's output goes) in ``short``."""
    env = {**os.environ, "PHLOEM_HOME": str(tmp_path / "home"), "TMPDIR": str(short)}
    env["RAY_TMPDIR"] = str(short)  # Ray's socket paths must be short
    for k in ("PHLOEM_RAY_ADDRESS", "PHLOEM_DB_URL", "PHLOEM_ARTIFACTS_URL", "RAY_ADDRESS"):
        env.pop(k, None)
    env["RAY_AUTH_MODE"] = "disabled"  # no token written to this machine's ~/.ray
    return env


def test_a_local_ray_that_cannot_be_joined_is_used_again_and_its_output_goes_after_a_run(
    tmp_path: Path, processes: Processes
) -> None:
    """A join that fails after this process started its local Ray head (and is tried again,
    as the executor does when it joins again) uses that head again: one head per process,
    not one per try. Its output (``phloem-ray-PID-PORT.log`` in the temp folder) is named by
    the error, and removed once a run on it ended cleanly."""
    from processes import wait_gone

    path = _pipeline(
        tmp_path,
        """
        @task
        def hello() -> dict:
            return where()

        @pipeline
        def local_heads():
            hello()
        """,
        "local_heads.py",
    )
    short = Path(tempfile.mkdtemp(prefix="phr", dir="/tmp"))
    try:
        with open(tmp_path / "driver.log", "w") as err:
            proc = processes.start(
                [sys.executable, "-c", LOCAL_HEADS, str(path)],
                env=_local_ray_env(tmp_path, short),
                stdout=subprocess.PIPE,
                stderr=err,
            )
            out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, (tmp_path / "driver.log").read_text()[-3000:]
        seen = json.loads(out)
        log = seen["log"]
        assert os.path.dirname(log) == str(short)
        assert os.path.basename(log).startswith(f"phloem-ray-{proc.pid}-")
        assert len(seen["errors"]) == 2
        for error in seen["errors"]:
            assert "cannot start or join a Ray cluster on this machine" in error
            assert "the raylet did not register in time (injected)" in error
            assert f"the local Ray's output is in {log}" in error
        # one head (one `ray start --head`, one GCS server) after each try, failed or not
        assert seen["heads"] == [[1, 1], [1, 1], [1, 1]]
        assert seen["log_while_running"]
        assert seen["state"] == "success" and seen["output"]["pid"] != proc.pid
        assert not seen["log_after"]  # the run ended cleanly: nothing to read there
        assert seen["heads_after"] == [1, 1]
        assert wait_gone(lambda: processes.left_by(proc), 60) == []  # stopped at exit
        assert not list(short.glob("phloem-ray-*.log"))
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_a_local_ray_that_fails_to_start_keeps_its_output_and_says_where(
    tmp_path: Path, processes: Processes
) -> None:
    """Ray cannot start (its temp folder lies below a file): the error names the head's
    output, which is kept, and says why; nothing is left running."""
    short = Path(tempfile.mkdtemp(prefix="phr", dir="/tmp"))
    try:
        (short / "file").write_text("")
        env = _local_ray_env(tmp_path, short)
        env["RAY_TMPDIR"] = str(short / "file" / "ray")
        script = (
            "from phloem.executors import ray as rx\n"
            "try:\n"
            "    rx.connect(None)\n"
            "except Exception as exc:\n"
            "    print(exc)\n"
        )
        with open(tmp_path / "driver.log", "w") as err:
            proc = processes.start(
                [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=err
            )
            out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, (tmp_path / "driver.log").read_text()[-3000:]
        [log] = short.glob(f"phloem-ray-{proc.pid}-*.log")
        text = out.decode()
        assert "cannot start or join a Ray cluster on this machine" in text
        assert f"a local Ray did not start (its output is in {log})" in text
        assert "Not a directory" in text and "Not a directory" in log.read_text()
        assert processes.left_by(proc) == []
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_a_join_the_ray_client_proxy_aborts_is_tried_again_then_fails_clearly(
    cluster: RayCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Ray Client proxy that cannot start a server for the driver aborts its join
    (ConnectionAbortedError): aborted twice, the third join goes through; aborted every time,
    the error says what failed and what to do. The aborts are put in front of real joins of
    the test cluster."""
    import ray

    from phloem.executors import ray as rx

    real = rx._init
    targets: list[str] = []

    def aborting(times: int) -> Callable[[object, str], None]:
        def join(ray_module: object, target: str) -> None:
            targets.append(target)
            if len(targets) <= times:
                raise ConnectionAbortedError("Initialization failure from server:\nTraceback...")
            real(ray_module, target)

        return join

    monkeypatch.setattr(rx, "_CLIENT_START_PAUSE", 0.1)
    try:
        ray.shutdown()  # this process was joined by the cluster fixture
        monkeypatch.setattr(rx, "_init", aborting(2))
        with caplog.at_level("WARNING", logger="phloem.executors.ray"):
            assert rx.connect(cluster.address) is ray
        assert ray.is_initialized() and targets == [cluster.address] * 3
        assert sum("trying again" in r.getMessage() for r in caplog.records) == 2
        assert cluster.alive_ips() >= {DISK_IP, GPU_IP}  # really joined

        ray.shutdown()
        targets.clear()
        monkeypatch.setattr(rx, "_init", aborting(10))
        with pytest.raises(PhloemError) as failed:
            rx.connect(cluster.address)
        assert len(targets) == rx._CLIENT_START_TRIES == 3
        text = str(failed.value)
        assert f"cannot join the Ray cluster at {cluster.address}" in text
        assert "its Ray Client server aborted the join 3 times" in text
        assert "could not start a server for this driver" in text
        assert "ray_client_server*.log" in text and "make room on the head" in text
        assert not ray.is_initialized()
    finally:
        monkeypatch.setattr(rx, "_init", real)
        if not ray.is_initialized():
            rx.connect(cluster.address)  # as the module's other tests expect


# -- artifacts on S3 -------------------------------------------------------------------------------


def test_a_pipeline_on_ray_keeps_its_artifacts_on_s3(
    cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrays made on one node and read on another travel through a real S3 server; the
    workers get the store's endpoint and credentials from the connection it names."""
    from s3server import S3Server

    procs = Processes()
    try:
        s3 = S3Server(procs, tmp_path / "s3")
        s3.start()
        s3.make_bucket("phloem")
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(k, raising=False)
        env = {
            "PHLOEM_HOME": str(tmp_path / "home"),
            "PHLOEM_ARTIFACTS_URL": "s3://phloem/on-ray",
            "PHLOEM_ARTIFACTS_CONNECTION": "objects",
            "PHLOEM_EXECUTOR": "ray",
            "PHLOEM_RAY_ADDRESS": cluster.address,
        }
        path = _pipeline(
            tmp_path,
            """
            import numpy as np

            @task(resources={"custom": {"big_disk": 1}})
            def produce(n: int) -> np.ndarray:
                return np.outer(np.arange(n, dtype=np.float64), np.ones(64))

            @task(resources={"gpus": 1})
            def consume(m: np.ndarray) -> dict:
                return {"total": float(m.sum()), **where()}

            @pipeline
            def on_s3(n: int = 500):
                consume(produce(n))
            """,
            "on_s3.py",
        )
        app = Phloem(Settings.from_env(environ=env))
        try:
            app.variables.add_connection(
                "objects",
                f"s3://ray-user:ray-secret@127.0.0.1:{s3.s3}?secure=false&region=us-east-1",
            )
            result = phloem.run(str(path), app=app)
            assert result.state is RunState.SUCCESS, _errors(result)
            out = result.output("consume")
            assert out["total"] == sum(range(500)) * 64 and out["ip"] == GPU_IP
            digests = {u.digest for u in app.store.artifact_uses(result.run_id)}
            assert digests, "the array should be an artifact"
            import s3fs

            fs = s3fs.S3FileSystem(key="k", secret="s", client_kwargs={"endpoint_url": s3.endpoint})
            keys = fs.find("phloem/on-ray")
            assert all(any(d in k for k in keys) for d in digests)
            assert not (tmp_path / "home" / "artifacts").exists()  # nothing on local disk
        finally:
            app.close()
    finally:
        procs.close()


# -- without a cluster ----------------------------------------------------------------------------


def test_settings_name_the_executor_and_the_cluster(tmp_path: Path) -> None:
    env = {
        "PHLOEM_HOME": str(tmp_path),
        "PHLOEM_EXECUTOR": "ray",
        "PHLOEM_RAY_ADDRESS": "ray://head:10001",
        "PHLOEM_HEARTBEAT_TIMEOUT": "20",
    }
    s = Settings.from_env(environ=env)
    assert (s.executor, s.ray_address, s.heartbeat_timeout) == ("ray", "ray://head:10001", 20.0)
    assert Settings.from_env(environ={"PHLOEM_HOME": str(tmp_path)}).executor == "local"
    with pytest.raises(PhloemError, match="PHLOEM_EXECUTOR='rya' is not valid: use one of"):
        Settings.from_env(environ={**env, "PHLOEM_EXECUTOR": "rya"})


def test_without_ray_the_executor_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from phloem.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(PhloemError, match=r"pip install 'phloem\[ray\]'"):
        make_executor("ray", 1)


def test_custom_resources_are_checked_at_definition() -> None:
    from phloem import task
    from phloem.errors import DefinitionError

    @task(resources={"cpus": 2, "custom": {"big_disk": 1, "ssd": 0.5}})
    def ok() -> None: ...

    assert ok.options.resources.custom == (("big_disk", 1.0), ("ssd", 0.5))
    with pytest.raises(DefinitionError, match="'GPU' is not a custom resource"):
        task(resources={"custom": {"GPU": 1}})(lambda: None)
    with pytest.raises(DefinitionError, match="dict of resource names to amounts"):
        task(resources={"custom": ["big_disk"]})(lambda: None)
    with pytest.raises(DefinitionError, match="must be a number >= 0"):
        task(resources={"custom": {"big_disk": -1}})(lambda: None)


def test_an_executor_s_wake_pipe_closes_once_nothing_can_write_to_it() -> None:
    """Each executor's pipe was left open for the life of the process (two descriptors per
    run on Ray); it closes once the executor is gone and no call it watched is under way.

    The pipe's own descriptors are followed (by inode, as a closed number may be taken by
    another file at once): counting the process's descriptors also counted those that the
    threads of earlier tests' Ray clients opened and closed meanwhile."""
    import gc

    from phloem.executors.ray import RayExecutor, _Actor

    def pipe_of(ex: RayExecutor) -> list[tuple[int, int]]:
        return [(fd, os.fstat(fd).st_ino) for fd in (ex._wake.r, ex._wake.w)]

    def still_open(pipe: list[tuple[int, int]]) -> list[int]:
        out = []
        for fd, inode in pipe:
            try:
                if os.fstat(fd).st_ino == inode:
                    out.append(fd)
            except OSError:
                pass  # closed
        return out

    ex = RayExecutor()
    pipe = pipe_of(ex)
    assert len(still_open(pipe)) == 2
    ex.shutdown()
    del ex
    gc.collect()
    assert still_open(pipe) == []
    ex = RayExecutor()
    pipe = pipe_of(ex)
    pending: Future[float] = Future()
    ex._watch("ping", _Actor(None, (1.0, 0.0, None, ())), pending)
    del ex
    gc.collect()
    assert len(still_open(pipe)) == 2  # the call's end still writes to it
    pending.set_result(0.0)
    del pending
    gc.collect()
    assert still_open(pipe) == []


def test_waiting_for_a_local_ray_is_not_fooled_by_a_connection_to_itself() -> None:
    """The local Ray's port is polled until its head listens; a poll given that very port as
    its own connects to itself (nothing listening), which must not count as the head."""
    import socket

    from phloem.executors.ray import _answers

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not _answers(s, port)  # connect_ex alone says 0 here
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as s:
            assert _answers(s, server.getsockname()[1])


def test_a_worker_that_cannot_be_made_fails_its_attempt_not_the_connection(
    cluster: RayCluster, tmp_path: Path
) -> None:
    """Starting a worker can fail for reasons of its own (here artifacts that cannot be
    pickled); that was taken for a lost connection: the attempt never ended, and every 5 s the
    executor failed whatever ran on the cluster and joined it again."""
    from phloem.artifacts import ArtifactStore
    from phloem.executors.ray import RayExecutor
    from phloem.runner import Attempt, Result, log_path

    class Unpicklable(ArtifactStore):
        def __reduce__(self) -> str:
            raise TypeError("this store stays in its process")

    artifacts = Unpicklable(str(tmp_path / "artifacts"))
    ex = RayExecutor(address=cluster.address)
    ex.start({}, artifacts)
    try:
        ex.submit(
            Attempt(
                run_id="r1",
                pipeline="p",
                task_id="t",
                map_index=-1,
                try_number=1,
                args=(),
                kwargs={},
                logical_date="2026-01-01T00:00:00+00:00",
                data_interval_start=None,
                data_interval_end=None,
                params={},
                log_path=log_path(tmp_path, "r1", "t", -1, 1),
                first_started_at=time.time(),
            )
        )
        reports = ex.wait(0)
        assert ex._lost is None
        [failed] = [r for r in reports if isinstance(r, Result)]
        assert failed.error is not None
        assert "its Ray worker could not start" in failed.error
        assert "Could not serialize the argument ArtifactStore" in failed.error
    finally:
        ex.shutdown()


def _attempt(tmp_path: Path, pipeline: str, task_id: str) -> Any:
    return make_attempt(tmp_path, pipeline, task_id)


def _driver_only_spec(tmp_path: Path, **changes: Any) -> Any:
    """A pipeline as if defined where no file holds it (``python -c``, a notebook), whose
    ``on_success`` is a function of a module the driver imported and the cluster's workers do
    not have (pickled by reference: its tasks' functions go by value)."""
    import dataclasses
    import importlib

    (tmp_path / "phloem_driver_only.py").write_text(textwrap.dedent(
        """
        from phloem import pipeline, task

        @task
        def one() -> int:
            return 1

        @pipeline
        def p() -> None:
            one()

        def hook(**_):
            return None
        """
    ))
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("phloem_driver_only")
    finally:
        sys.path.remove(str(tmp_path))
    return dataclasses.replace(
        module.p.spec, source_file=None, **{"on_success": module.hook, **changes}
    )


def _results(ex: Any, n: int) -> list[Any]:
    from phloem.runner import Result

    out: list[Any] = []
    deadline = time.monotonic() + 240
    while len(out) < n:
        assert time.monotonic() < deadline, "no result from the Ray executor"
        out += [r for r in ex.wait(5) if isinstance(r, Result)]
    return out


def test_pipelines_that_cannot_reach_or_load_on_the_workers_fail_with_why(
    cluster: RayCluster, tmp_path: Path
) -> None:
    """A pipeline with no source file goes to the workers pickled: when pickling it failed,
    its attempts were sent anyway; when unpickling failed on the worker, the attempt failed
    with "has no task". Each now fails with the real cause."""
    import threading

    from phloem.artifacts import ArtifactStore
    from phloem.executors.ray import RayExecutor

    lock = threading.Lock()
    ex = RayExecutor(address=cluster.address)
    try:
        specs = {
            "p": _driver_only_spec(tmp_path),
            "unpicklable": _driver_only_spec(
                tmp_path, name="unpicklable", on_success=lambda **_: lock.locked()
            ),
        }
        ex.start(specs, ArtifactStore(str(tmp_path / "artifacts")))  # pickled here
    finally:
        sys.modules.pop("phloem_driver_only", None)
    try:
        ex.submit(_attempt(tmp_path, "unpicklable", "one"))
        [failed] = _results(ex, 1)
        assert failed.error is not None and not failed.retryable
        assert "pipeline 'unpicklable' could not be shipped to the Ray workers" in failed.error
        assert "cannot pickle '_thread.lock' object" in failed.error
        assert not ex._actors  # it was never sent
        ex.submit(_attempt(tmp_path, "p", "one"))
        [failed] = _results(ex, 1)
        assert failed.error is not None
        assert "pipeline 'p' could not be unpickled on the Ray worker" in failed.error
        assert "No module named 'phloem_driver_only'" in failed.error
        assert "has no task" not in failed.error
    finally:
        ex.shutdown()


def test_a_ping_about_an_earlier_batch_starts_nothing_in_the_next(tmp_path: Path) -> None:
    """A ping says which attempt of a batch runs, and since when; its answer may be read after
    the batch's results, when the actor already runs another batch: it then matches nothing."""
    from dataclasses import replace

    from phloem.executors.base import Started
    from phloem.executors.ray import RayExecutor, _Actor

    a = _attempt(tmp_path, "p", "t")
    second = [replace(a, map_index=i, run_id="r2") for i in range(3)]
    ex = RayExecutor()
    try:
        actor = _Actor(None, (1.0, 0.0, None, ()), attempt=second[0], batch=second, started=1)
        ex._seen_running(actor, (time.time(), ("r1", "t", 2, 1), 123.0, []))  # the batch before
        assert ex._reports == [] and actor.started == 1
        ex._seen_running(actor, (time.time(), ("r2", "t", 2, 1), 456.0, []))
        assert ex._reports == [Started("r2", "t", 2, 1, 456.0)]
        assert actor.started == 3 and actor.attempt is second[2]
        ex._seen_running(actor, (time.time(), ("r2", "t", 1, 1), 789.0, []))  # seen past already
        assert len(ex._reports) == 1
    finally:
        ex.shutdown()


def test_a_ping_reports_the_results_of_a_batch_s_attempts_that_ended(tmp_path: Path) -> None:
    """Results of a batch's attempts that ended come with the ping (their timeouts must not
    run on until the whole batch ends), each once, in order, started before ended; results of
    an earlier batch are ignored, and the batch's own return skips those already reported."""
    from dataclasses import replace

    from phloem.executors.base import Started
    from phloem.executors.ray import RayExecutor, _Actor
    from phloem.runner import Result
    from phloem.states import AttemptOutcome

    def ended(a: Any, at: float) -> tuple[float, Result]:
        r = Result(a.run_id, a.task_id, a.map_index, a.try_number, AttemptOutcome.SUCCESS,
                   at, at + 0.5)  # fmt: skip
        return (at, r)

    a = _attempt(tmp_path, "p", "t")
    earlier = [replace(a, map_index=i) for i in range(3)]
    batch = [replace(a, map_index=i, run_id="r2") for i in range(3)]
    ex = RayExecutor()
    try:
        actor = _Actor(None, (1.0, 0.0, None, ()), attempt=batch[0], batch=batch, started=1)
        ex._seen_running(actor, (time.time(), None, None, [ended(earlier[0], 1.0)]))
        assert ex._reports == [] and actor.ended == 0
        first, second = ended(batch[0], 2.0), ended(batch[1], 3.0)
        ex._seen_running(actor, (time.time(), ("r2", "t", 2, 1), 4.0, [first, second]))
        assert ex._reports == [
            first[1],  # (reported started when sent)
            Started("r2", "t", 1, 1, 3.0),
            second[1],
            Started("r2", "t", 2, 1, 4.0),
        ]
        assert (actor.started, actor.ended) == (3, 2)
        ex._reports.clear()
        ex._batch_ended(actor, [first, second, ended(batch[2], 4.0)][actor.ended :])
        assert ex._reports == [ended(batch[2], 4.0)[1]] and actor.ended == 3
    finally:
        ex.shutdown()
