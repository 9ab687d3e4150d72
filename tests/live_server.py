"""A real phloem API server for tests: uvicorn in a process of its own, on a free port, over a
store the test also opens (SQLite file or a PostgreSQL schema), with one token per role.

The test's ``processes`` fixture ends the server (and a scheduler, if one was started).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ports
from processes import Processes

FIXTURES = Path(__file__).parent / "fixtures"


def free_port() -> int:
    return ports.free_port()


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]  # what a local command on the same store needs
    tokens: dict[str, str] = field(default_factory=dict)
    proc: Any = None
    folder: Path = Path()  # the pipelines folder

    def client(self, role: str = "admin") -> Any:
        from phloem.client import Client

        return Client(self.url, self.tokens[role])


def start(processes: Processes, home: Path, db_url: str, pipelines: Path) -> LiveServer:
    """Users and tokens made through the store, then uvicorn started and waited for."""
    from phloem.accounts import manage
    from phloem.accounts.secrets import hash_password
    from phloem.app import Phloem
    from phloem.config import Settings

    env = {
        **os.environ,
        "PHLOEM_HOME": str(home),
        "PHLOEM_DB_URL": db_url,
        "PHLOEM_PIPELINES": str(pipelines),
        "PHLOEM_LEASE_TTL": "3",
    }
    env.pop("PHLOEM_SERVER_URL", None)
    env.pop("PHLOEM_TOKEN", None)
    ph = Phloem(Settings.from_env(environ=env))
    tokens = {}
    try:
        for role in ("viewer", "operator", "admin"):
            ph.store.accounts.add_user(role, role, hash_password("pw " + role), time.time())
            tokens[role], _ = manage.create_token(ph, f"{role}-token", role)
    finally:
        ph.close()
    port = free_port()
    src = str(Path(__file__).parent.parent / "src")
    server_env = {**env, "PYTHONPATH": os.pathsep.join([src, str(FIXTURES)])}
    proc = processes.start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "live_app:make",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=server_env,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_up(url, proc)
    return LiveServer(url, env, tokens, proc, pipelines)


def _wait_up(url: str, proc: Any, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the test server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the test server at {url} did not answer within {timeout} s")


def scheduler(processes: Processes, live: LiveServer, folder: Path) -> Any:
    """A ``phloem scheduler`` on the server's store (drives what the API queues)."""
    return processes.start(
        [
            sys.executable,
            "-m",
            "phloem",
            "scheduler",
            "--pipelines",
            str(folder),
            "--parse-interval",
            "0.5",
        ],
        env={**live.env, "PYTHONPATH": str(Path(__file__).parent.parent / "src")},
    )
