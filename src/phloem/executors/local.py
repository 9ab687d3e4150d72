"""Long-lived worker processes on this machine.

Workers are forked once (the pipeline code is already imported, so no per-task import or
interpreter start) and each runs one attempt at a time, so a crash, hang or timeout of one
attempt is pinned on that attempt and never takes the run down: the worker is killed and
replaced, and the engine decides what the failure means. Each worker runs below a guard
(see ``lifetime``): whatever its attempts start dies with the worker, and the worker dies with
the driver, however either ends.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from phloem.artifacts import ArtifactStore
from phloem.dsl.spec import PipelineSpec
from phloem.effects import AttemptUsage
from phloem.executors.base import Report, Started
from phloem.executors.fencing import Fence, Stop
from phloem.executors.guard import work_done
from phloem.executors.lifetime import Child, start_child
from phloem.executors.preload import imported_in_tasks, preload
from phloem.executors.threads import ThreadBudget
from phloem.runner import Attempt, Result
from phloem.runner.attempt import failed_result
from phloem.runner.logs import DEFAULT_LOG_MAX_BYTES
from phloem.runner.usage import UsageMeter, memory_limit

if TYPE_CHECKING:
    from phloem.artifacts import ArtifactStore
    from phloem.runner.capture import OutputCapture


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A worker could not unpickle the next attempt sent to it (it answers in order, so the
    driver knows which one: the oldest it has not answered)."""

    error: str


@dataclass
class _Worker:
    process: Child
    conn: Connection
    #: attempts sent to this worker, in order; the first is the one running
    sent: deque[Attempt] = field(default_factory=deque)
    #: attempts it reported as started (a death before that costs the attempt no try)
    started: set[tuple[str, str, int, int]] = field(default_factory=set)


class LocalExecutor:
    """``workers`` processes, each sent up to ``prefetch`` attempts so it never idles while
    the driver commits the previous result."""

    def __init__(
        self, workers: int = 2, prefetch: int = 2, *, log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    ) -> None:
        if workers < 1:
            raise ValueError("a local executor needs at least one worker")
        self.workers = workers
        self.prefetch = max(1, prefetch)
        self.log_max_bytes = log_max_bytes
        self.slots = workers * self.prefetch
        self._workers: list[_Worker] = []
        self._queue: deque[Attempt] = deque()
        self._pipelines: Mapping[str, PipelineSpec] = {}
        self._artifacts: ArtifactStore | None = None
        self._preload: list[str] | None = None
        self._reports: list[Report] = []
        self._killed: set[tuple[str, str, int, int]] = set()

    def start(self, pipelines: Mapping[str, PipelineSpec], artifacts: ArtifactStore) -> None:
        self._pipelines = pipelines
        self._artifacts = artifacts
        self._preload = imported_in_tasks(pipelines)

    def _spawn(self) -> _Worker:
        if self._preload is not None:
            # once, before the first worker forks (every worker inherits it); a run whose
            # tasks all come from the cache starts no worker and imports nothing
            modules, self._preload = self._preload, None
            preload(modules)
        process, conn = start_child(
            _worker_main,
            (self._pipelines, self._artifacts, self.log_max_bytes),
            "phloem-worker",
        )
        worker = _Worker(process, conn)
        self._workers.append(worker)
        return worker

    def submit(self, attempt: Attempt) -> None:
        self._queue.append(attempt)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue:
            idle = min(self._workers, key=lambda w: len(w.sent), default=None)
            if idle is None or (idle.sent and len(self._workers) < self.workers):
                idle = self._spawn()
            elif len(idle.sent) >= self.prefetch:
                return
            attempt = self._queue.popleft()
            if (attempt.run_id, attempt.task_id, attempt.map_index, attempt.try_number) in (
                self._killed
            ):
                continue
            data, problem = _pickled(attempt)
            if data is None:
                self._reports.append(failed_result(attempt, problem, retryable=False))
                continue
            idle.sent.append(attempt)
            try:
                idle.conn.send_bytes(data)
            except (BrokenPipeError, OSError):
                self._lost(idle, "its worker process could not be reached")

    def kill(self, run_id: str, task_id: str, map_index: int, try_number: int, reason: str) -> None:
        target = (run_id, task_id, map_index, try_number)
        self._killed.add(target)  # never (re)sent, even if taken back from another worker
        self._queue = deque(
            a for a in self._queue if (a.run_id, a.task_id, a.map_index, a.try_number) != target
        )
        for w in list(self._workers):
            ids = [(a.run_id, a.task_id, a.map_index, a.try_number) for a in w.sent]
            if ids and ids[0] == target:
                self._lost(w, None)
            # an attempt sent but not started yet cannot be un-sent; if it runs, its report
            # is stale (the engine already decided) and is ignored

    def _terminate(self, w: _Worker) -> None:
        # everything its attempt started goes with it, even in a new session or daemonized
        w.process.stop()
        w.conn.close()
        self._workers.remove(w)

    def _lost(self, w: _Worker, why: str | None) -> None:
        """Kill ``w``; its running attempt fails with ``why`` (None: the engine already
        decided), and attempts it had not started go back to the queue."""
        sent = list(w.sent)
        self._terminate(w)
        if not sent:
            return
        head, rest = sent[0], sent[1:]
        if (head.run_id, head.task_id, head.map_index, head.try_number) not in w.started:
            rest = sent  # it died before starting any of them: they all go to another worker
        elif why is not None:
            self._reports.append(failed_result(head, why))
        self._queue.extendleft(reversed(rest))

    def wait(self, timeout: float | None, wake: Sequence[Any] = ()) -> list[Report]:
        self._dispatch()  # attempts taken back from a killed worker go out again
        reports, self._reports = self._reports, []
        busy = [w for w in self._workers if w.sent]
        if not busy:
            if not reports and timeout:
                if wake:
                    wait(list(wake), min(timeout, 1.0))
                else:
                    time.sleep(min(timeout, 1.0))
            return reports
        by_conn = {w.conn: w for w in busy}
        by_sentinel = {w.process.sentinel: w for w in busy}
        ready = wait([*by_conn, *by_sentinel, *wake], 0 if reports else timeout)
        for obj in ready:
            w = by_conn.get(obj)  # type: ignore[call-overload]
            if w is not None:
                self._drain(w, reports)
        for obj in ready:
            w = by_sentinel.get(obj) if isinstance(obj, int) else None
            if w is not None and w in self._workers:
                self._drain(w, reports)
                if w.sent:
                    w.process.join(1)
                    code = w.process.exitcode
                    self._lost(w, _death_reason(w.sent[0], w.process.child_pid, code))
        reports.extend(self._reports)
        self._reports = []
        self._dispatch()
        return reports

    def _drain(self, w: _Worker, out: list[Report]) -> None:
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if isinstance(msg, _Unreadable):
                    if not w.sent:
                        continue
                    msg = failed_result(w.sent[0], msg.error, retryable=False)
                out.append(msg)
                if isinstance(msg, Started):
                    w.started.add((msg.run_id, msg.task_id, msg.map_index, msg.try_number))
                elif isinstance(msg, Result):
                    done = (msg.run_id, msg.task_id, msg.map_index, msg.try_number)
                    for a in w.sent:
                        if (a.run_id, a.task_id, a.map_index, a.try_number) == done:
                            w.sent.remove(a)
                            w.started.discard(done)
                            break
        except (EOFError, OSError):
            return

    def shutdown(self) -> None:
        self._queue.clear()
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.time() + 2
        for w in list(self._workers):
            w.process.join(max(0.0, deadline - time.time()))
            w.process.stop()  # and whatever its attempts left running
            w.conn.close()
        self._workers.clear()


def _death_reason(a: Attempt, pid: int, code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (killed, possibly by the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"worker process {pid} died from {name}{extra} while running this attempt"
    return f"worker process {pid} exited with code {code} while running this attempt"


class _Outbox:
    """The pipe to the driver, shared by the attempt loop and the fence's threads."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, msg: Any) -> None:
        with self.lock:
            self.conn.send(msg)


def _stopper(outbox: _Outbox, running: Callable[[Attempt], bool]) -> Stop:
    """What the fence calls when an attempt must not run on: report why (unless the pipe is
    stuck behind a frozen driver) and SIGKILL this worker and its process group; its guard
    (see ``lifetime``) kills whatever else the attempt started."""

    def stop(a: Attempt, reason: str) -> None:
        if outbox.lock.acquire(timeout=0.1):  # kept: nothing is sent after this
            if not running(a):  # it ended meanwhile: nothing to stop
                outbox.lock.release()
                return
            with contextlib.suppress(Exception):
                outbox.conn.send(failed_result(a, reason))
        pid = os.getpid()
        try:
            if os.getpgrp() == pid:
                os.killpg(pid, signal.SIGKILL)
        finally:
            os.kill(pid, signal.SIGKILL)

    return stop


def _reload(source: str) -> PipelineSpec:
    from phloem.loading import reload_pipeline

    return reload_pipeline(source).spec


def _worker_main(
    conn: Connection,
    pipelines: Mapping[str, PipelineSpec],
    artifacts: ArtifactStore | None,
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
) -> None:
    from phloem.runner.capture import OutputCapture

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    # fds 1 and 2 go to the running attempt's log from now on, never to the driver's stdout
    capture = OutputCapture(sticky=True)
    if artifacts is None:
        raise RuntimeError("a worker was started before its executor (start() gives artifacts)")
    budget = ThreadBudget()
    meter = UsageMeter()
    # specs by (pipeline, code version): a run made with older code reloads once, not per task
    loaded: dict[tuple[str, str | None], PipelineSpec] = {
        (name, None): spec for name, spec in pipelines.items()
    }
    inbox: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        """Drain the pipe all the time: a driver sending a large attempt must never block
        while this worker is sending it a large result (a deadlock otherwise)."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                inbox.put(None)
                return
            except Exception as exc:  # an attempt that cannot be unpickled here
                msg = _Unreadable(
                    f"the attempt could not be received by its worker process: {exc!r}"
                )
            inbox.put(msg)
            if msg is None:
                return

    threading.Thread(target=read, name="phloem-worker-inbox", daemon=True).start()
    outbox = _Outbox(conn)
    fence = Fence(_stopper(outbox, lambda a: fence.running(a)))
    try:
        while True:
            msg = inbox.get()
            if msg is None:
                return
            if isinstance(msg, _Unreadable):
                outbox.send(msg)
                continue
            result = _serve(
                outbox, msg, loaded, artifacts, budget, capture, log_max_bytes, fence, meter
            )
            work_done()  # what the attempt orphaned is gone before its result is reported
            outbox.send(result)
    finally:
        capture.detach()


def _serve(
    conn: _Outbox,
    attempt: Attempt,
    loaded: dict[tuple[str, str | None], PipelineSpec],
    artifacts: ArtifactStore,
    budget: ThreadBudget,
    capture: OutputCapture,
    log_max_bytes: int,
    fence: Fence,
    meter: UsageMeter | None = None,
) -> Result:
    """Run one attempt in this worker; whatever happens, a Result (phloem's own stop aside).
    With a ``meter``, the result carries what the attempt cost (an ``AttemptUsage`` effect)."""
    from phloem.runner import run_attempt
    from phloem.runner.failures import WorkerShutdown, clean, one_line

    key = (attempt.pipeline, attempt.code_hash)
    spec = loaded.get(key)
    if spec is None:
        known = loaded.get((attempt.pipeline, None))
        if known is not None and attempt.code_hash in (None, known.code_hash):
            spec = loaded[key] = known
    conn.send(
        Started(attempt.run_id, attempt.task_id, attempt.map_index, attempt.try_number, time.time())
    )
    try:
        if spec is None and attempt.source:
            spec = loaded[key] = _reload(attempt.source)
        if spec is None or attempt.task_id not in spec.tasks:
            return failed_result(
                attempt,
                f"the code of pipeline '{attempt.pipeline}' has no task '{attempt.task_id}'",
            )
    except WorkerShutdown:
        raise
    except BaseException as exc:  # the pipeline's module failed at import, even by sys.exit
        return failed_result(attempt, clean(f"cannot load the pipeline's code: {one_line(exc)}"))
    task = spec.tasks[attempt.task_id]
    refused = fence.begin(attempt)  # its driver may have lost the run meanwhile
    if refused is not None:
        return failed_result(attempt, refused)
    try:
        if meter is not None:
            meter.start()
        with budget.attempt(task.options.resources.cpus), memory_limit(attempt.memory_limit):
            result = run_attempt(
                attempt, task, artifacts, capture=capture, log_max_bytes=log_max_bytes
            )
        if meter is None:
            return result
        used = meter.stop()
        cost = AttemptUsage(used.cpu_seconds, used.peak_rss, attempt.memory_limit)
        return replace(result, effects=(*result.effects, cost))
    except WorkerShutdown:
        raise
    except BaseException as exc:  # run_attempt reports the task's failures; this is a last guard
        return failed_result(attempt, clean(f"phloem could not run the attempt: {one_line(exc)}"))
    finally:
        fence.end(attempt)


def _pickled(attempt: Attempt) -> tuple[bytes | None, str]:
    """The attempt as bytes for its worker. Plain pickle first (the hot path); a literal
    argument pickle cannot carry (a lambda, a local function) goes by value with cloudpickle,
    which workers load with plain pickle. What neither can carry fails the task."""
    from multiprocessing.reduction import ForkingPickler

    try:
        return bytes(ForkingPickler.dumps(attempt)), ""
    except Exception:
        pass
    try:
        import cloudpickle

        return cloudpickle.dumps(attempt), ""
    except Exception as exc:
        from phloem.runner.failures import clean, one_line

        return None, clean(
            f"the arguments of task '{attempt.task_id}' cannot be sent to a worker process "
            f"({one_line(exc)}); pass values that can be pickled (data, module-level "
            "functions), make them inside the task, or use executor='inline'"
        )
