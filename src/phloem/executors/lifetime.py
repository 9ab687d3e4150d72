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

Every child also closes the owner's ends of the pipes to the other children, so a child
whose owner is gone reads end of file instead of waiting forever. Elsewhere the child is a
plain forked process, killed with its process group.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36
#: the guard's parent-death signal; SIGTERM and SIGHUP ask it to stop
_OWNER_GONE = signal.SIGUSR2
_GUARD_WAITS_FOR = {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, _OWNER_GONE}
#: how often a guard checks its parent even without a signal
_GUARD_POLL = 2.0

# owner-side ends of the pipes to every child, closed in each new child
_owner_ends: weakref.WeakSet[Connection] = weakref.WeakSet()
# one child is forked at a time, so none inherits the child end of another's pipe
_spawn_lock = threading.Lock()


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return fn
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()  # resolved once, before any fork


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) dies. Call it
    right after a fork; a no-op where the call does not exist."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _set_name(name: str) -> None:
    """The name ``ps`` and ``top`` show for this process (15 bytes at most)."""
    if _prctl is not None:
        import ctypes

        _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (read from /proc), parents before their children."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        for kid in children.get(todo.pop(), ()):
            out.append(kid)
            todo.append(kid)
    return out


def kill_tree(root: int) -> None:
    """SIGKILL every process below ``root`` (not ``root`` itself). Without a subreaper, what
    already left the tree (a daemon whose parent exited) is out of reach."""
    for pid in descendants(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


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
                ready, _, _ = select.select([self._report], [], [], 1.0)
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
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                os.kill(self.pid, signal.SIGKILL)
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
    with _spawn_lock:
        mine, theirs = ctx.Pipe(duplex=True)
        _owner_ends.add(mine)
        report_r: int | None = None
        if _prctl is not None:
            report_r, report_w = os.pipe()
            proc = ctx.Process(
                target=_guard,
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
    for c in list(_owner_ends):
        c.close()
    try:
        os.setpgrp()  # a group of its own, so stopping it stops what it started
    except OSError:
        pass
    target(conn, *args)


def _guard(
    owner: int,
    report: int,
    target: Callable[..., object],
    conn: Connection,
    args: tuple[Any, ...],
    name: str,
) -> None:
    """The guard's whole life: start the child, wait, kill the tree, exit as the child did."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _GUARD_WAITS_FOR)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # never SIG_IGN: that would reap for us
    try:
        os.setpgrp()  # out of the terminal's foreground group, like the child below
    except OSError:
        pass
    _set_name("phloem-guard")
    die_with_parent(_OWNER_GONE)
    assert _prctl is not None
    _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.getppid() != owner:  # the owner died before we asked to be told
        os._exit(1)
    for c in list(_owner_ends):
        c.close()
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(report)
        _child(me, mask, target, conn, args, name)
    conn.close()
    try:
        os.write(report, str(pid).encode())
    finally:
        os.close(report)
    status = _watch(owner, pid)
    _reap_tree(me)
    _exit_like(status)


def _watch(owner: int, child: int) -> int | None:
    """Wait for the child to exit (its wait status), or for a stop (None)."""
    while True:
        info = signal.sigtimedwait(_GUARD_WAITS_FOR, _GUARD_POLL)
        if info is None or info.si_signo == _OWNER_GONE:
            if os.getppid() != owner:
                return None  # the owner is dead, not just the thread that forked us
            continue
        if info.si_signo != signal.SIGCHLD:
            return None  # SIGTERM or SIGHUP: asked to stop
        while True:  # reap what exited: the child, or an orphan we adopted
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                break
            if pid == child:
                return status


def _reap_tree(me: int, within: float = 10.0) -> None:
    """Kill everything below this guard and reap it; what a dying process forks at the last
    moment is adopted by the guard and killed in the next round."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        kill_tree(me)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return  # no child left
            if pid == 0:
                break
        time.sleep(0.005)


def _exit_like(status: int | None) -> None:
    if status is None:
        os.kill(os.getpid(), signal.SIGKILL)  # stopped: as if killed, like before guards
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal whose default is to be ignored
    os._exit(os.waitstatus_to_exitcode(status) if status is not None else 1)


def _child(
    guard: int,
    mask: set[int | signal.Signals],
    target: Callable[..., object],
    conn: Connection,
    args: tuple[Any, ...],
    name: str,
) -> None:
    code = 1
    try:
        die_with_parent(signal.SIGKILL)
        if os.getppid() != guard:
            os._exit(1)
        for sig in _GUARD_WAITS_FOR:
            signal.signal(sig, signal.SIG_DFL)  # not the owner's handlers
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _set_name(name)
        # the guard is the daemon: the child may start processes of its own with multiprocessing
        mp.process.current_process()._config.pop("daemon", None)  # type: ignore[attr-defined]
        target(conn, *args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)
