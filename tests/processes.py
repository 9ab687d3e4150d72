"""Processes that tests start, and what /proc says is still running.

A process a test starts runs in a process group of its own and carries a marker in its
environment. Its descendants inherit the marker (a forked child shares its parent's environment
block, an executed one gets a copy), so they can be found even after they were orphaned and
adopted by init, which a walk over parent ids cannot do. At teardown the group is killed, and
then whatever still carries the marker (a worker that made a group of its own).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER_VAR = "PHLOEM_TEST_PROCESS"


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    state: str
    cmdline: str

    def __str__(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}, state {self.state}): {self.cmdline}"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone meanwhile, or not ours to read
        return None


def _info(pid: int) -> ProcInfo | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ")"
    fields = stat[stat.rindex(b")") + 2 :].split()
    cmd = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").strip()
    return ProcInfo(pid, int(fields[1]), fields[0].decode(), cmd.decode(errors="replace"))


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie nobody reaped runs nothing)."""
    info = _info(pid)
    return info is not None and info.state not in ("Z", "X")


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> list[ProcInfo]:
    """Processes whose chain of parents leads to ``root`` (zombies left out: they run nothing)."""
    infos = [i for i in map(_info, _pids()) if i is not None]
    children: dict[int, list[ProcInfo]] = {}
    for i in infos:
        children.setdefault(i.ppid, []).append(i)
    out: list[ProcInfo] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return [i for i in out if i.state != "Z"]


def carrying(var: str, value: str) -> list[ProcInfo]:
    """Running processes whose environment holds ``var=value`` (zombies left out)."""
    needle = f"{var}={value}".encode()
    me = os.getpid()
    out = []
    for pid in _pids():
        if pid == me:
            continue
        env = _read(f"/proc/{pid}/environ")
        if env is None or needle not in env.split(b"\0"):
            continue
        info = _info(pid)
        if info is not None and info.state != "Z":
            out.append(info)
    return out


def kill_all(procs: Iterable[ProcInfo]) -> None:
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(find: Any, timeout: float) -> list[ProcInfo]:
    """Poll ``find()`` until it returns nothing or ``timeout`` passes; return what is left."""
    deadline = time.monotonic() + timeout
    left = find()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = find()
    return left


class Processes:
    """Start commands in process groups of their own; everything they started dies at
    teardown (the ``processes`` fixture)."""

    def __init__(self) -> None:
        self._started: list[tuple[subprocess.Popen[Any], str]] = []

    def start(
        self,
        args: Sequence[str | Path],
        *,
        env: dict[str, str] | None = None,
        **popen: Any,
    ) -> subprocess.Popen[Any]:
        marker = secrets.token_hex(8)
        full_env = {**(os.environ if env is None else env), MARKER_VAR: marker}
        proc = subprocess.Popen(
            [str(a) for a in args], env=full_env, start_new_session=True, **popen
        )
        self._started.append((proc, marker))
        return proc

    def marker(self, proc: subprocess.Popen[Any]) -> str:
        return next(m for p, m in self._started if p is proc)

    def left_by(self, proc: subprocess.Popen[Any]) -> list[ProcInfo]:
        """``proc`` and every process it started (however orphaned) that still runs."""
        return carrying(MARKER_VAR, self.marker(proc))

    def stop(self, *procs: subprocess.Popen[Any], timeout: float = 30.0) -> None:
        """Ask each of ``procs`` to stop (SIGTERM, all at once); kill the group of any that
        has not stopped within ``timeout``."""
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill(proc)
                proc.wait()

    def _kill(self, proc: subprocess.Popen[Any]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is empty already

    def close(self) -> None:
        for proc, marker in self._started:
            self._kill(proc)
            proc.wait()
            # whatever left the group (workers make groups of their own) goes too
            kill_all(carrying(MARKER_VAR, marker))
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._started.clear()
