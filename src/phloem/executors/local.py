"""Long-lived worker processes on this machine.

Workers are forked once (the pipeline code is already imported, so no per-task import or
interpreter start) and each runs one attempt at a time, so a crash, hang or timeout of one
attempt is pinned on that attempt and never takes the run down: the worker is killed and
replaced, and the engine decides what the failure means. Each worker runs below a guard
(see ``lifetime``): whatever its attempts start dies with the worker, and the worker dies with
the driver, however either ends.

Messages go in batches both ways: the driver sends a worker a list of attempts (consecutive
attempts of one task whose ``batch`` allows it: tiny mapped instances travel together), and a
worker sends its reports (a start, a result) as a list at the end of each batch, or after
``FLUSH_AFTER`` seconds, whichever comes first; so a worker reports a result and its next
start in one message. Which attempt a worker is running is never left to a message that may
not have been sent: the worker writes it into memory it shares with the driver before it
starts it, so a death is pinned on the attempt that was running; the others of its batches go
to another worker without spending a try.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import itertools
import math
import mmap
import operator
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
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
from phloem.runner import Attempt, Result, run_attempt
from phloem.runner.attempt import failed_result, with_effects
from phloem.runner.failures import WorkerShutdown, clean, one_line
from phloem.runner.logs import DEFAULT_LOG_MAX_BYTES
from phloem.runner.usage import UsageMeter, memory_limit
from phloem.states import AttemptOutcome

if TYPE_CHECKING:
    from phloem.artifacts import ArtifactStore
    from phloem.runner.capture import OutputCapture


#: a worker sends what it buffered at the latest this long after the first of it
FLUSH_AFTER = 0.01

AttemptId = tuple[str, str, int, int]


def _id(a: Attempt) -> AttemptId:
    return (a.run_id, a.task_id, a.map_index, a.try_number)


# -- the wire ------------------------------------------------------------------------------------
# Every attempt and every report crosses the pipe pickled. A frozen dataclass with slots pickles
# through ``dataclasses``' own ``__getstate__``/``__setstate__``, Python code that looks its
# fields up on each call: tens of microseconds per task on both sides. The types of the hot path
# pickle here as their constructor and a tuple of their fields instead (read by a C getter), which
# plain ``pickle.loads`` rebuilds; anything else pickles as ``multiprocessing`` would.


def _by_fields(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    names = [f.name for f in dataclasses.fields(cls)]
    if any(not f.init for f in dataclasses.fields(cls)) or len(names) < 2:
        raise TypeError(f"{cls.__name__} cannot be rebuilt from its fields")
    values = operator.attrgetter(*names)
    return lambda obj: (cls, values(obj))


_REDUCERS: dict[type, Callable[[Any], tuple[Any, tuple[Any, ...]]]] = {
    cls: _by_fields(cls) for cls in (Attempt, Result, Started, AttemptUsage)
}
# an enum's own reduction calls the enum class, in Python, to load; getattr is one C call
_REDUCERS[AttemptOutcome] = lambda o: (getattr, (AttemptOutcome, o.name))


class _WirePickler(ForkingPickler):
    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol)
        self.dispatch_table.update(_REDUCERS)


def _dumps(obj: Any) -> memoryview:
    """``obj`` pickled for the pipe (``pickle.loads`` reads it)."""
    buf = io.BytesIO()
    _WirePickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getbuffer()


def _ready(fds: Sequence[int], timeout: float | None, writable: Sequence[int] = ()) -> set[int]:
    """Which of ``fds`` are readable (or closed, or broken), and of ``writable`` can be written
    to, waiting at most ``timeout`` seconds for one (None: for ever).
    ``multiprocessing.connection.wait`` does the reading half through a selector it builds, in
    Python, on every call; this is one ``poll``."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    for fd in writable:
        poller.register(fd, select.POLLOUT | (select.POLLIN if fd in fds else 0))
    ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return {fd for fd, _ in poller.poll(ms)}


#: flags of a send that must not block (nor raise SIGPIPE where the process did not ignore it)
_DONTWAIT = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)


def _frame(data: bytes) -> bytes:
    """``data`` as ``Connection.recv_bytes`` reads it: its length first."""
    n = len(data)
    head = struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!iQ", -1, n)
    return head + data


def _write_some(fd: int, out: deque[memoryview]) -> None:
    """Write what ``out`` holds to the socket ``fd`` as far as it takes it now (never blocking);
    what it does not take stays in ``out``. Raises ``OSError`` when the peer is gone."""
    # a socket object over the fd, made and let go of here: the fd stays the Connection's
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
    try:
        while out:
            view = out[0]
            try:
                n = sock.send(view, _DONTWAIT)
            except BlockingIOError:
                return
            if n < len(view):
                out[0] = view[n:]
            else:
                out.popleft()
    finally:
        sock.detach()


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A worker could not unpickle an attempt sent to it (``seq``: its number among the
    attempts that worker received, which the driver counts the same way)."""

    error: str
    seq: int = 0


class _Progress:
    """Two counters a worker writes and its driver reads, in memory they share (no message):
    the number of the attempt the worker last began, and of the one it last finished. The
    driver numbers the attempts it sends a worker the same way (1, 2, ...), so when the worker
    dies, each attempt it held was either finished (its result unsent), running, or not
    begun."""

    __slots__ = ("mem",)

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, 16)

    def began(self, seq: int) -> None:
        struct.pack_into("q", self.mem, 0, seq)

    def finished(self, seq: int) -> None:
        struct.pack_into("q", self.mem, 8, seq)

    def read(self) -> tuple[int, int]:
        began, finished = struct.unpack_from("qq", self.mem, 0)
        return began, finished


@dataclass
class _Worker:
    process: Child
    conn: Connection
    progress: _Progress
    #: attempts sent to this worker and not answered, in order: (number, attempt, message)
    sent: deque[tuple[int, Attempt, int]] = field(default_factory=deque)
    #: per message sent and not wholly answered, how many of its attempts are unanswered
    messages: dict[int, int] = field(default_factory=dict)
    #: attempts sent to it so far (the number of the last one)
    seq: int = 0
    #: bytes of messages sent that its pipe did not take yet (written as it drains)
    out: deque[memoryview] = field(default_factory=deque)


class LocalExecutor:
    """``workers`` processes, each sent up to ``prefetch`` messages (an attempt, or a batch of
    tiny ones) so it never idles while the driver commits the previous results."""

    #: attempts of one task go to a worker together, up to ``Attempt.batch`` (see ``base``)
    batches = True

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
        #: workers told to stop (``wind_down``): they take nothing more; ``shutdown`` waits
        self._stopping: list[_Worker] = []
        self._queue: deque[Attempt] = deque()
        self._pipelines: Mapping[str, PipelineSpec] = {}
        self._artifacts: ArtifactStore | None = None
        self._preload: list[str] | None = None
        self._reports: list[Report] = []
        self._killed: set[AttemptId] = set()
        self._message_ids = itertools.count()

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
        progress = _Progress()
        process, conn = start_child(
            _worker_main,
            (self._pipelines, self._artifacts, self.log_max_bytes, progress),
            "phloem-worker",
        )
        worker = _Worker(process, conn, progress)
        self._workers.append(worker)
        return worker

    def submit(self, attempt: Attempt) -> None:
        # sent by the next ``wait``, with whatever else the turn hands out: attempts of one
        # task submitted one after another then travel together
        self._queue.append(attempt)

    def hand_over(self) -> None:
        """Send the attempts submitted so far now (see ``base.Executor``)."""
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue:
            idle = min(self._workers, key=lambda w: len(w.messages), default=None)
            if idle is None or (idle.messages and len(self._workers) < self.workers):
                idle = self._spawn()
            elif len(idle.messages) >= self.prefetch:
                return
            batch = self._next_batch()
            if batch:
                self._send(idle, batch)

    def _next_batch(self) -> list[tuple[Attempt, bytes]]:
        """The next message's attempts, pickled: the first queued, and as many attempts of
        the same task right behind it as its ``batch`` allows."""
        out: list[tuple[Attempt, bytes]] = []
        limit = 1
        q = self._queue
        while q and len(out) < limit:
            a = q[0]
            if out and (a.task_id != out[0][0].task_id or a.run_id != out[0][0].run_id):
                break
            q.popleft()
            if _id(a) in self._killed:
                continue
            data, problem = _pickled(a)
            if data is None:
                self._reports.append(failed_result(a, problem, retryable=False))
                continue
            if not out:
                limit = max(1, a.batch)
            out.append((a, data))
        return out

    def _send(self, w: _Worker, batch: list[tuple[Attempt, bytes]]) -> None:
        message = next(self._message_ids)
        for a, _ in batch:
            w.seq += 1
            w.sent.append((w.seq, a, message))
        w.messages[message] = len(batch)
        data = pickle.dumps([data for _, data in batch], pickle.HIGHEST_PROTOCOL)
        w.out.append(memoryview(_frame(data)))
        self._push(w)

    def _push(self, w: _Worker) -> None:
        """Write what waits for ``w`` as far as its pipe takes it now: the driver never blocks
        on a worker busy with an attempt (it reads its pipe only between attempts); the rest
        goes when ``wait`` finds the pipe writable."""
        try:
            _write_some(w.conn.fileno(), w.out)
        except OSError:
            w.process.join(1)  # it died (what it was running is told why), or it hangs
            code = w.process.exitcode
            why = "its worker process could not be reached"
            self._lost(w, why if code is None else _death_reason(w.process.child_pid, code))

    def kill(self, run_id: str, task_id: str, map_index: int, try_number: int, reason: str) -> None:
        target = (run_id, task_id, map_index, try_number)
        self._killed.add(target)  # never (re)sent, even if taken back from another worker
        if any(_id(a) == target for a in self._queue):
            self._queue = deque(a for a in self._queue if _id(a) != target)
        for w in list(self._workers):
            for seq, a, _ in w.sent:
                if _id(a) == target:
                    began, finished = w.progress.read()
                    if seq == began and finished < began:  # running now
                        self._lost(w, None)
                    break
            # an attempt sent but not started yet cannot be un-sent; if it runs, its report
            # is stale (the engine already decided) and is ignored

    def _terminate(self, w: _Worker) -> None:
        # everything its attempt started goes with it, even in a new session or daemonized
        w.process.stop()
        w.out.clear()
        w.conn.close()
        self._workers.remove(w)

    def _lost(self, w: _Worker, why: str | None) -> None:
        """Kill ``w``; the attempt it was running fails with ``why`` (None: the engine already
        decided), and the others it held go back to the queue without spending a try: those
        it had not begun, and those it finished whose results it had not sent yet."""
        self._drain(w, self._reports)  # what it did send counts
        self._terminate(w)
        began, finished = w.progress.read()
        w.progress.mem.close()
        back: list[Attempt] = []
        for seq, a, _ in w.sent:
            if seq == began and finished < began:
                if why is not None:
                    self._reports.append(failed_result(a, why))
            else:
                back.append(a)
        w.sent.clear()
        self._queue.extendleft(reversed(back))

    def wait(self, timeout: float | None, wake: Sequence[Any] = ()) -> list[Report]:
        self._dispatch()  # attempts taken back from a killed worker go out again
        reports, self._reports = self._reports, []
        busy = [w for w in self._workers if w.sent]
        if not busy:
            if not reports and timeout:
                if wake:
                    _ready([_fileno(o) for o in wake], min(timeout, 1.0))
                else:
                    time.sleep(min(timeout, 1.0))
            return reports
        by_conn = {w.conn.fileno(): w for w in busy}
        by_sentinel = {w.process.sentinel: w for w in busy}
        writing = [fd for fd, w in by_conn.items() if w.out]
        fds = [*by_conn, *by_sentinel, *map(_fileno, wake)]
        ready = _ready(fds, 0 if reports else timeout, writing)
        for fd, w in by_conn.items():
            if fd not in ready:
                continue
            if not w.out:
                self._drain(w, reports, readable=True)
                continue
            self._push(w)  # writable, readable, or both: each is tried
            if w in self._workers:
                self._drain(w, reports)
        for fd, w in by_sentinel.items():
            if fd in ready and w in self._workers:
                self._drain(w, reports)
                running = self._running(w)
                w.process.join(1)
                code = w.process.exitcode
                why = _death_reason(w.process.child_pid, code) if running else None
                self._lost(w, why)
        reports.extend(self._reports)
        self._reports = []
        self._dispatch()
        return reports

    def _running(self, w: _Worker) -> bool:
        began, finished = w.progress.read()
        return finished < began and any(seq == began for seq, _, _ in w.sent)

    def _answered(self, w: _Worker, seq: int | None, done: AttemptId | None) -> Attempt | None:
        """Take the attempt numbered ``seq`` (or with id ``done``) off what ``w`` holds."""
        for i, (n, a, message) in enumerate(w.sent):
            if n == seq or (done is not None and _id(a) == done):
                del w.sent[i]
                left = w.messages[message] - 1
                if left:
                    w.messages[message] = left
                else:
                    del w.messages[message]
                return a
        return None

    def _drain(self, w: _Worker, out: list[Report], readable: bool = False) -> None:
        """Take in the reports ``w`` sent (``readable``: its pipe is known to hold some)."""
        try:
            fd = w.conn.fileno()
            while readable or _ready((fd,), 0):
                readable = False
                for msg in pickle.loads(w.conn.recv_bytes()):
                    if isinstance(msg, _Unreadable):
                        a = self._answered(w, msg.seq, None)
                        if a is not None:
                            out.append(failed_result(a, msg.error, retryable=False))
                        continue
                    out.append(msg)
                    if isinstance(msg, Result):
                        done = (msg.run_id, msg.task_id, msg.map_index, msg.try_number)
                        self._answered(w, None, done)
        except (EOFError, OSError):
            return

    def wind_down(self) -> None:
        """No more attempts are expected (the runs end): the idle workers are told to stop
        now, and exit while the driver does its last work; ``shutdown`` then only waits for
        them. A worker told to stop takes nothing more (attempts that come anyway start
        another); a busy one is left to ``shutdown``."""
        for w in [w for w in self._workers if not w.sent and not w.out]:
            self._workers.remove(w)
            self._stopping.append(w)
            self._tell_to_stop(w)

    def _tell_to_stop(self, w: _Worker) -> None:
        w.out.append(memoryview(_frame(pickle.dumps(None))))
        try:  # what its pipe does not take is dropped: the worker is stopped in shutdown
            _write_some(w.conn.fileno(), w.out)
        except OSError:
            pass
        w.out.clear()

    def shutdown(self) -> None:
        self._queue.clear()
        for w in self._workers:
            self._tell_to_stop(w)
        deadline = time.time() + 2
        for w in [*self._stopping, *self._workers]:
            w.process.join(max(0.0, deadline - time.time()))
            w.process.stop()  # and whatever its attempts left running
            w.conn.close()
            w.progress.mem.close()
        self._workers.clear()
        self._stopping.clear()


def _fileno(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())


def _death_reason(pid: int, code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (killed, possibly by the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"worker process {pid} died from {name}{extra} while running this attempt"
    if code == EXIT_OUTBOX_BROKEN:
        return (
            f"worker process {pid} could not send its reports to the driver and exited (code "
            f"{code}) while running this attempt; the error is on the driver's stderr"
        )
    return f"worker process {pid} exited with code {code} while running this attempt"


#: a worker's exit status when its reports can no longer reach the driver (see ``_Outbox``)
EXIT_OUTBOX_BROKEN = 70


class _Outbox:
    """The pipe to the driver, shared by the attempt loop and the fence's threads. Reports
    are buffered and sent as one list: at the end of each batch (``flush``), or by a thread
    ``FLUSH_AFTER`` seconds after the first of them, so a long attempt's start is not held
    back.

    A report that cannot be pickled is replaced by a failure that says so (else its attempt
    would never be answered: the driver would wait for it forever). If the thread cannot send
    for any other reason than a driver gone (``OSError``), ``broken`` is called with the
    error (in a worker: ``_outbox_broken``, which says why and exits), so the driver is not
    left waiting for reports that will never come."""

    def __init__(self, conn: Connection, broken: Callable[[BaseException], None]) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.pending: list[Any] = []
        self._due = threading.Event()
        self._broken = broken
        threading.Thread(target=self._flusher, name="phloem-worker-outbox", daemon=True).start()

    def put(self, msg: Any) -> None:
        with self.lock:
            self.pending.append(msg)
            first = len(self.pending) == 1
        if first and not self._due.is_set():  # set: the flusher sends it (see _flusher)
            self._due.set()

    def flush(self) -> None:
        with self.lock:
            self.send_locked()

    def send_locked(self, *more: Any) -> None:
        """Send what is buffered, and ``more``; the caller holds ``lock``."""
        msgs = [*self.pending, *more]
        self.pending = []
        if not msgs:
            return
        try:
            data = _dumps(msgs)  # pickled whole before a byte is written
        except Exception as exc:  # a report that does not pickle: each is tried alone
            data = _dumps([_sendable(m, exc) for m in msgs])
        self.conn.send_bytes(data)

    def _flusher(self) -> None:
        # ``put`` sets ``_due`` only if it is clear; cleared here before the sleep, so what
        # is put while it was set is sent by the flush after that sleep
        while True:
            self._due.wait()
            self._due.clear()
            time.sleep(FLUSH_AFTER)
            try:
                self.flush()
            except OSError:  # the pipe broke: the driver is gone
                return
            except BaseException as exc:
                self._broken(exc)
                return


def _sendable(msg: Any, exc: BaseException) -> Any:
    """``msg`` if it pickles; a result that does not becomes its attempt's failure, saying
    why (``exc`` if ``msg`` itself pickles alone: the list failed for another reason)."""
    try:
        _dumps(msg)
        return msg
    except Exception as own:
        exc = own
    if not isinstance(msg, Result):
        raise exc
    return Result(
        msg.run_id,
        msg.task_id,
        msg.map_index,
        msg.try_number,
        AttemptOutcome.FAILED,
        msg.started_at,
        msg.ended_at,
        error=clean(
            f"the worker process could not send this attempt's result to the driver: it "
            f"does not pickle ({one_line(exc)}); what a task returns or records must be "
            "picklable"
        ),
        retryable=False,
    )


def _outbox_broken(capture: OutputCapture, exc: BaseException) -> None:
    """A worker whose reports cannot reach its driver: say why on the worker's own stderr
    (the driver's, or the scheduler's log), then exit, so the driver sees the death (and
    pins it on the attempt running, see ``_death_reason``) instead of waiting forever."""
    import traceback

    with contextlib.suppress(Exception):
        capture.warn(
            f"worker process {os.getpid()} cannot send its reports to the driver and exits: "
            f"{one_line(exc)}\n{''.join(traceback.format_exception(exc)).rstrip()}"
        )
    os._exit(EXIT_OUTBOX_BROKEN)


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
                outbox.send_locked(failed_result(a, reason))
        die_now()

    return stop


def die_now() -> None:
    """SIGKILL this worker, with its process group if it leads one (a fence's stop: nothing
    the attempt does may reach the store after this)."""
    pid = os.getpid()
    try:
        if os.getpgrp() == pid:
            os.killpg(pid, signal.SIGKILL)
    finally:
        os.kill(pid, signal.SIGKILL)


def _reload(source: str) -> PipelineSpec:
    from phloem.loading import reload_pipeline

    return reload_pipeline(source).spec


def _worker_main(
    conn: Connection,
    pipelines: Mapping[str, PipelineSpec],
    artifacts: ArtifactStore | None,
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    progress: _Progress | None = None,
) -> None:
    from phloem.runner.capture import OutputCapture

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    # fds 1 and 2 go to the running attempt's log from now on, never to the driver's stdout
    capture = OutputCapture(sticky=True)
    if artifacts is None:
        raise RuntimeError("a worker was started before its executor (start() gives artifacts)")
    progress = progress if progress is not None else _Progress()
    budget = ThreadBudget()
    meter = UsageMeter()
    # specs by (pipeline, code version): a run made with older code reloads once, not per task
    loaded: dict[tuple[str, str | None], PipelineSpec] = {
        (name, None): spec for name, spec in pipelines.items()
    }

    def receive() -> Any:
        """The next message from the driver: a list of pickled attempts, or None (stop). Read
        here, between attempts, by the thread that runs them (no hand-over): the driver never
        blocks on a busy worker's pipe (see ``LocalExecutor._push``)."""
        try:
            return pickle.loads(conn.recv_bytes())
        except Exception:  # end of file, or the pipe broke: the driver is gone
            return None

    outbox = _Outbox(conn, functools.partial(_outbox_broken, capture))
    fence = Fence(_stopper(outbox, lambda a: fence.running(a)))
    seq = 0
    try:
        while True:
            msg = receive()
            if msg is None:
                outbox.flush()
                return
            for item in msg:
                seq += 1
                try:
                    attempt = pickle.loads(item)
                except Exception as exc:  # an attempt that cannot be unpickled here
                    why = f"the attempt could not be received by its worker process: {exc!r}"
                    outbox.put(_Unreadable(why, seq))
                    continue
                progress.began(seq)  # a death from now on is this attempt's
                result = _serve(
                    outbox, attempt, loaded, artifacts, budget, capture, log_max_bytes, fence, meter
                )
                work_done()  # what the attempt orphaned is gone before its result is reported
                outbox.put(result)
                progress.finished(seq)
            outbox.flush()  # the reports of a message go out together, as soon as it ends
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
    gpus: float = 0.0,
) -> Result:
    """Run one attempt in this worker; whatever happens, a Result (phloem's own stop aside).
    With a ``meter``, the result carries what the attempt cost (an ``AttemptUsage`` effect);
    ``gpus`` are those this worker holds (on Ray), reserved for the attempt's wall time."""
    key = (attempt.pipeline, attempt.code_hash)
    spec = loaded.get(key)
    if spec is None:
        known = loaded.get((attempt.pipeline, None))
        if known is not None and attempt.code_hash in (None, known.code_hash):
            spec = loaded[key] = known
    conn.put(
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
        gpu_seconds = gpus * used.wall_seconds if gpus else None
        cost = AttemptUsage(used.cpu_seconds, used.peak_rss, attempt.memory_limit, gpu_seconds)
        return with_effects(result, (*result.effects, cost))
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
    try:
        return bytes(_dumps(attempt)), ""
    except Exception:
        pass
    try:
        import cloudpickle

        return cloudpickle.dumps(attempt), ""
    except Exception as exc:
        return None, clean(
            f"the arguments of task '{attempt.task_id}' cannot be sent to a worker process "
            f"({one_line(exc)}); pass values that can be pickled (data, module-level "
            "functions), make them inside the task, or use executor='inline'"
        )
