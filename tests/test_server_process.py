"""``phloem server`` as a real process: it creates the first admin once, serves the API beside
its scheduler, and stops cleanly on SIGTERM (exit 0, no process left behind, per /proc)."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import httpx
import pytest

from processes import alive, descendants
from server_fixtures import start_server


def test_sigterm_stops_the_server_and_its_scheduler_cleanly(
    processes: object, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    server = start_server(processes, home)
    assert server.admin_password is not None
    file = home / "admin-password"
    assert file.read_text().strip() == server.admin_password
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    below = descendants(server.proc.pid)
    assert any("phloem-schedule" in p.cmdline or "phloem" in p.cmdline for p in below), below
    r = httpx.get(f"{server.url}/api/v1/health")
    assert r.json()["status"] == "ok"
    r = httpx.post(f"{server.url}/api/v1/auth/login",
                   json={"user": "admin", "password": server.admin_password})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    token = server.token("viewer")
    r = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["role"] == "viewer"
    pids = [p.pid for p in below]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, "\n".join(server.lines)
    assert descendants(server.proc.pid) == []
    assert not [p for p in pids if Path(f"/proc/{p}").exists()
                and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1][:3]]


def test_a_second_start_does_not_make_another_admin(processes: object, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_server(processes, home, args=("--no-scheduler",))
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=60) == 0
    second = start_server(processes, home, args=("--no-scheduler",))
    assert second.admin_password is None
    assert not any("created user" in line for line in second.lines)
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=60) == 0


def test_a_port_in_use_is_a_clear_error(processes: object, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    try:
        import os

        env = {**os.environ, "PHLOEM_HOME": str(tmp_path / "home")}
        env.pop("PHLOEM_DB_URL", None)
        out = subprocess.run(
            [sys.executable, "-m", "phloem", "server", "--port", str(port),
             "--pipelines", str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=60,
        )
    finally:
        sock.close()
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.postgres
def test_two_servers_share_one_postgresql_store(
    processes: object, tmp_path: Path, pg_url: str
) -> None:
    a = start_server(processes, tmp_path / "a", db_url=pg_url)
    b = start_server(processes, tmp_path / "b", db_url=pg_url)
    assert (a.admin_password is None) != (b.admin_password is None)  # one admin, made once
    token = a.token("operator")
    for s in (a, b):
        r = httpx.get(f"{s.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.json()["user"] == "operator"
    for s in (a, b):
        s.proc.send_signal(signal.SIGTERM)
    for s in (a, b):
        assert s.proc.wait(timeout=60) == 0, "\n".join(s.lines)


def _scheduler_pid(server: object) -> int:
    import re

    for line in server.lines:  # type: ignore[attr-defined]
        m = re.search(r"scheduler pid (\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError("no scheduler pid printed")


def test_a_scheduler_that_dies_stops_the_server_with_status_1(
    processes: object, tmp_path: Path
) -> None:
    import os

    server = start_server(processes, tmp_path / "home")
    os.kill(_scheduler_pid(server), signal.SIGKILL)
    assert server.proc.wait(timeout=60) == 1
    assert any("the scheduler stopped" in line for line in server.lines), server.lines
    assert descendants(server.proc.pid) == []


def test_the_api_gives_the_cpus_way_to_its_scheduler(processes: object, tmp_path: Path) -> None:
    """The API process runs in the idle scheduling class at the lowest niceness, so requests
    take only CPU the scheduler and its workers leave; the scheduler keeps the normal class."""
    import os

    server = start_server(processes, tmp_path / "home")
    api = server.proc.pid
    assert os.sched_getscheduler(api) == os.SCHED_IDLE
    assert os.getpriority(os.PRIO_PROCESS, api) == 19
    scheduler = _scheduler_pid(server)
    assert os.sched_getscheduler(scheduler) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, scheduler) == os.getpriority(os.PRIO_PROCESS, 0)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    # PHLOEM_API_SCHED=nice: the normal class, still at the lowest niceness
    nice = start_server(processes, tmp_path / "home", extra_env={"PHLOEM_API_SCHED": "nice"})
    assert os.sched_getscheduler(nice.proc.pid) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, nice.proc.pid) == 19
    nice.proc.send_signal(signal.SIGTERM)
    assert nice.proc.wait(timeout=60) == 0


def test_a_killed_server_takes_its_scheduler_with_it(processes: object, tmp_path: Path) -> None:
    from processes import wait_gone

    server = start_server(processes, tmp_path / "home")
    scheduler = _scheduler_pid(server)
    server.proc.kill()  # SIGKILL: no chance to stop anything itself
    server.proc.wait(timeout=60)
    left = wait_gone(lambda: processes.left_by(server.proc), 30.0)  # type: ignore[attr-defined]
    assert left == [], left
    assert not Path(f"/proc/{scheduler}/cmdline").exists() or Path(
        f"/proc/{scheduler}/stat"
    ).read_text().split(")")[-1].split()[0] == "Z"


HELD = '''
import os
import time
from pathlib import Path

from phloem import pipeline, task

HERE = Path(__file__).parent


def _hold(name: str) -> None:
    (HERE / f"pid-{name}").write_text(str(os.getpid()))
    while not (HERE / "go").exists():
        time.sleep(0.05)


@task
def first() -> int:
    return 2


@task
def left(n: int) -> int:
    _hold("left")
    return n


@task
def right(n: int) -> int:
    _hold("right")
    return n * 10


@task
def total(a: int, b: int) -> int:
    return a + b


@pipeline
def held():
    n = first()
    total(left(n), right(n))
'''


def _until(what: str, check: object, timeout: float = 120.0) -> object:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()  # type: ignore[operator]
        except Exception as exc:  # not yet (a pipeline not found yet, say)
            found, last = None, exc
        else:
            last = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} (last error: {last!r})")
        time.sleep(0.1)


def test_cancel_through_the_api_stops_a_run_the_servers_scheduler_drives(
    processes: object, tmp_path: Path
) -> None:
    """A run started by ``phloem server``'s own scheduler, cancelled through the API: its
    running attempts stop (their worker processes are gone), the run fails, and a retry
    resumes it where it stopped (the task that had succeeded keeps its one attempt)."""
    from phloem.client import Client

    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "held.py").write_text(HELD)
    server = start_server(processes, tmp_path / "home", pipelines=folder)
    with Client(server.url, server.token("operator")) as c:
        run, created = _until("the scheduler to find the pipeline", lambda: c.trigger("held"))
        assert created
        run_id = run.run_id

        def both_running() -> bool:
            states = {t: c.instance(run_id, t).state.value for t in ("left", "right")}
            return states == {"left": "running", "right": "running"} and all(
                (folder / f"pid-{t}").exists() for t in ("left", "right")
            )

        _until("both held tasks to run", both_running)
        pids = [int((folder / f"pid-{t}").read_text()) for t in ("left", "right")]
        assert all(alive(p) for p in pids)

        out = c.cancel(run_id, "stop it")
        # its unfinished tasks: the two running and the one waiting for them
        assert out.cancelled == 3 and out.run.state.value == "failed"
        _until("the cancelled attempts' processes to end", lambda: not any(map(alive, pids)))
        for t in ("left", "right"):
            ti = c.instance(run_id, t)
            assert ti.state.value == "failed" and ti.error == "cancelled by operator: stop it"
        total = c.instance(run_id, "total")
        assert total.state.value == "failed" and total.try_number == 0, total
        assert c.run(run_id).state.value == "failed"  # the scheduler does not undo it

        (folder / "go").write_text("")
        again = c.retry(run_id)
        # queued for the scheduler, which may have taken it already
        assert again.reset == 3 and again.run.state.value in ("queued", "running", "success")
        _until("the retried run to succeed", lambda: c.run(run_id).state.value == "success")
        assert len(c.attempts(run_id, task_id="first")) == 1
        assert [a.try_number for a in c.attempts(run_id, task_id="left")] == [1, 2]
