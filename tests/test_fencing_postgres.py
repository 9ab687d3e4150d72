"""No task instance ever runs in two places at once, whatever happens to the driver that
handed its attempt out: frozen (SIGSTOP) longer than its lease, or cut off from the database
while its workers go on. Two real schedulers on PostgreSQL; every attempt of the task writes
(start, alive..., end) to a ledger, and no two attempts' intervals of one instance overlap."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from phloem.loading import load_pipeline
from phloem.runs import create_run
from phloem.states import RunState
from phloem.store import SqlStore

pytestmark = pytest.mark.postgres

LEASE = 2.0  # seconds: short, so the tests take over quickly

LEDGER = textwrap.dedent(
    """
    import os
    import time
    from phloem import pipeline, task

    @task(retries=3)  # a heartbeat late on a loaded machine stops an attempt too: it retries
    def work(i: int, ledger: str, seconds: float) -> int:
        me = f"{os.getpid()}@{time.time()!r}"

        def note(what: str) -> None:
            with open(ledger, "a") as fh:
                fh.write(f"{i} {me} {what} {time.time()!r}\\n")

        note("start")
        end = time.time() + seconds
        while time.time() < end:
            time.sleep(0.05)
            note("alive")
        note("end")
        return i

    @pipeline
    def fenced(ledger: str = "", seconds: float = 8.0):
        work(0, ledger, seconds)
        work(1, ledger, seconds)
    """
)


class _Proxy:
    """A TCP relay to PostgreSQL that the test can cut: a network partition between one
    scheduler (and its workers) and the database, while the other still reaches it."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self.socks += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.cut:
                    return
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        """Cut every connection and refuse new ones."""
        self.cut = True
        self.server.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))


class _Schedulers:
    """`phloem scheduler` processes, each in a process group of its own, all killed (with
    everything they started) at the end."""

    def __init__(self, folder: Path, home: Path, logs: Path) -> None:
        self.folder, self.home, self.logs = folder, home, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, db_url: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PHLOEM_DB_URL": db_url,
            "PHLOEM_HOME": str(self.home),
            "PHLOEM_WORKERS": "2",
            "PHLOEM_LEASE_TTL": str(LEASE),
            "PHLOEM_DB_OUTAGE_TIMEOUT": "600",
        }
        log = open(self.logs / f"scheduler-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "phloem", "scheduler", "--pipelines", str(self.folder)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGCONT)
                os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(30)

    def log(self) -> str:
        return "\n".join(
            f"--- scheduler {k}\n" + (self.logs / f"scheduler-{k}.log").read_text()[-3000:]
            for k in range(len(self.procs))
        )


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[_Schedulers]:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "ledger.py").write_text(LEDGER)
    s = _Schedulers(folder, tmp_path / "home", tmp_path)
    try:
        yield s
    finally:
        s.kill_all()


def _create(store: SqlStore, folder: Path, ledger: Path) -> str:
    source = f"{folder / 'ledger.py'}:fenced"
    spec = load_pipeline(source).spec
    return create_run(store, spec, {"ledger": str(ledger)}, source=source).run_id


def _wait(what: str, until: float, check: object, s: _Schedulers) -> None:
    while time.time() < until:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"{what}\n{s.log()}")


def _intervals(ledger: Path) -> dict[str, list[tuple[float, float, str]]]:
    """Per task instance, each attempt's (first, last) moment it was seen running."""
    seen: dict[tuple[str, str], list[float]] = {}
    for line in ledger.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue  # a line cut short by a kill
        i, who, _, at = parts
        span = seen.setdefault((i, who), [float(at), float(at)])
        span[0], span[1] = min(span[0], float(at)), max(span[1], float(at))
    out: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for (i, who), (start, end) in seen.items():
        out[i].append((start, end, who))
    return {i: sorted(v) for i, v in out.items()}


def _assert_no_overlap(ledger: Path) -> dict[str, list[tuple[float, float, str]]]:
    spans = _intervals(ledger)
    for i, attempts in spans.items():
        for (s1, e1, w1), (s2, e2, w2) in itertools.pairwise(attempts):
            assert e1 < s2, (
                f"task instance work[{i}] ran twice at once: {w1} over [{s1}, {e1}] and "
                f"{w2} over [{s2}, {e2}]"
            )
    return spans


def _owner_pid(store: SqlStore, run_id: str) -> int | None:
    owner = store.get_run(run_id).owner
    return int(owner.split(":")[2]) if owner else None


def _finished(store: SqlStore, run_id: str) -> bool:
    run = store.get_run(run_id)
    if run.state.is_terminal and run.state is not RunState.SUCCESS:
        errors = {(a.task_id, a.try_number): a.error for a in store.attempts(run_id)}
        pytest.fail(f"run {run_id} ended {run.state.value}: {errors}")
    return run.state is RunState.SUCCESS


def _running(store: SqlStore, run_id: str) -> bool:
    return all(ti.state.value == "running" for ti in store.load_instances(run_id))


def test_a_frozen_driver_s_attempts_never_overlap_their_retries(
    pg_url: str, tmp_path: Path, schedulers: _Schedulers
) -> None:
    store = SqlStore(pg_url)
    ledger = tmp_path / "ledger"
    run_id = _create(store, schedulers.folder, ledger)
    first, second = schedulers.start(pg_url), schedulers.start(pg_url)
    _wait("the tasks never ran", time.time() + 60, lambda: _running(store, run_id), schedulers)
    _wait("no lease", time.time() + 10, lambda: _owner_pid(store, run_id), schedulers)
    owner = _owner_pid(store, run_id)
    assert owner in (first.pid, second.pid)
    os.kill(owner, signal.SIGSTOP)  # its workers run on; its lease runs out
    try:
        other = second.pid if owner == first.pid else first.pid
        _wait(
            "the run was not taken over",
            time.time() + 60,
            lambda: _owner_pid(store, run_id) == other,
            schedulers,
        )
        time.sleep(3 * LEASE)  # frozen well past the takeover
    finally:
        os.kill(owner, signal.SIGCONT)
    _wait(
        "the run did not finish",
        time.time() + 120,
        lambda: _finished(store, run_id),
        schedulers,
    )
    spans = _assert_no_overlap(ledger)
    assert sorted(spans) == ["0", "1"]
    # the frozen driver's attempts were cut short and run again, one after the other
    assert any(len(v) > 1 for v in spans.values()), spans
    states = [a.state for a in store.attempts(run_id)]
    assert "interrupted" in states and states.count("success") == 2


def test_a_driver_cut_off_from_the_database_never_overlaps_its_successor(
    pg_url: str, tmp_path: Path, schedulers: _Schedulers
) -> None:
    store = SqlStore(pg_url)
    ledger = tmp_path / "ledger"
    parts = urlsplit(pg_url)
    proxy = _Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        run_id = _create(store, schedulers.folder, ledger)
        cut_off = schedulers.start(_via(pg_url, proxy.port))
        _wait("the tasks never ran", time.time() + 60, lambda: _running(store, run_id), schedulers)
        assert _owner_pid(store, run_id) == cut_off.pid
        successor = schedulers.start(pg_url)
        time.sleep(1.0)  # the successor is up and claiming
        proxy.close()  # the old owner and its workers lose the database; the others do not
        _wait(
            "the run was not taken over",
            time.time() + 60,
            lambda: _owner_pid(store, run_id) == successor.pid,
            schedulers,
        )
        _wait(
            "the run did not finish",
            time.time() + 120,
            lambda: _finished(store, run_id),
            schedulers,
        )
    finally:
        proxy.close()
    spans = _assert_no_overlap(ledger)
    assert sorted(spans) == ["0", "1"]
    assert any(len(v) > 1 for v in spans.values()), spans
    assert cut_off.poll() is None  # the database going away is waited out, not fatal
