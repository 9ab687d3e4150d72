"""The commands of docs/deploy's manifests, run for real on this machine with the settings of
their ConfigMap and Secret: the migration Job's script, the API server (its probe path, a login,
a viewer's token on /metrics, as the doc says to make it) and a scheduler that drives a run on
a real Ray cluster through Ray Client (``ray://``), as the schedulers reach KubeRay's head.

Only what cannot run here is replaced: the store is the test PostgreSQL schema, homes and
pipeline folders are temporary, the Fernet key and the admin password are fresh, artifacts are
a local folder (S3 is tested in test_s3_artifacts.py, and no test sends traffic off this
machine), and addresses are loopback ones."""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import ports
from processes import Processes

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
PHLOEM = [sys.executable, "-m", "phloem"]

pytestmark = pytest.mark.postgres


def manifest(file: str, kind: str, name: str) -> dict[str, Any]:
    (doc,) = [
        d
        for d in yaml.safe_load_all((DEPLOY / file).read_text())
        if d and d["kind"] == kind and d["metadata"]["name"] == name
    ]
    return doc


def container(file: str, kind: str, name: str) -> dict[str, Any]:
    spec = manifest(file, kind, name)["spec"]["template"]["spec"]
    first: dict[str, Any] = spec["containers"][0]
    return first


def pod_env(tmp_path: Path, db_url: str, ray_address: str) -> dict[str, str]:
    """The environment of a pod: phloem-config and phloem-secrets as they are, but for what
    must point at this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHLOEM_", "AWS_"))}
    env["PHLOEM_TEST_SESSION"] = os.environ.get("PHLOEM_TEST_SESSION", "")
    config = manifest("10-config.yaml", "ConfigMap", "phloem-config")["data"]
    secret = manifest("10-config.yaml", "Secret", "phloem-secrets")["stringData"]
    env.update(config)
    env.update(secret)
    from cryptography.fernet import Fernet

    local = {
        "PHLOEM_HOME": str(tmp_path / "home"),
        "PHLOEM_PIPELINES": str(tmp_path / "pipelines"),
        "PHLOEM_DB_URL": db_url,
        "PHLOEM_SECRET_KEY": Fernet.generate_key().decode(),
        "PHLOEM_ARTIFACTS_URL": str(tmp_path / "artifacts"),
        "PHLOEM_RAY_ADDRESS": ray_address,
    }
    assert set(local) - {"PHLOEM_HOME", "PHLOEM_PIPELINES"} <= set(config) | set(secret)
    env.update(local)
    for key in [k for k in env if k.startswith("AWS_")]:
        del env[key]
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    return env


def local_words(words: list[str], tmp_path: Path) -> list[str]:
    """A container's args for this machine: phloem from this interpreter, the temporary
    pipeline folder, loopback and any free port."""
    out: list[str] = []
    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        if w == "phloem" and i == 0:
            out += PHLOEM
        elif prev == "--pipelines":
            out.append(str(tmp_path / "pipelines"))
        elif prev == "--host":
            out.append("127.0.0.1")
        elif prev == "--port":
            out.append("0")
        else:
            out.append(w)
    return out


def run(command: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    """``command``'s output, once it exits 0. One that could not reach the database is run
    again for a minute: other tests restart the PostgreSQL server that this one shares."""
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            command, env=env, input=stdin, capture_output=True, text=True, timeout=300
        )
        if "cannot use the store's database" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    return run([*PHLOEM, *args], env, stdin)


class Output:
    """A process's stderr, line by line, read on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._seen: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._seen.put(line)
        self._seen.put(None)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._seen.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError("the process exited:\n" + "\n".join(self.lines))
            m = re.search(pattern, line)
            if m:
                return m


def test_the_migration_job_and_the_api_server_run_as_the_manifests_say(
    pg_url: str, processes: Processes, tmp_path: Path
) -> None:
    env = pod_env(tmp_path, pg_url, "ray://127.0.0.1:9")  # the API never joins Ray
    assert env["PHLOEM_EXECUTOR"] == "ray"
    # the Job: migrate, then the admin's password from the mounted Secret; twice is harmless
    job = container("20-migrate-job.yaml", "Job", "phloem-migrate")
    assert job["args"][:2] == ["sh", "-c"]
    (mount,) = [m["mountPath"] for m in job["volumeMounts"] if m["name"] == "admin"]
    password = secrets.token_urlsafe(16)
    (tmp_path / "password").write_text(password + "\n")
    script = (
        job["args"][2]
        .replace(f"{mount}/password", str(tmp_path / "password"))
        .replace("phloem ", " ".join(PHLOEM) + " ")
    )
    for _ in range(2):
        run(["sh", "-c", script], env)
    users = json.loads(cli(env, "users", "list", "--json"))
    assert {u["name"]: u["role"] for u in users} == {"admin": "admin"}

    # the server, with the Deployment's args
    server = container("30-server.yaml", "Deployment", "phloem-server")
    proc = processes.start(
        local_words(server["args"], tmp_path),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = Output(proc)
    url = out.wait_for(r"phloem server: (http://\S+?)/api/v1").group(1)
    assert not any("created user" in line for line in out.lines)  # the Job made the admin
    health = server["readinessProbe"]["httpGet"]["path"]
    assert server["livenessProbe"]["httpGet"]["path"] == health
    assert httpx.get(url + health).json()["status"] == "ok"
    r = httpx.post(f"{url}/api/v1/auth/login", json={"user": "admin", "password": password})
    assert r.status_code == 200, r.text
    # Prometheus's token, made as docs/deploy.md and 60-monitoring.yaml say
    cli(env, "users", "add", "prometheus", "--role", "viewer", "--password-stdin",
        stdin=secrets.token_urlsafe(16) + "\n")  # fmt: skip
    token = cli(env, "tokens", "create", "prometheus", "--user", "prometheus").strip()
    job_config = yaml.safe_load(
        manifest("60-monitoring.yaml", "ConfigMap", "phloem-prometheus")["data"]["prometheus.yml"]
    )["scrape_configs"][0]
    r = httpx.get(url + job_config["metrics_path"], headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "phloem_runs_started_total" in r.text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, "\n".join(out.lines)


def _free_port() -> int:
    return ports.free_port()


FLOW = """
import os
from phloem import pipeline, task


# retries: a PostgreSQL restart by another test may stop an attempt (its heartbeat fails)
@task(retries=2)
def where() -> dict:
    import ray

    return {"actor": ray.get_runtime_context().get_actor_id() is not None, "pid": os.getpid()}


@task(retries=2)
def double(w: dict) -> int:
    return 2 * len(w)


@pipeline
def deployed():
    double(where())
"""


@pytest.mark.slow
def test_the_scheduler_drives_a_run_on_ray_through_ray_client(
    pg_url: str, processes: Processes, tmp_path: Path
) -> None:
    from raycluster import RayCluster

    client_port = _free_port()

    class WithClient(RayCluster):
        """A head that also serves Ray Client, as KubeRay's head does on port 10001."""

        def _args(self, node: Any) -> list[str]:
            args = super()._args(node)
            if node is self.head:
                args.append(f"--ray-client-server-port={client_port}")
            return args

    cluster = WithClient(tmp_path / "ray", [], head_cpus=2)
    try:
        cluster.start()
        cm = manifest("10-config.yaml", "ConfigMap", "phloem-config")["data"]
        assert cm["PHLOEM_RAY_ADDRESS"].startswith("ray://")
        env = pod_env(tmp_path, pg_url, f"ray://127.0.0.1:{client_port}")
        env["PYTHONPATH"] = cluster.env()["PYTHONPATH"]
        (tmp_path / "pipelines" / "deployed.py").write_text(FLOW)
        args = container("40-scheduler.yaml", "Deployment", "phloem-scheduler")["args"]
        assert args[:4] == ["phloem", "scheduler", "--executor", "ray"]
        sched = processes.start(
            [*local_words(args, tmp_path), "--parse-interval", "0.5"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        out = Output(sched)
        out.wait_for(r"phloem scheduler ")
        run_id = json.loads(cli(env, "trigger", "deployed", "--json"))["run_id"]
        deadline = time.monotonic() + 240
        while True:
            shown = json.loads(cli(env, "runs", "show", run_id, "--json"))
            if shown["state"] in ("success", "failed") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert shown["state"] == "success", json.dumps(shown, indent=1) + "\n".join(out.lines)
        where = json.loads(cli(env, "output", run_id, "where", "--json"))
        value = where.get("value", where)
        assert value["actor"] is True  # it ran in a Ray actor, not in the scheduler's workers
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(timeout=120) == 0, "\n".join(out.lines)
    finally:
        cluster.close()
