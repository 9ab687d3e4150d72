"""Process-tree primitives on Linux: parent-death signals, subreapers, names, and the tree
below a process as ``/proc`` shows it. Elsewhere the ``prctl`` calls are no-ops."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36


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

#: whether children can be guarded here (a parent-death signal and a subreaper)
GUARDS = _prctl is not None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) dies. Call it
    right after a fork."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def become_subreaper() -> None:
    """Orphans below this process are adopted by it, not by init."""
    if _prctl is not None:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def set_name(name: str) -> None:
    """The name ``ps`` and ``top`` show for this process (15 bytes at most)."""
    if _prctl is not None:
        import ctypes

        _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def _parents() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    return children


def children_of(pid: int) -> list[int]:
    """The direct children of single-threaded ``pid`` (zombies included): one small read
    where the kernel offers it, a scan of /proc otherwise."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return _parents().get(pid, [])


def descendants(root: int) -> list[int]:
    """Every process below ``root``, parents before their children."""
    children = _parents()
    out: list[int] = []
    todo = [root]
    while todo:
        for kid in children.get(todo.pop(), ()):
            out.append(kid)
            todo.append(kid)
    return out


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(root: int) -> None:
    """SIGKILL every process below ``root`` (not ``root`` itself). Without a subreaper, what
    already left the tree (a daemon whose parent exited) is out of reach."""
    for pid in descendants(root):
        kill(pid)
