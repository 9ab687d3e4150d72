"""Every failure of a task is a failed task, with its own message, masked: nothing a task does
(a BaseException, a full disk, a value too deep to store, an argument that cannot travel to a
worker, an odd name) crashes its worker or the driver."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import phloem
from attempts import make_attempt
from phloem import pipeline, task
from phloem.artifacts import ArtifactStore
from phloem.dsl.spec import TaskSpec
from phloem.runner import Attempt, Result, run_attempt
from phloem.runner.capture import OutputCapture
from phloem.runner.failures import WorkerShutdown
from phloem.runner.logs import AttemptLog, log_path
from phloem.states import RunState, TaskState
from phloem.variables import close_stores

EXECUTORS = ["inline", "local"]
SECRET = "pw-" + os.urandom(6).hex()


class Custom(BaseException):
    """A BaseException that is not phloem's."""


@task
def cancelled() -> None:
    c = phloem.connection("db")
    raise asyncio.CancelledError(f"lost the connection to {c.uri}")


@task
def custom_base() -> None:
    raise Custom("a custom BaseException")


@task
def ctrl_c_by_hand() -> None:
    raise KeyboardInterrupt("raised by the task itself")


@task
def pid() -> int:
    return os.getpid()


pid_after = pid.with_options(name="pid_after", trigger_rule="all_done")


@pipeline
def base_exceptions() -> None:
    pid() >> [cancelled(), custom_base()] >> pid_after()


def _add_connection() -> None:
    from phloem.cli.main import app

    uri = f"postgresql+psycopg://ana:{SECRET}@db.internal:5432/dw"
    assert CliRunner().invoke(app, ["connections", "add", "db", uri]).exit_code == 0


@pytest.mark.parametrize("executor", EXECUTORS)
def test_base_exceptions_fail_their_task_with_a_masked_message(
    executor: str, home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _add_connection()
    try:
        r = phloem.run(base_exceptions, executor=executor, workers=1)
    finally:
        close_stores()
    assert r.task_state("cancelled") is TaskState.FAILED
    assert r.tasks[("cancelled", -1)].error == "CancelledError: lost the connection to ***"
    assert r.tasks[("custom_base", -1)].error == "Custom: a custom BaseException"
    # the worker lived on: the task after the failures ran in the same process
    assert r.output("pid_after") == r.output("pid")
    log = next((home / "logs" / r.run_id).glob("cancelled.1.log")).read_text()
    assert "Traceback" in log and "CancelledError: lost the connection" in log
    out, err = capfd.readouterr()
    assert SECRET not in log + out + err
    assert "Traceback" not in err and "exited with code" not in err


@pipeline
def raises_ctrl_c() -> None:
    ctrl_c_by_hand()


def test_a_keyboard_interrupt_raised_by_a_task_in_a_worker_fails_only_that_task(
    home: Path,
) -> None:
    r = phloem.run(raises_ctrl_c, executor="local", workers=1)
    assert r.tasks[("ctrl_c_by_hand", -1)].error == (
        "the task raised KeyboardInterrupt: raised by the task itself"
    )


@task
def deep() -> list:
    value: list = []
    for _ in range(sys.getrecursionlimit() * 3):
        value = [value]
    return value


@pipeline
def too_deep() -> None:
    pid() >> deep() >> pid_after()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_an_output_too_deep_to_store_fails_its_task_for_good(executor: str, home: Path) -> None:
    r = phloem.run(too_deep, executor=executor, workers=1)
    ti = r.tasks[("deep", -1)]
    assert ti.state is TaskState.FAILED and ti.try_number == 1
    assert ti.error is not None
    assert ti.error.startswith("the output of task 'deep' is nested too deeply to store")
    assert r.output("pid_after") == r.output("pid")


# -- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs); skipped where this process may not mount one."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tiny filesystem needs root on Linux")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@task
def big() -> bytes:
    return os.urandom(256 * 1024)


@pipeline
def fills_the_disk() -> None:
    pid() >> big() >> pid_after()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_full_artifact_disk_fails_the_task_and_the_worker_lives_on(
    executor: str, home: Path, tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHLOEM_ARTIFACTS_URL", str(tiny_disk / "artifacts"))
    r = phloem.run(fills_the_disk, executor=executor, workers=1)
    ti = r.tasks[("big", -1)]
    assert ti.state is TaskState.FAILED
    assert ti.error is not None
    assert ti.error.startswith("cannot store the output of task 'big': ")
    assert "No space left on device" in ti.error
    assert r.output("pid_after") == r.output("pid")


def test_a_log_that_cannot_be_written_never_fails_the_attempt(tmp_path: Path) -> None:
    log = AttemptLog("/dev/full", None)
    log.write(b"hello\n")
    log.note("and a note")
    log.close()
    assert log.problem is not None and "No space left on device" in log.problem


# -- odd names -------------------------------------------------------------------------------


def test_log_paths_escape_what_a_file_name_cannot_hold(tmp_path: Path) -> None:
    p = Path(log_path(tmp_path, "r1", "a\x00b/c\nd", 3, 1))
    assert p.parent == tmp_path / "r1"
    assert p.name == "a%00b%2Fc%0Ad[3].1.log"
    assert log_path(tmp_path, "r1", "plain", -1, 2).endswith("plain.2.log")


@task
def chatty() -> str:
    print("hello")
    raise ValueError("bad \x00 value")


@pipeline
def one_chatty() -> None:
    chatty()


def _attempt(tmp_path: Path, pipeline: str, task_id: str) -> Attempt:
    return make_attempt(tmp_path, pipeline, task_id)


def _run_directly(tmp_path: Path, spec: TaskSpec, attempt: Attempt, **kw: Any) -> Result:
    capture = OutputCapture(sticky=False)
    try:
        return run_attempt(attempt, spec, ArtifactStore(str(tmp_path / "a")), capture=capture, **kw)
    finally:
        capture.close()


def test_an_attempt_with_a_nul_in_its_name_runs_and_fails_cleanly(tmp_path: Path) -> None:
    spec = one_chatty.spec.tasks["chatty"]
    result = _run_directly(tmp_path, spec, _attempt(tmp_path, "one_chatty", "cha\x00tty"))
    assert result.outcome == "failed"
    assert result.error == "ValueError: bad \\x00 value"  # storable on PostgreSQL too
    text = (tmp_path / "r1" / "cha%00tty.1.log").read_text()
    assert text.startswith("hello\n") and "ValueError: bad" in text


# -- arguments that cannot travel to a worker ------------------------------------------------


@task
def apply(f: object, x: int) -> int:
    return f(x)  # type: ignore[operator]


@task
def holds(lock: object) -> str:
    return type(lock).__name__


@pipeline
def with_a_lambda() -> None:
    apply(lambda x: x * 2, 21)


@pipeline
def with_a_lock() -> None:
    holds(threading.Lock())
    pid()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_lambda_argument_reaches_the_task(executor: str, home: Path) -> None:
    r = phloem.run(with_a_lambda, executor=executor)
    assert r.state is RunState.SUCCESS and r.output("apply") == 42


def test_an_argument_that_cannot_be_sent_fails_its_task_clearly(home: Path) -> None:
    r = phloem.run(with_a_lock, executor="local", workers=1)
    assert r.state is RunState.FAILED
    ti = r.tasks[("holds", -1)]
    assert ti.state is TaskState.FAILED and ti.try_number <= 1
    assert ti.error is not None
    assert ti.error.startswith("the arguments of task 'holds' cannot be sent to a worker process")
    assert "executor='inline'" in ti.error
    assert r.task_state("pid") is TaskState.SUCCESS


def _explode() -> None:
    raise ValueError("this value cannot be rebuilt here")


class RebuildsBadly:
    """Pickles fine, fails when a worker unpickles it."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_explode, ())


@pipeline
def with_a_bad_rebuild() -> None:
    holds(RebuildsBadly())
    pid()


def test_an_argument_a_worker_cannot_unpickle_fails_its_task_and_the_worker_lives_on(
    home: Path,
) -> None:
    r = phloem.run(with_a_bad_rebuild, executor="local", workers=1)
    ti = r.tasks[("holds", -1)]
    assert ti.state is TaskState.FAILED
    assert ti.error is not None
    assert ti.error.startswith("the attempt could not be received by its worker process")
    assert "this value cannot be rebuilt here" in ti.error
    assert r.task_state("pid") is TaskState.SUCCESS


@task
def stops_the_worker() -> None:
    raise WorkerShutdown(0)


@pipeline
def stopping() -> None:
    stops_the_worker()
    ctrl_c_by_hand()


def test_only_phloems_own_stop_passes_the_attempt_boundary(tmp_path: Path) -> None:
    tasks = stopping.spec.tasks
    out_before = os.fstat(1)
    with pytest.raises(WorkerShutdown):
        _run_directly(tmp_path, tasks["stops_the_worker"], _attempt(tmp_path, "s", "stops"))
    with pytest.raises(KeyboardInterrupt):  # inline: the user's Ctrl-C stops the driver
        _run_directly(
            tmp_path, tasks["ctrl_c_by_hand"], _attempt(tmp_path, "s", "c1"), interruptible=True
        )
    failed = _run_directly(tmp_path, tasks["ctrl_c_by_hand"], _attempt(tmp_path, "s", "c2"))
    assert failed.outcome == "failed"
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (out_before.st_dev, out_before.st_ino)
