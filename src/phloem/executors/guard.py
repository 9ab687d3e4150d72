"""The guard process that keeps one child from outliving its owner (see ``lifetime``).

The guard runs only this code, in one thread, waiting for signals: its child's exit
(SIGCHLD), a stop request (SIGTERM, SIGHUP), its owner's death (the parent-death signal), or
the end of a unit of the child's work (SIGUSR1, from :func:`work_done`). It never runs user
code, so it answers at once even while the child is busy in a C extension.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from phloem.executors.proctree import (
    become_subreaper,
    children_of,
    die_with_parent,
    kill,
    kill_tree,
    set_name,
)

#: the guard's parent-death signal; SIGTERM and SIGHUP ask it to stop
OWNER_GONE = signal.SIGUSR2
#: sent by the child after a unit of work: kill what it orphaned, then answer
WORK_DONE = signal.SIGUSR1
WAITS_FOR = {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, OWNER_GONE, WORK_DONE}
#: how often a guard checks its parent even without a signal
POLL = 2.0

#: the owner's ends of the pipes to every child, closed in each new child so that a child
#: whose owner died reads end of file
owner_ends: weakref.WeakSet[Connection] = weakref.WeakSet()

#: held while a child is forked, so no other inherits the child end of its pipe
spawn_lock = threading.Lock()

#: in a guarded child: (its guard's pid, the end it reads the guard's answers from)
_link: tuple[int, int] | None = None
#: in a guarded child: where the kernel lists the guard's children (kept open: read again
#: from its start after each attempt, no open and close per attempt; None: no such file),
#: and what it says when the child is the only one
_children_fd: int | None = None
_only_me = b""


def work_done() -> None:
    """In a guarded child, after each unit of work (an attempt): the guard kills whatever
    that work orphaned (a daemon, a command left in the background) and answers once they
    are gone, so nothing of it runs beside what comes next. Processes the child still holds
    as its own children (a pool it keeps) are left alone. Elsewhere a no-op."""
    if _link is None:
        return
    guard, answers = _link
    if _children_fd is not None:
        try:
            if os.pread(_children_fd, 64, 0) == _only_me:
                return  # nothing adopted: no need to wake the guard (the usual case)
        except OSError:
            pass  # let the guard look
    try:
        os.kill(guard, WORK_DONE)
        os.read(answers, 1)
    except OSError:
        pass  # the guard is gone; this process is about to be killed too


def run(
    owner: int,
    report: int,
    target: Callable[..., object],
    conn: Connection,
    args: tuple[Any, ...],
    name: str,
) -> None:
    """The guard's whole life: start the child, watch, kill the tree, exit as the child did."""
    global spawn_lock
    spawn_lock = threading.Lock()  # forked while held: the child may start children of its own
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, WAITS_FOR)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # never SIG_IGN: that would reap for us
    try:
        os.setpgrp()  # out of the terminal's foreground group, like the child below
    except OSError:
        pass
    set_name("phloem-guard")
    die_with_parent(OWNER_GONE)
    become_subreaper()
    if os.getppid() != owner:  # the owner died before we asked to be told
        os._exit(1)
    for c in list(owner_ends):
        c.close()
    me = os.getpid()
    answers, answer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(report)
        os.close(answer)
        _child(me, answers, mask, target, conn, args, name)
    os.close(answers)
    conn.close()
    try:
        os.write(report, str(pid).encode())
    finally:
        os.close(report)
    status = None
    try:
        status = _watch(owner, me, pid, answer)
    finally:  # whatever happened here, nothing below the guard outlives it
        _reap_tree(me)
        _exit_like(status)


def _watch(owner: int, me: int, child: int, answer: int) -> int | None:
    """Wait for the child to exit (its wait status), or for a stop (None)."""
    while True:
        info = signal.sigtimedwait(WAITS_FOR, POLL)
        sig = None if info is None else info.si_signo
        if sig is None or sig == OWNER_GONE:
            if os.getppid() != owner:
                return None  # the owner is dead, not just the thread that forked us
        elif sig == WORK_DONE:
            status = _sweep(me, child)
            try:
                os.write(answer, b".")
            except OSError:
                pass  # the child died meanwhile; its SIGCHLD comes next
            if status is not None:
                return status
        elif sig == signal.SIGCHLD:
            status = _reap(child)
            if status is not None:
                return status
        else:
            return None  # SIGTERM or SIGHUP: asked to stop


def _reap(child: int) -> int | None:
    """Reap what exited (orphans we adopted, or the child); the child's status if it did."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == child:
            found = status


def _sweep(me: int, child: int, within: float = 5.0) -> int | None:
    """Kill the orphans this guard adopted (with what they started) and reap them."""
    found = None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        strays = [p for p in children_of(me) if p != child]
        if not strays:
            break
        for pid in strays:
            kill_tree(pid)
            kill(pid)
        status = _reap(child)
        found = status if status is not None else found
        time.sleep(0.001)
    return found


def _reap_tree(me: int, within: float = 10.0) -> None:
    """Kill everything below this guard and reap it; what a dying process forks at the last
    moment is adopted by the guard and killed in the next round.

    The tree is looked for (a scan of every process in /proc: milliseconds on a busy machine,
    while the owner waits for this guard to exit) only while the guard has a child: with none
    (the usual end, the child exited and was reaped) nothing can be below it, as whatever the
    child left behind would have been adopted by the guard."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if children_of(me):  # zombies included: reaped below
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
    answers: int,
    mask: set[int | signal.Signals],
    target: Callable[..., object],
    conn: Connection,
    args: tuple[Any, ...],
    name: str,
) -> None:
    global _link, _children_fd, _only_me
    code = 1
    try:
        die_with_parent(signal.SIGKILL)
        if os.getppid() != guard:
            os._exit(1)
        _link = (guard, answers)
        try:
            children = f"/proc/{guard}/task/{guard}/children"
            _children_fd = os.open(children, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _children_fd = None  # no such file here: the guard looks after every attempt
        _only_me = f"{os.getpid()} ".encode()
        for sig in WAITS_FOR:
            signal.signal(sig, signal.SIG_DFL)  # not the owner's handlers
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        set_name(name)
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
