"""Fixtures for the server's tests: an application with one user (and token) per role, and
clients that call it as each of them.

``api`` runs on the in-memory store; ``api_on_store`` on each store (memory, SQLite,
PostgreSQL). ``api.call(role, method, path, ...)`` sends a request with that role's bearer
token (``None``: no credentials).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "correct horse battery"


@dataclass
class Api:
    ph: Any  # phloem.app.Phloem
    app: Any  # fastapi.FastAPI
    client: Any  # fastapi.testclient.TestClient
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token

    def headers(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, role: str | None, method: str, path: str, **kw: Any) -> Any:
        headers = {**self.headers(role), **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    def get(self, role: str | None, path: str, **kw: Any) -> Any:
        return self.call(role, "GET", path, **kw)

    def post(self, role: str | None, path: str, **kw: Any) -> Any:
        return self.call(role, "POST", path, **kw)


@functools.lru_cache(maxsize=1)
def password_hash() -> str:
    """PASSWORD's argon2 hash, made once (hashing is slow on purpose)."""
    from phloem.accounts.secrets import hash_password

    return hash_password(PASSWORD)


def make_api(store: str, home: Path, **options: Any) -> Api:
    from fastapi.testclient import TestClient

    from phloem.accounts import manage
    from phloem.app import Phloem
    from phloem.server import create_app

    ph = Phloem.open(store, home)
    app = create_app(ph, **options)
    api = Api(ph, app, TestClient(app))
    for role in ("viewer", "operator", "admin"):
        ph.store.accounts.add_user(role, role, password_hash(), time.time())
        api.tokens[role], _ = manage.create_token(ph, f"{role}-token", role)
    return api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = make_api("memory", tmp_path / "home")
    yield a
    a.client.close()
    a.ph.close()


@pytest.fixture
def api_on_store(store_url: str, tmp_path: Path) -> Iterator[Api]:
    a = make_api(store_url, tmp_path / "home")
    yield a
    a.client.close()
    a.ph.close()


# -- a real server process ----------------------------------------------------------------------


@dataclass
class LiveServer:
    """``phloem server`` running as a process of its own, listening on a free port."""

    proc: Any  # subprocess.Popen
    url: str  # http://127.0.0.1:PORT
    admin_password: str | None
    env: dict[str, str]
    lines: list[str]  # what it printed on stderr so far

    def app(self) -> Any:
        """An application object on the server's store (for setting up data)."""
        from phloem.app import Phloem
        from phloem.config import Settings

        return Phloem(Settings.from_env(environ=self.env))

    def token(self, role: str = "admin") -> str:
        """A bearer token of a user with ``role`` (the user is made on first use)."""
        from phloem.accounts import manage

        ph = self.app()
        try:
            if ph.store.accounts.user(role) is None:
                ph.store.accounts.add_user(role, role, password_hash(), time.time())
            token, _ = manage.create_token(ph, f"{role}-{len(self.lines)}-{time.time_ns()}", role)
            return token
        finally:
            ph.close()


def start_server(
    processes: Any,
    home: Path,
    *,
    db_url: str | None = None,
    pipelines: Path | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 60.0,
    extra_env: dict[str, str] | None = None,
) -> LiveServer:
    """Start ``phloem server --port 0`` and wait until it says where it listens
    (``extra_env``: more variables for it, such as ``PHLOEM_TRUSTED_PROXIES``)."""
    import os
    import queue
    import re
    import subprocess
    import sys
    import threading

    env = {k: v for k, v in os.environ.items() if not k.startswith("PHLOEM_")}
    env.update({"PHLOEM_HOME": str(home), "PHLOEM_WORKERS": "2"})
    env["PHLOEM_TEST_SESSION"] = os.environ.get("PHLOEM_TEST_SESSION", "")
    if db_url:
        env["PHLOEM_DB_URL"] = db_url
    env.update(extra_env or {})
    folder = pipelines or home / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    proc = processes.start(
        [sys.executable, "-m", "phloem", "server", "--port", "0", "--pipelines", str(folder),
         "--parse-interval", "0.5", *args],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    seen: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            seen.put(line)
        seen.put(None)

    threading.Thread(target=pump, daemon=True).start()
    password = None
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = seen.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the server did not start:\n" + "\n".join(lines)) from None
        if line is None:
            raise AssertionError("the server exited:\n" + "\n".join(lines))
        m = re.search(r"created user 'admin' with password (\S+)", line)
        if m:
            password = m.group(1)
        m = re.search(r"phloem server: (http://\S+?)/api/v1", line)
        if m:
            return LiveServer(proc, m.group(1), password, env, lines)
