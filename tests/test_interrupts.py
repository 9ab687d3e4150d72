"""Ctrl-C and a killed driver leave runs resumable; resuming re-runs nothing that finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import phloem
from phloem.store import SqlStore
from processes import Processes, wait_gone

PIPELINE = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from phloem import pipeline, task

    @task
    def first(counter: str) -> str:
        with open(counter, "a") as fh:
            fh.write("first\\n")
        return "a"

    @task
    def slow(x: str, gate: str) -> str:
        while not Path(gate).exists():
            time.sleep(0.05)
        return x + "b"

    @task
    def last(x: str) -> str:
        return x + "c"

    @pipeline
    def resumable(counter: str = "", gate: str = "") -> None:
        last(slow(first(counter), gate))
    """
)


def _start(
    processes: Processes, tmp_path: Path, home: Path
) -> tuple[subprocess.Popen[str], Path, Path]:
    (tmp_path / "resumable.py").write_text(PIPELINE)
    counter, gate = tmp_path / "counter", tmp_path / "gate"
    code = (
        "import phloem, sys\n"
        f"phloem.run({str(tmp_path / 'resumable.py')!r}, "
        f"params={{'counter': {str(counter)!r}, 'gate': {str(gate)!r}}})\n"
    )
    env = {**os.environ, "PHLOEM_HOME": str(home)}
    proc = processes.start(
        [sys.executable, "-c", code],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc, counter, gate


def _wait_for_state(store: SqlStore, task_id: str, state: str, timeout: float = 20) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = store.list_runs()
        if runs:
            tis = {ti.task_id: ti.state.value for ti in store.load_instances(runs[0].run_id)}
            if tis.get(task_id) == state:
                return runs[0].run_id
        time.sleep(0.05)
    raise AssertionError(f"{task_id} never reached {state}")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_driver_leaves_a_resumable_run(
    how: int, tmp_path: Path, home: Path, processes: Processes
) -> None:
    home.mkdir(parents=True)
    proc, counter, gate = _start(processes, tmp_path, home)
    store = SqlStore(f"sqlite:///{home / 'phloem.db'}")
    run_id = _wait_for_state(store, "slow", "running")
    assert len(processes.left_by(proc)) > 1  # the driver and its workers
    proc.send_signal(how)
    proc.wait(20)
    # however the driver ended, its workers ended with it
    assert wait_gone(lambda: processes.left_by(proc), 20) == []
    if how == signal.SIGINT:
        assert proc.returncode != 0
        # the driver reset what it handed out: nothing claims to be running
        states = {ti.task_id: ti.state.value for ti in store.load_instances(run_id)}
        assert states == {"first": "success", "slow": "scheduled", "last": "pending"}
    assert store.get_run(run_id).state.value == "running"
    gate.write_text("open")
    r = phloem.retry(run_id, store=store, home=home)
    assert r.succeeded and r.output("last") == "abc"
    assert counter.read_text() == "first\n"  # the finished task did not run again
    slow_tries = [a.state for a in store.attempts(run_id, "slow")]
    assert slow_tries == ["interrupted", "success"]
    # every orphaned worker of the killed driver is gone: no attempt still claims to run
    assert all(a.state != "running" for a in store.attempts(run_id))
    json.dumps(r.states())
