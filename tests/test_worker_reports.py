"""What a worker cannot send or receive is reported, never dropped: a result that does not
pickle fails its attempt saying so, an outbox that cannot send any more makes its worker exit
(so the driver sees it die), and a pipeline that cannot be shipped to Ray workers, or
unpickled there, fails its attempts with why (not with "has no task")."""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from attempts import make_attempt
from phloem import pipeline, task
from phloem.dsl.spec import PipelineSpec
from phloem.effects import AttemptUsage, OutputMetadataKept
from phloem.executors.base import Started
from phloem.executors.local import EXIT_OUTBOX_BROKEN, _death_reason, _dumps, _Outbox, _ready
from phloem.runner import Attempt, Result
from phloem.states import AttemptOutcome


@task
def one() -> int:
    return 1


@pipeline
def sourced() -> None:
    one()


def attempt(tmp_path: Path, pipeline: str = "p", source: str | None = None) -> Attempt:
    return make_attempt(tmp_path, pipeline, "one", source=source)


def unsourced(**changes: Any) -> PipelineSpec:
    """``sourced`` as if defined where no file holds it (``python -c``, a notebook)."""
    return dataclasses.replace(sourced.spec, source_file=None, **changes)


# -- the pipe between a driver and its local workers ---------------------------------------------


def test_attempts_and_reports_cross_the_pipe_unchanged(tmp_path: Path) -> None:
    """The hot path's types pickle as their fields (cheaper than dataclasses' own state); every
    field, set or default, comes back equal, and other objects in them pickle as before."""
    a = make_attempt(
        tmp_path,
        args=(1, [2.5]),
        kwargs={"k": {"x": None}},
        params={"p": 1},
        timeout=3.0,
        source="f.py:p",
        owner="me",
        lease_from=1.0,
        heartbeat_ttl=6.0,
        memory_limit=2**30,
        batch=4,
    )
    usage = AttemptUsage(0.25, 2**20, None, 1.5)
    r = Result(
        "r1",
        "t",
        3,
        2,
        AttemptOutcome.SUCCESS,
        1.0,
        2.0,
        output='{"v": 1}',
        map_length=2,
        follow=("a",),
        effects=(usage, OutputMetadataKept("[]", "d", "{}")),
    )
    msgs = [Started("r1", "t", 3, 2, 1.0), r, a, failed_result_for(a)]
    back = pickle.loads(_dumps(msgs))
    assert back == msgs
    assert [type(m) for m in back] == [type(m) for m in msgs]


def failed_result_for(a: Attempt) -> Result:
    from phloem.runner.attempt import failed_result

    return failed_result(a, "boom", started=1.0, ended=2.0, retryable=False)


def test_a_driver_waits_on_its_workers_pipes_with_one_poll() -> None:
    r, w = os.pipe()
    try:
        assert _ready([r], 0) == set()
        os.write(w, b"x")
        assert _ready([r, w], None) >= {r}
        os.close(w)
        os.read(r, 1)
        assert _ready([r], 5) == {r}  # end of file counts: the worker is gone
    finally:
        os.close(r)


# -- the local worker's outbox ------------------------------------------------------------------


def test_a_result_that_does_not_pickle_fails_its_attempt_instead_of_vanishing() -> None:
    here, there = multiprocessing.Pipe()
    broken: list[BaseException] = []
    outbox = _Outbox(there, broken.append)
    try:
        lock = threading.Lock()
        bad = Result("r1", "t", -1, 1, AttemptOutcome.SUCCESS, 1.0, 2.0, follow=(lock,))  # type: ignore[arg-type]
        outbox.put(Started("r1", "t", -1, 1, 1.0))
        outbox.put(bad)  # sent by the outbox's thread, FLUSH_AFTER later
        assert here.poll(60)
        started, failed = here.recv()
        assert started == Started("r1", "t", -1, 1, 1.0)
        assert failed.outcome == AttemptOutcome.FAILED and not failed.retryable
        assert (failed.run_id, failed.task_id, failed.started_at) == ("r1", "t", 1.0)
        assert "could not send this attempt's result to the driver" in failed.error
        assert "cannot pickle '_thread.lock' object" in failed.error
        outbox.put(Started("r1", "t", -1, 2, 3.0))  # the thread is still there
        assert here.poll(60) and here.recv() == [Started("r1", "t", -1, 2, 3.0)]
        assert broken == []
    finally:
        here.close()
        there.close()


class _Refusing:
    """A connection that fails to send for a reason that is not the driver going away."""

    def send(self, msg: Any) -> None:
        raise MemoryError("no room for the message")

    def send_bytes(self, data: Any) -> None:
        raise MemoryError("no room for the message")


def test_an_outbox_that_cannot_send_says_so_instead_of_stopping_silently() -> None:
    called = threading.Event()
    broken: list[BaseException] = []

    def record(exc: BaseException) -> None:
        broken.append(exc)
        called.set()

    outbox = _Outbox(_Refusing(), record)  # type: ignore[arg-type]
    outbox.put(Started("r1", "t", -1, 1, 1.0))
    assert called.wait(60)
    assert isinstance(broken[0], MemoryError)


def test_a_worker_whose_outbox_broke_exits_and_its_driver_says_why(tmp_path: Path) -> None:
    """In a worker, a broken outbox writes why on the worker's stderr and exits with
    EXIT_OUTBOX_BROKEN, which the driver turns into the attempt's error."""
    code = textwrap.dedent(
        """
        from phloem.executors.local import _outbox_broken
        from phloem.runner.capture import OutputCapture
        _outbox_broken(OutputCapture(sticky=True), MemoryError("no room for the message"))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_OUTBOX_BROKEN, done.stderr
    assert "cannot send its reports to the driver and exits: MemoryError: no room" in done.stderr
    why = _death_reason(1234, done.returncode)
    assert "worker process 1234 could not send its reports to the driver" in why
    assert "driver's stderr" in why


# -- Ray: shipping pipelines to workers ---------------------------------------------------------


def test_a_pipeline_that_cannot_be_shipped_to_ray_workers_says_why() -> None:
    from phloem.executors.ray import shipped

    lock = threading.Lock()
    sources, blobs, why = shipped(
        {
            "sourced": sourced.spec,
            "fine": unsourced(name="fine"),
            "p": unsourced(on_success=lambda **_: lock.locked()),
        }
    )
    assert sources == {"sourced": f"{sourced.spec.source_file}:sourced"}
    assert set(blobs) == {"fine"}  # one that fails does not keep the others back
    assert set(why) == {"p"}
    assert "pipeline 'p' could not be shipped to the Ray workers" in why["p"]
    assert "cannot pickle '_thread.lock' object" in why["p"]
    assert "define it at the top level of a .py file" in why["p"]


def test_a_pipeline_a_ray_worker_cannot_unpickle_fails_its_attempts_with_the_cause(
    tmp_path: Path,
) -> None:
    import cloudpickle

    from phloem.executors.rayworker import cannot_load, unpickled

    # a module the driver imports and the worker's Python does not have
    (tmp_path / "phloem_driver_only.py").write_text("def hook(**_):\n    return None\n")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("phloem_driver_only")
        blob = cloudpickle.dumps(unsourced(on_success=module.hook))
    finally:
        sys.path.remove(str(tmp_path))
        del sys.modules["phloem_driver_only"]
    found, why = unpickled({"p": blob, "fine": cloudpickle.dumps(unsourced(name="fine"))})
    assert set(found) == {"fine"} and set(why) == {"p"}
    assert "pipeline 'p' could not be unpickled on the Ray worker" in why["p"]
    assert "No module named 'phloem_driver_only'" in why["p"]
    loaded = {(name, None): spec for name, spec in found.items()}
    failed = cannot_load(attempt(tmp_path), loaded, why)
    assert failed is not None and failed.outcome == AttemptOutcome.FAILED
    assert failed.error == why["p"] and "has no task" not in failed.error
    assert cannot_load(attempt(tmp_path, "fine"), loaded, why) is None
    # an attempt that carries its source loads it from there instead
    assert cannot_load(attempt(tmp_path, source="flow.py:p"), loaded, why) is None
