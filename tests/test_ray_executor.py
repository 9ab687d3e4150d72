"""The Ray executor on a real Ray cluster started by the tests on this machine: a head node
(1 CPU), a node with 2 CPUs and a custom resource ``big_disk`` (127.0.0.2) and a node with one
fake GPU (127.0.0.3). One cluster is shared by the module (starting one takes a while)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import phloem
from phloem.app import Phloem
from phloem.config import Settings
from phloem.errors import PhloemError
from phloem.states import RunState, TaskState
from raycluster import Node, RayCluster

pytestmark = pytest.mark.slow

DISK_IP, GPU_IP = "127.0.0.2", "127.0.0.3"


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
def where():
    import os, socket
    import ray
    return {"ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}
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
    path = _pipeline(
        tmp_path,
        """
        @task
        def numbers(n: int) -> list[int]:
            print("making", n)
            return list(range(n))

        @task
        def square(x: int) -> int:
            return x * x

        @task
        def total(xs: list[int]) -> dict:
            return {"sum": sum(xs), "pids": None}

        @task(resources={"custom": {"big_disk": 1}})
        def on_disk() -> dict:
            return where()

        @task(resources={"gpus": 1})
        def on_gpu() -> dict:
            return where()

        @pipeline
        def flow(n: int = 5):
            total(square.expand(x=numbers(n)))
            on_disk()
            on_gpu()
        """,
    )
    local = phloem.run(str(path), executor="local", store="memory")
    assert local.state is RunState.SUCCESS
    result = phloem.run(str(path), app=ray_app)
    assert result.state is RunState.SUCCESS, _errors(result)
    assert result.output("total") == local.output("total") == {"sum": 30, "pids": None}
    assert result.output("square") == local.output("square")
    # the custom resource and the GPU were placed by Ray on the nodes that have them
    assert result.output("on_disk")["ip"] == DISK_IP
    gpu = result.output("on_gpu")
    assert gpu["ip"] == GPU_IP and gpu["gpus"] == "0"
    # the task's output went to its attempt's log, as on local workers
    logs = list((ray_app.logs_dir / result.run_id).glob("numbers*.log"))
    assert logs and "making 5" in logs[0].read_text()


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
