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
