"""A real Ray cluster for tests, on this machine: a head node and worker nodes, each a
``ray start --block`` in a process group of its own, on loopback addresses of their own
(127.0.0.1 for the head, 127.0.0.2... for the workers, so a task can tell where it ran) and
on free ports, with their files in a private folder. ``kill_node`` takes a node down mid-test
(its raylet, its workers, everything) and ``start_node`` brings one (back) up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ports
from processes import Processes


def ray_binary() -> str:
    found = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not os.access(found, os.X_OK):
        raise RuntimeError("the 'ray' command is missing: pip install 'phloem[ray]'")
    return found


#: the interpreter's path when the tests started: folders tests add later (a pipeline's own
#: folder, which may hold a ``json.py``) must not shadow the standard library on the nodes
_START_PATH = list(sys.path)


def _free_port(ip: str = "127.0.0.1") -> int:
    return ports.free_port(ip)


@dataclass
class Node:
    name: str
    ip: str
    cpus: int
    gpus: int = 0
    resources: dict[str, float] = field(default_factory=dict)
    proc: subprocess.Popen[Any] | None = None


class RayCluster:
    """``start()`` the head and the nodes given, ``close()`` everything."""

    def __init__(self, root: Path, nodes: list[Node], head_cpus: int = 1) -> None:
        self.root = root
        self.processes = Processes()
        self.port = _free_port()
        self.client_port = _free_port()
        # Ray gives the head the machine's own address whatever it is told; it answers on all
        self.head = Node("head", "127.0.0.1", head_cpus)
        self.nodes = {n.name: n for n in [self.head, *nodes]}
        # the nodes' files: a short path (Ray's socket names must fit in 107 bytes)
        self.temp = Path(os.environ.get("TMPDIR", "/tmp")) / f"phr{self.port}"
        self.log = root / "ray-cluster.log"

    @property
    def address(self) -> str:
        return f"{self.head.ip}:{self.port}"

    @property
    def client_address(self) -> str:
        """The head's Ray Client server (``ray://``), for drivers off the cluster."""
        return f"ray://{self.head.ip}:{self.client_port}"

    def env(self) -> dict[str, str]:
        """The cluster's environment: this interpreter's path (so nodes import the phloem
        under test) and no usage reports."""
        env = dict(os.environ)
        paths = [p for p in _START_PATH if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # the cluster and this process agree, whatever token a ~/.ray of the machine holds
        env["RAY_AUTH_MODE"] = "disabled"
        env["RAY_DISABLE_IMPORT_WARNING"] = "1"
        env.setdefault("RAY_raylet_start_wait_time_s", "120")  # a loaded machine is slow
        # Ray Client's proxy now and then loses the server it forks for a new connection (it
        # dies as it starts); the proxy then waits this long for it before the connection
        # fails and phloem joins again (30 s by default: most of a Ray Client test's time)
        env.setdefault("RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S", "10")
        return env

    def _args(self, node: Node) -> list[str]:
        args = [
            ray_binary(),
            "start",
            "--block",
            f"--node-ip-address={node.ip}",
            f"--num-cpus={node.cpus}",
            f"--num-gpus={node.gpus}",
            "--disable-usage-stats",
            f"--temp-dir={self.temp}",
            f"--node-manager-port={_free_port()}",
            f"--object-manager-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            "--object-store-memory=100000000",
        ]
        if node.resources:
            import json

            args.append(f"--resources={json.dumps(node.resources)}")
        if node is self.head:
            args += [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--dashboard-port={_free_port()}",
                f"--ray-client-server-port={self.client_port}",
            ]
        else:
            args.append(f"--address={self.address}")
        return args

    def start_node(self, name: str) -> None:
        node = self.nodes[name]
        with self.log.open("ab") as log:
            node.proc = self.processes.start(
                self._args(node), env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )

    def start(self, timeout: float = 180.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._saved_auth = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "disabled"  # for this process, which joins the cluster
        self.start_node("head")
        self._wait_port(timeout)
        for name in self.nodes:  # one at a time: at once, a loaded machine times them out
            if name != "head":
                self.start_node(name)
                self.wait_alive({"head", name}, timeout)

    def _wait_port(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            with socket.socket() as s:
                if s.connect_ex((self.head.ip, self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the Ray head did not listen in {timeout}s: {self._tail()}")

    def _check_running(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"ray start of node {node.name} exited: {self._tail()}")

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def alive_ips(self) -> set[str]:
        import ray

        return {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}

    def wait_alive(self, names: set[str], timeout: float = 180.0) -> None:
        """Until the nodes ``names`` are alive in the cluster (this process joins it)."""
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                log_to_driver=False,
                logging_level="warning",
            )
        want = {self.nodes[n].ip for n in names if n != "head"}
        deadline = time.monotonic() + timeout
        while not want <= self.alive_ips():
            self._check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray nodes {sorted(want)} did not join: {self._tail()}")
            time.sleep(0.5)

    def kill_node(self, name: str) -> None:
        """Take node ``name`` down at once: its raylet, its workers, everything it started."""
        node = self.nodes[name]
        assert node.proc is not None
        try:
            os.killpg(node.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.proc.wait()
        from processes import carrying, kill_all

        kill_all(carrying("PHLOEM_TEST_PROCESS", self.processes.marker(node.proc)))
        node.proc = None

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(list(self.nodes.values())):
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        self.processes.close()
        shutil.rmtree(self.temp, ignore_errors=True)
        if getattr(self, "_saved_auth", None) is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = self._saved_auth
