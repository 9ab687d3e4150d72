"""Read pipeline files in worker processes, with a time limit per file.

A file that raises, hangs or is slow is reported with its error and the others keep working:
the scheduler never imports an unvetted file itself. Workers are long-lived (forked once), so
reading 1,000 files costs 1,000 imports, not 1,000 interpreter starts. They die with the
scheduler however it ends, and take along whatever a file started at import.
"""

from __future__ import annotations

import hashlib
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from phloem.executors.lifetime import Child, start_child
from phloem.store.types import PipelineInfo


@dataclass(frozen=True, slots=True)
class FileReport:
    file: str
    digest: str
    pipelines: tuple[PipelineInfo, ...] = ()
    error: str | None = None
    seconds: float = 0.0


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def describe_pipelines(path: str) -> tuple[PipelineInfo, ...]:
    """Import ``path`` afresh and describe the pipelines it defines."""
    from phloem.loading import load_module_pipelines, module_name

    sys.modules.pop(module_name(Path(path)), None)  # a changed file must be read again
    found = load_module_pipelines(Path(path))
    out = []
    for p in found.values():
        spec = p.spec
        out.append(
            PipelineInfo(
                name=spec.name,
                file=str(Path(path).resolve()),
                code_hash=spec.code_hash,
                schedule=spec.schedule_text,
                timezone=spec.timezone,
                start_date=spec.start_date.isoformat() if spec.start_date else None,
                catchup=spec.catchup,
                max_active_runs=spec.max_active_runs,
                assets=spec.assets,
                tasks=len(spec.tasks),
                owner=spec.owner,
                tags=spec.tags,
                description=spec.description,
            )
        )
    return tuple(out)


def _parse_one(path: str) -> FileReport:
    started = time.perf_counter()
    try:
        digest = file_digest(path)
        pipelines = describe_pipelines(path)
        return FileReport(path, digest, pipelines, None, time.perf_counter() - started)
    except Exception as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        return FileReport(path, "", (), "".join(lines).strip(), time.perf_counter() - started)


def _worker(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return
        if path is None:
            return
        conn.send(_parse_one(path))


#: how often a parse in progress looks whether the pool is being closed
_CLOSE_POLL = 0.2


class ParserPool:
    """``workers`` processes reading files; a file over ``timeout`` seconds is abandoned and
    its worker replaced. ``parse`` may run on another thread than ``close``: closing stops a
    parse under way (its unread files are reported as not read)."""

    def __init__(self, workers: int = 2, timeout: float = 30.0) -> None:
        self.workers = max(1, workers)
        self.timeout = timeout
        self._procs: list[tuple[Child, Connection]] = []
        self._lock = threading.Lock()  # one parse at a time; close waits for it
        self._closing = threading.Event()

    def _spawn(self) -> tuple[Child, Connection]:
        # it dies with the scheduler, and whatever a file starts at import dies with it
        return start_child(_worker, (), "phloem-parser")

    def parse(self, paths: list[str]) -> list[FileReport]:
        with self._lock:
            if self._closing.is_set():
                return [
                    FileReport(p, "", (), "the scheduler stopped before reading it") for p in paths
                ]
            return self._parse(paths)

    def _parse(self, paths: list[str]) -> list[FileReport]:
        while len(self._procs) < min(self.workers, len(paths)):
            self._procs.append(self._spawn())
        todo = deque(paths)
        busy: dict[Connection, tuple[Child, str, float]] = {}
        idle = list(self._procs)
        reports: list[FileReport] = []
        while todo or busy:
            while todo and idle:
                proc, conn = idle.pop()
                path = todo.popleft()
                conn.send(path)
                busy[conn] = (proc, path, time.monotonic())
            if self._closing.is_set():
                reports += [
                    FileReport(p, "", (), "the scheduler stopped before reading it")
                    for p in [*(path for _, path, _ in busy.values()), *todo]
                ]
                return reports  # close() stops the processes
            deadline = min(started for _, _, started in busy.values()) + self.timeout
            left = max(0.0, deadline - time.monotonic())
            ready = wait(list(busy), min(left, _CLOSE_POLL))
            for ready_conn in ready:
                c: Connection = ready_conn  # type: ignore[assignment]
                proc, path, _ = busy.pop(c)
                try:
                    reports.append(c.recv())
                    idle.append((proc, c))
                except (EOFError, OSError):
                    reports.append(FileReport(path, "", (), _death(proc)))
                    self._replace(proc, c, idle)
            now = time.monotonic()
            for conn, (proc, path, started) in list(busy.items()):
                if now - started >= self.timeout:
                    busy.pop(conn)
                    reports.append(
                        FileReport(
                            path,
                            "",
                            (),
                            f"reading it took longer than {self.timeout:g}s (does it do work at "
                            "import time? move that into a task); it was stopped",
                        )
                    )
                    self._replace(proc, conn, idle)
        return reports

    def _replace(self, proc: Child, conn: Connection, idle: list[tuple[Child, Connection]]) -> None:
        proc.stop()
        conn.close()
        self._procs = [(p, c) for p, c in self._procs if p is not proc]
        fresh = self._spawn()
        self._procs.append(fresh)
        idle.append(fresh)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self._close()

    def _close(self) -> None:
        for _, conn in self._procs:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc, conn in self._procs:
            proc.join(1)
            proc.stop()
            conn.close()
        self._procs = []


def _death(proc: Child) -> str:
    """Why a parser process stopped answering: its exit code or signal, once it is reaped
    (right after its pipe closes the process may not have been reaped yet)."""
    proc.join(2)
    code = proc.exitcode
    if code is None:
        return "the process reading it stopped answering; it was stopped"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the process reading it was killed by {name}"
    return f"the process reading it exited with code {code} while importing the file"
