"""Child processes that die with their owner, however the owner dies.

On Linux a child runs below a small guard process (owner -> guard -> child). The guard

- is told by the kernel when its owner dies, even by SIGKILL (``PR_SET_PDEATHSIG``); the
  signal also comes when only the owner's forking *thread* ends, so the guard then checks
  that its parent really changed before acting;
- is a subreaper (``PR_SET_CHILD_SUBREAPER``): whatever the child starts stays below the
  guard, even a command in a new session or a daemon that forked twice;
- kills that whole tree when the child exits, when the owner asks (``Child.stop``), or when
  the owner dies, then exits as the child did (so the owner sees the child's exit code or
  signal). The child gets SIGKILL if its guard dies.

After each unit of work the child may call ``guard.work_done()``: what that work orphaned is
killed before the child goes on. Every child also closes the owner's ends of the pipes to the
other children, so a child whose owner is gone reads end of file instead of waiting forever.
Elsewhere the child is a plain forked process, killed with its process group.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from phloem.executors import guard
from phloem.executors.proctree import GUARDS


class Child:
    """A process started by :func:`start_child`; ``pid`` is its guard's on Linux."""

    def __init__(self, process: Any, report: int | None) -> None:
        self._process = process
        self._guarded = report is not None
        self._report = report  # the guard writes the child's own pid here
        self._child_pid: int | None = None

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def child_pid(self) -> int:
        """The pid of the process running the target (not its guard's)."""
        if self._child_pid is None:
            self._child_pid = self.pid
            if self._report is not None:
                # written by the guard as soon as it forked, and at end of file if the guard
                # died first: the wait is long only for a guard that is slow to be scheduled
                ready, _, _ = select.select([self._report], [], [], 30.0)
                data = os.read(self._report, 32) if ready else b""
                os.close(self._report)
                self._report = None
                if data.strip().isdigit():
                    self._child_pid = int(data)
        return self._child_pid

    @property
    def sentinel(self) -> int:
        return int(self._process.sentinel)

    @property
    def exitcode(self) -> int | None:
        code: int | None = self._process.exitcode
        return code

    def is_alive(self) -> bool:
        return bool(self._process.is_alive())

    def join(self, timeout: float | None = None) -> None:
        self._process.join(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Kill the child and everything it started, and wait for them to be gone."""
        if self._process.is_alive():
            try:
                if self._guarded:
                    os.kill(self.pid, signal.SIGTERM)  # the guard kills the tree, then exits
                else:
                    os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self._process.join(timeout)
        if self._process.is_alive():  # a guard that cannot be woken: take what the group has
            for kill in (os.killpg, os.kill):
                try:
                    kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            self._process.join(1)
        if self._report is not None:
            os.close(self._report)
            self._report = None


def start_child(
    target: Callable[..., object], args: tuple[Any, ...], name: str
) -> tuple[Child, Connection]:
    """Start ``target(conn, *args)`` in a child process that dies with this one; returns the
    child and this side's end of the duplex pipe ``conn``."""
    ctx = mp.get_context("fork")
    with guard.spawn_lock:
        mine, theirs = ctx.Pipe(duplex=True)
        guard.owner_ends.add(mine)
        report_r: int | None = None
        if GUARDS:
            report_r, report_w = os.pipe()
            proc = ctx.Process(
                target=guard.run,
                args=(os.getpid(), report_w, target, theirs, args, name),
                name=name,
                daemon=True,
            )
        else:
            proc = ctx.Process(target=_plain, args=(target, theirs, args), name=name, daemon=True)
        try:
            proc.start()
        finally:
            theirs.close()
            if report_r is not None:
                os.close(report_w)
    return Child(proc, report_r), mine


def _plain(target: Callable[..., object], conn: Connection, args: tuple[Any, ...]) -> None:
    guard.spawn_lock = threading.Lock()  # forked while held
    mp.process.current_process()._config.pop("daemon", None)  # type: ignore[attr-defined]
    for c in list(guard.owner_ends):
        c.close()
    try:
        os.setpgrp()  # a group of its own, so stopping it stops what it started
    except OSError:
        pass
    target(conn, *args)
