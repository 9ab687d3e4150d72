"""What a task writes, at the Python level or the file-descriptor level, lands in its attempt's
log, masked and capped, and never in the driver's stdout; ``sys.stdout`` is a real file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import phloem
from phloem import pipeline, task
from phloem.runner.logs import AttemptLog
from phloem.secrets import Masker, register
from phloem.states import TaskState

EXECUTORS = ["inline", "local"]
SECRET = "hush-" + os.urandom(6).hex()


@task
def fd_level(secret: str) -> int:
    register(secret)
    print(f"1 print {secret}", flush=True)
    os.write(1, f"2 os.write(1) {secret}\n".encode())
    os.write(2, f"3 os.write(2) {secret}\n".encode())
    os.system(f"echo 4 os.system {secret}")
    subprocess.run(["sh", "-c", f"echo 5 inherited {secret}; echo 6 inherited-err >&2"])
    sys.stderr.write("7 sys.stderr\n")
    return 1


@pipeline
def fd_output(secret: str = "") -> None:
    fd_level(secret)


def _log(home: Path, run_id: str, name: str) -> bytes:
    return next((home / "logs" / run_id).glob(name)).read_bytes()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_fd_level_output_lands_in_the_attempt_log_masked_and_in_order(
    executor: str, home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    r = phloem.run(fd_output, params={"secret": SECRET}, executor=executor)
    assert r.task_state("fd_level") is TaskState.SUCCESS
    lines = _log(home, r.run_id, "fd_level.1.log").decode().splitlines()
    assert lines == [
        "1 print ***",
        "2 os.write(1) ***",
        "3 os.write(2) ***",
        "4 os.system ***",
        "5 inherited ***",
        "6 inherited-err",
        "7 sys.stderr",
    ]
    out, err = capfd.readouterr()
    assert "os.write" not in out + err and "inherited" not in out + err


@task
def real_files() -> dict:
    sys.stdout.buffer.write(b"raw \xff bytes\n")
    sys.stdout.buffer.flush()
    subprocess.run(["echo", "child to sys.stdout"], stdout=sys.stdout, check=True)
    subprocess.run(["sh", "-c", "echo child to sys.stderr >&2"], stderr=sys.stderr, check=True)
    return {
        "out": sys.stdout.fileno(),
        "err": sys.stderr.fileno(),
        "encoding": sys.stdout.encoding,
        "writable": sys.stdout.writable(),
    }


@pipeline
def real_streams() -> None:
    real_files()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sys_stdout_is_a_real_text_file(executor: str, home: Path) -> None:
    r = phloem.run(real_streams, executor=executor)
    assert r.task_state("real_files") is TaskState.SUCCESS, r.tasks[("real_files", -1)].error
    assert r.output("real_files") == {"out": 1, "err": 2, "encoding": "utf-8", "writable": True}
    log = _log(home, r.run_id, "real_files.1.log")
    assert log == b"raw \xff bytes\nchild to sys.stdout\nchild to sys.stderr\n"


FD_PIPELINE = """
import os
from phloem import pipeline, task

@task
def noisy():
    os.system("echo from-a-shell")
    os.write(1, b"from-os-write\\n")
    print("from-print")
    return 7

@pipeline
def p():
    noisy()
"""


def _phloem() -> str:
    exe = Path(sys.executable).with_name("phloem")
    return str(exe) if exe.exists() else (shutil.which("phloem") or "phloem")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_phloem_run_json_stdout_stays_pure_of_what_the_file_prints_at_import(
    executor: str, home: Path, tmp_path: Path
) -> None:
    src = tmp_path / "chatty.py"
    src.write_text('import os\nprint("importing")\nos.write(1, b"fd-at-import\\n")\n' + FD_PIPELINE)
    env = {**os.environ, "PHLOEM_HOME": str(home)}
    done = subprocess.run(
        [_phloem(), "run", f"{src}:p", "--executor", executor, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "success"  # nothing before the JSON
    assert "importing" in done.stderr and "fd-at-import" in done.stderr  # not lost either


@pytest.mark.parametrize("executor", EXECUTORS)
def test_phloem_run_json_stdout_stays_pure(executor: str, home: Path, tmp_path: Path) -> None:
    src = tmp_path / "noisy.py"
    src.write_text(FD_PIPELINE)
    env = {**os.environ, "PHLOEM_HOME": str(home)}
    done = subprocess.run(
        [_phloem(), "run", f"{src}:p", "--executor", executor, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)  # nothing before or after the JSON
    assert record["state"] == "success"
    assert "from-" not in done.stderr
    log = _log(home, record["run_id"], "noisy.1.log").decode()
    assert log.splitlines() == ["from-a-shell", "from-os-write", "from-print"]


# -- the log cap -----------------------------------------------------------------------------


@task
def floods(n: int) -> None:
    chunk = "x" * 99 + "\n"
    for _ in range(n // 100):
        sys.stdout.write(chunk)
    os.write(1, b"y" * n)
    raise RuntimeError("after the flood")


@pipeline
def flood(n: int = 10_000) -> None:
    floods(n)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_log_is_capped_with_a_marker_and_keeps_the_failure(
    executor: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHLOEM_LOG_MAX_BYTES", "5000")
    r = phloem.run(flood, executor=executor)
    assert r.tasks[("floods", -1)].error == "RuntimeError: after the flood"
    log = _log(home, r.run_id, "floods.1.log").decode()
    head, marker, rest = log.partition("\n[phloem: log truncated")
    assert marker and len(head) == 5000 and head.startswith("x" * 99 + "\n")
    assert "(PHLOEM_LOG_MAX_BYTES); the rest is dropped]" in rest
    assert "RuntimeError: after the flood" in rest  # the reason is never cut off
    assert "[phloem: 14.6 KiB more output of this attempt was dropped" in rest
    assert len(log) < 7000


def test_a_bad_log_limit_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHLOEM_LOG_MAX_BYTES", "lots")
    with pytest.raises(phloem.PhloemError, match="PHLOEM_LOG_MAX_BYTES='lots' is not valid"):
        phloem.run(flood, executor="inline")


def test_masking_finds_a_secret_split_between_reads(tmp_path: Path) -> None:
    masker = Masker(["s3cr3t-value"])
    log = AttemptLog(str(tmp_path / "a.log"), masker)
    for piece in (b"one s3cr", b"3t-val", b"ue two\nand \xff s3cr3t-value", b" end"):
        log.write(piece)
    masker.add("later-one")  # learnt during the attempt: masked from then on
    log.write(b"\nlater-one\n")
    log.note("a note with s3cr3t-value")
    log.close()
    assert (tmp_path / "a.log").read_bytes() == (
        b"one *** two\nand \xff *** end\n***\na note with ***\n"
    )


def test_a_silent_attempt_makes_no_file(tmp_path: Path) -> None:
    log = AttemptLog(str(tmp_path / "r" / "a.log"), Masker())
    log.close()
    assert not (tmp_path / "r").exists()


def test_phloem_logs_streams_the_bytes_as_written(home: Path) -> None:
    from typer.testing import CliRunner

    from phloem.cli.main import app

    r = phloem.run(real_streams, executor="inline")
    out = CliRunner().invoke(app, ["logs", r.run_id, "real_files"])
    assert out.exit_code == 0, out.output
    assert out.stdout_bytes == b"raw \xff bytes\nchild to sys.stdout\nchild to sys.stderr\n"


@task
def closes_its_fds() -> None:
    print("before", flush=True)
    sys.stdout.close()
    sys.stderr.close()
    os.close(1)
    os.close(2)


@task
def prints_after() -> None:
    os.write(1, b"still captured\n")
    print("and printed")


@pipeline
def closed_fds() -> None:
    closes_its_fds() >> prints_after()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_task_that_closes_its_fds_does_not_blind_the_next(executor: str, home: Path) -> None:
    r = phloem.run(closed_fds, executor=executor, workers=1)
    # (the race behind an occasional failure here is made certain in the next test)
    why = [(a.task_id, a.try_number, a.state, a.error) for a in r.app.store.attempts(r.run_id)]
    assert r.task_state("prints_after") is TaskState.SUCCESS, why
    assert _log(home, r.run_id, "closes_its_fds.1.log") == b"before\n"
    assert _log(home, r.run_id, "prints_after.1.log") == b"still captured\nand printed\n"


RACE = """
import os, sys, time
from phloem.runner.capture import OutputCapture
from phloem.runner.logs import AttemptLog

sticky = sys.argv[2] == "sticky"
before = os.fstat(1)
cap = OutputCapture(sticky=sticky)
first = AttemptLog(os.path.join(sys.argv[1], "first.log"))
with cap.attempt(first):
    with cap._lock:  # the reader meets the first byte only once fds 1 and 2 are closed
        print("before", flush=True)
        sys.stdout.close(), sys.stderr.close()
        os.close(1), os.close(2)
    while first._fd is None:  # the reader opens the log now, at the lowest free number
        time.sleep(0.01)
first.close()
second = AttemptLog(os.path.join(sys.argv[1], "second.log"))
with cap.attempt(second):
    os.write(1, b"still captured\\n")
    print("and printed")
second.close()
cap.detach()
after = os.fstat(1)
if not sticky:
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino), "stdout lost"
"""


@pytest.mark.parametrize("mode", ["sticky", "switched"])
def test_a_log_opened_after_the_task_closed_its_fds_does_not_take_their_number(
    mode: str, tmp_path: Path
) -> None:
    """The log is opened on the attempt's first byte, by the capture's reader thread: after
    the task printed and closed fds 1 and 2, the log took number 1; the attempt's end pointed
    fd 1 back at the pipe (or the driver's stdout) over it, and closing the log closed fd 1,
    so the next attempt's output had nowhere to go (EBADF)."""
    done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path), mode],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert (tmp_path / "first.log").read_bytes() == b"before\n"
    assert (tmp_path / "second.log").read_bytes() == b"still captured\nand printed\n"
