"""``phloem.tasks.shell``: a task that runs a command, its output streamed into the attempt log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import Any, TextIO

from phloem.dsl.options import TaskOptions
from phloem.dsl.refs import TaskRef
from phloem.dsl.task import Task
from phloem.errors import CommandFailed, PhloemError
from phloem.executors.proctree import die_with_parent, kill_tree
from phloem.templating import render

#: How many trailing lines of stderr go into the one-line error of a failed command.
ERROR_TAIL_LINES = 3
_CAPTURE = ("last", "all", "none")


def shell(
    command: str | list[Any] | TaskRef,
    *,
    env: dict[str, Any] | None = None,
    cwd: str | None = None,
    capture: str = "last",
    name: str | None = None,
    **task_options: Any,
) -> TaskRef:
    """Add a task that runs ``command`` (call it inside a ``@pipeline`` body).

    A string runs through ``/bin/sh -c``; a list runs as is. ``env`` adds variables to the
    inherited environment (values may be other tasks' outputs). Stdout and stderr stream into
    the attempt log. A non-zero exit fails the task with the exit code and the last lines of
    stderr. The output is the last line of stdout (``capture="last"``), a dict of
    ``returncode``/``stdout``/``stderr`` (``"all"``), or None (``"none"``). Placeholders such as
    ``{ds}``, ``{params.x}`` or ``{conn.db.host}`` in the command, ``env`` values and ``cwd``
    are filled when the task runs (see ``phloem.templating``). Other keywords are
    task options (``retries=``, ``timeout=``, ...); the task is named ``shell`` unless ``name``.
    """
    if capture not in _CAPTURE:
        raise PhloemError(f"shell(capture={capture!r}): use one of {', '.join(_CAPTURE)}")
    t = _SHELL
    if name is not None:
        task_options["name"] = name
    if task_options:
        t = t.with_options(**task_options)
    return t(command, env=env, cwd=cwd, capture=capture)


def run_command(
    command: str | list[Any],
    env: dict[str, Any] | None = None,
    cwd: str | None = None,
    capture: str = "last",
) -> Any:
    """The body of a shell task (callable directly, e.g. in a unit test)."""
    if isinstance(command, str):
        argv = ["/bin/sh", "-c", render(command)]
    else:
        argv = [render(str(a)) for a in command]
    if not argv:
        raise PhloemError("shell task: the command is empty")
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update({str(k): render(_env_value(v)) for k, v in env.items() if v is not None})
    out, err = sys.stdout, sys.stderr  # the attempt log while a task runs
    lock = threading.Lock()
    tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
    stderr_all: list[str] = []
    stdout_all: list[str] = []
    last: list[str] = []

    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=render(cwd) if cwd else None,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,  # so a timeout can stop the whole process group
        preexec_fn=die_with_parent,  # the command dies with the worker running it
    )

    def pump_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            _write(out, line, lock)
            if line.strip():
                last[:] = [line.rstrip("\n")]
            if capture == "all":
                stdout_all.append(line)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            _write(err, line, lock)
            stripped = line.rstrip("\n")
            if stripped.strip():
                tail.append(stripped.strip())
            if capture == "all":
                stderr_all.append(line)

    readers = [
        threading.Thread(target=pump, daemon=True, name="phloem-shell-output")
        for pump in (pump_stdout, pump_stderr)
    ]
    for reader in readers:
        reader.start()
    try:
        returncode = proc.wait()
        # what the command left in the background (``cmd &``) would hold the pipes open, and
        # the task with them, for as long as it runs: it ends with the command
        _kill_group(proc.pid)
        for reader in readers:
            reader.join()
    except BaseException:  # a timeout or an interrupt: do not leave the command running
        _kill(proc)
        raise
    # both readers saw the end of their pipe (closing one a reader still reads would wait
    # for that read: not on the way out of a timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    if returncode != 0:
        how = (
            f"was killed by signal {-returncode}"
            if returncode < 0
            else f"exited with code {returncode}"
        )
        detail = f": {' | '.join(tail)}" if tail else ""
        raise CommandFailed(f"command {how}{detail}", returncode, list(tail))
    if capture == "all":
        return {"returncode": 0, "stdout": "".join(stdout_all), "stderr": "".join(stderr_all)}
    if capture == "none":
        return None
    return last[0] if last else None


def _write(stream: TextIO, line: str, lock: threading.Lock) -> None:
    with lock:
        stream.write(line if line.endswith("\n") else line + "\n")
        stream.flush()


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return json.dumps(value, default=str)


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill the command and what it started: its process group, and what left the group
    (a subprocess in a session of its own) as long as its parent still lives."""
    kill_tree(proc.pid)
    _kill_group(proc.pid)
    proc.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_SHELL: Task[Any, Any] = Task(run_command, TaskOptions(name="shell"))
