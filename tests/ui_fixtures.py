"""Fixtures for the web UI's tests: a server application on a real store with a pipeline whose
names, parameters, logs and errors carry HTML, one finished run of it, and a browser-like
client (session cookie) per role."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server_fixtures import PASSWORD, Api, make_api

#: text that must show as text wherever it is rendered
EVIL = "<script>alert(1)</script><b>x</b>"

PIPELINE = textwrap.dedent(
    """
    import phloem
    from phloem import pipeline, task

    EVIL = "<script>alert(1)</script><b>x</b>"

    @task(cache=True)
    def load(n: int) -> list[int]:
        print(EVIL, "loading", n)
        return list(range(n))

    @task
    def square(x: int) -> int:
        return x * x

    @task
    def total(xs: list[int]) -> int:
        phloem.log_metric("total", float(sum(xs)))
        phloem.log_param("label", EVIL)
        return sum(xs)

    @task
    def report(t: int, note: str) -> int:
        raise ValueError(EVIL + " in report")

    @pipeline(schedule="@daily", description=EVIL)
    def demo(n: int = 4, note: str = EVIL, rate: float = 0.5, flag: bool = False):
        xs = load(n)
        with phloem.group("calc"):
            t = total(square.expand(x=xs))
        report(t, note)
    """
)


@dataclass
class UiApp:
    api: Api
    run_id: str  # n=4
    file: Path
    other_run: str  # n=3, an earlier logical date
    clients: dict[str, Any] = field(default_factory=dict)

    @property
    def ph(self) -> Any:
        return self.api.ph

    def browser(self, role: str) -> Any:
        """A client logged in as ``role`` with a session cookie, as a browser is."""
        if role not in self.clients:
            from fastapi.testclient import TestClient

            c = TestClient(self.api.app)
            r = c.post("/api/v1/auth/login", json={"user": role, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.clients[role] = c
        return self.clients[role]


def register(ph: Any, file: Path) -> None:
    from phloem.scheduler.parsing import describe_pipelines

    ph.store.catalog.sync_file(str(file), describe_pipelines(str(file)), time.time())


def make_ui(home: Path, store: str = "memory") -> UiApp:
    import phloem

    api = make_api(store, home)
    file = home.parent / "demo_pipeline.py"
    file.write_text(PIPELINE)
    register(api.ph, file)
    other = phloem.run(
        f"{file}:demo",
        app=api.ph,
        executor="inline",
        params={"n": 3},
        logical_date="2026-01-01",
    )
    result = phloem.run(f"{file}:demo", app=api.ph, executor="inline")
    return UiApp(api, result.run_id, file, other.run_id)


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UiApp]:
    u = make_ui(tmp_path / "home")
    yield u
    for c in u.clients.values():
        c.close()
    u.api.client.close()
    u.ph.close()
