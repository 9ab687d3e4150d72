"""A real ``phloem server`` (a subprocess on a free port, with its scheduler, on a temporary
home) and a real Chromium (Debian's ``chromium``, driven by Playwright for Python) for the web
UI's browser tests. The server is stopped, and killed if need be, by the fixture.

Screenshots go to ``test-output/ui/`` at the top of the repository (ignored by git).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ports
from server_fixtures import PASSWORD

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "ui"

PIPELINE = textwrap.dedent(
    """
    import os
    import time

    import phloem
    from phloem import pipeline, task


    @task
    def prepare(n: int) -> list[int]:
        print("preparing", n, "items <b>not bold</b>")
        return list(range(n))


    @task
    def work(x: int, pause: float) -> int:
        print("working on", x, flush=True)
        time.sleep(pause)
        print("finished", x, flush=True)
        return x * 2


    @task
    def collect(xs: list[int]) -> int:
        phloem.log_metric("score", float(sum(xs)))
        return sum(xs)


    @task
    def check(total: int, gate: str) -> int:
        print("checking", total)
        if gate and os.path.exists(gate):
            raise RuntimeError(f"the gate file {gate} is there: <script>no</script>")
        return total


    @pipeline(description="A pipeline for the browser tests")
    def browser_demo(n: int = 3, pause: float = 0.3, gate: str = ""):
        xs = prepare(n)
        with phloem.group("compute"):
            total = collect(work.partial(pause=pause).expand(x=xs))
        check(total, gate)
    """
)


NIGHTLY = textwrap.dedent(
    """
    from phloem import pipeline, task


    @task
    def hello() -> str:
        return "hello"


    @pipeline(schedule="@daily", start_date="2026-01-01")
    def nightly_demo():
        hello()
    """
)


def free_port() -> int:
    return ports.free_port()


@dataclass
class Server:
    url: str
    home: Path
    folder: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_up(server: Server, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"phloem server exited early:\n{server.output()}")
        try:
            r = httpx.get(server.url + "/api/v1/pipelines", timeout=2.0)
            if r.status_code == 401:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"phloem server did not answer within {timeout}s:\n{server.output()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from phloem.accounts import manage
    from phloem.app import Phloem

    root = tmp_path_factory.mktemp("ui-browser")
    home, folder = root / "home", root / "pipelines"
    folder.mkdir()
    (folder / "browser_demo.py").write_text(PIPELINE)
    (folder / "nightly_demo.py").write_text(NIGHTLY)  # scheduled: something to backfill
    with Phloem.open(None, home) as ph:
        for role in ("viewer", "operator", "admin"):
            manage.add_user(ph, role, role, PASSWORD)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHLOEM_")}
    env["PHLOEM_HOME"] = str(home)
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "phloem",
                "server",
                "--port",
                str(port),
                "--pipelines",
                str(folder),
                "--parse-interval",
                "1",
                "--workers",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    s = Server(f"http://127.0.0.1:{port}", home, folder, proc, log)
    try:
        _wait_up(s)
        yield s
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        raise AssertionError(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; "
            ".ci/run does it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    """Save a screenshot of the whole page for review."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(browser: Any, server: Server, role: str) -> Any:
    """A new browser context logged in as ``role`` through the login form, by keyboard."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(server.url + "/")
    assert "/login" in page.url
    page.wait_for_selector("#login")
    page.focus("#user")
    page.keyboard.type(role)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(server.url + "/")
    return page


def clear_shots() -> None:
    shutil.rmtree(SHOTS, ignore_errors=True)
