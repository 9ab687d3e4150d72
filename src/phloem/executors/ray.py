"""Attempts on a Ray cluster: Ray places and runs them, phloem's engine still decides.

Each attempt runs in a warm worker: a long-lived Ray actor (``rayworker.RayWorker``) that
imported the pipeline's code once and runs attempts one at a time exactly as a local worker
process does. An actor reserves what its tasks ask for (``resources={"cpus": 2, "gpus": 1,
"memory": "8GiB", "custom": {"big_disk": 1}}`` become Ray's ``num_cpus``, ``num_gpus``,
``memory`` and custom resources), so the actors are pooled by that shape; an idle actor is
let go when attempts of another shape wait for room, or after a while without work.

Ray's own retries are off (no actor restarts, no task retries): a lost node, a dead worker or
a lost result is a failed attempt with its reason, and the engine decides what follows. A
worker that stops answering (frozen, or cut off from the cluster) is failed after
``heartbeat_timeout`` seconds. A task no node of the cluster has ever been able to hold fails
at once, saying what it asked and the most any node has; one that only nodes now gone could
hold waits for them to come back. The actors belong to this process (not detached): when it
dies they die with it, and its successor takes its runs over through the store's leases.

Tiny mapped instances travel in batches (``Attempt.batch``): one Ray call runs several
attempts of a task one after another and returns their reports together, so a wide fan-out
costs one round trip per batch, not per instance. An attempt is reported started when it
starts: the first of a batch when it is sent to an idle actor, the others when a ping finds
them running or with their results. A batch whose worker dies, hangs or is lost does not
know which of its attempts was to blame: those that did not report go out again one by one,
without spending a try, so that the failure is pinned on the attempt that causes it.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from phloem.artifacts import ArtifactStore
from phloem.config import DEFAULT_HEARTBEAT_TIMEOUT
from phloem.dsl.options import Resources
from phloem.dsl.spec import PipelineSpec
from phloem.errors import PhloemError
from phloem.executors.base import Report, Started
from phloem.runner import Attempt, Result
from phloem.runner.attempt import failed_result
from phloem.runner.failures import OUT_OF_MEMORY, clean
from phloem.runner.logs import DEFAULT_LOG_MAX_BYTES
from phloem.runner.usage import human_bytes

log = logging.getLogger("phloem.executors.ray")

#: seconds an actor may stay idle before it is let go (freeing its resources)
DEFAULT_MAX_IDLE = 60.0
#: actors of one shape being created at once (each then takes the attempts of its shape)
_STARTING_PER_SHAPE = 2
#: how often the cluster's nodes are read again (to judge what can be placed)
_NODES_EVERY = 5.0
#: how often an actor running a batch is asked which of its attempts runs (so that one that
#: hangs is seen started, and its timeout counts)
_BATCH_PING_EVERY = 1.0

#: (cpus, gpus, memory bytes, custom resources)
Shape = tuple[float, float, int | None, tuple[tuple[str, float], ...]]
AttemptId = tuple[str, str, int, int]

_lock = threading.Lock()
_connected: list[str | None] = []  # the address this process joined, once it did


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PhloemError(
            "the Ray executor needs Ray: pip install 'phloem[ray]' (or choose another "
            "executor with --executor local)"
        ) from None
    return ray


def _sigterm_handler() -> Any:
    """This process's own SIGTERM handler, when it set one (None: nothing to keep)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGTERM)
    return handler if callable(handler) else None


def _keep_sigterm(handler: Any) -> None:
    """Put back the SIGTERM handler ``ray.init`` replaced with its own (``sys.exit(15)``), so
    a scheduler told to stop still stops as phloem does: attempts stopped, leases released,
    exit status 0."""
    if handler is not None:
        import signal

        signal.signal(signal.SIGTERM, handler)


#: joins tried when a Ray Client proxy fails to start the driver's server
_CLIENT_START_TRIES = 3
#: seconds between those joins
_CLIENT_START_PAUSE = 2.0


def _init(ray: Any, target: str) -> None:
    """Join the Ray cluster at ``target`` (``ray.init``): one call, so that tests can put a
    failure in front of it."""
    ray.init(
        address=target,
        log_to_driver=False,  # attempts' output goes to their logs, not stdout
        logging_level=logging.WARNING,
        configure_logging=False,
    )


def connect(address: str | None) -> Any:
    """Join the Ray cluster at ``address`` (``auto``, ``host:port``, ``ray://...``), or start
    a local one for this process when None; once per process. Returns the ``ray`` module."""
    ray = _ray()
    with _lock:
        if ray.is_initialized():
            if _connected and _connected[0] != address:
                raise PhloemError(
                    f"this process is joined to the Ray cluster at {_connected[0] or 'local'}; "
                    f"it cannot also join {address or 'a local one'}"
                )
            return ray
        sigterm = _sigterm_handler()
        head: _LocalHead | None = None
        try:
            if address:
                target = address
            else:
                head = _local_head()
                target = head.address
            for tries_left in reversed(range(_CLIENT_START_TRIES)):
                try:
                    _init(ray, target)
                    break
                except ConnectionAbortedError as exc:
                    # the Ray Client proxy could not start this driver's server (it starts
                    # one process per driver, which a busy head may fail to bring up in
                    # time): a fresh join usually gets one
                    if not tries_left:
                        raise
                    log.warning("joining Ray at %s failed (%s); trying again", target, exc)
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    time.sleep(_CLIENT_START_PAUSE)
            _keep_sigterm(sigterm)
        except ConnectionAbortedError as exc:
            raise PhloemError(
                f"cannot join the Ray cluster at {address}: its Ray Client server aborted the "
                f"join {_CLIENT_START_TRIES} times ({exc}): it could not start a server for this "
                "driver. See the head's ray_client_server*.log (in its session's logs folder, "
                "/tmp/ray/session_latest/logs by default) for why, make room on the head, or join "
                "by host:port from a machine of the cluster"
            ) from exc
        except Exception as exc:
            where = f"at {address}" if address else "on this machine"
            output = f"; the local Ray's output is in {head.log}" if head is not None else ""
            raise PhloemError(
                f"cannot start or join a Ray cluster {where}: {type(exc).__name__}: {exc}"
                f"{output} (PHLOEM_RAY_ADDRESS: unset for a local Ray, 'auto' or host:port or "
                "ray://host:10001 to join one)"
            ) from exc
        _connected[:] = [address]
        _quiet(ray)
        # phloem chooses the cluster: a Ray call made while the connection is down must fail,
        # not join whatever Ray it finds on the machine by itself
        with contextlib.suppress(Exception):
            ray._private.auto_init_hook.enable_auto_connect = False
        return ray


@dataclass(frozen=True)
class _LocalHead:
    """The Ray head this process started on this machine, below a guard (``lifetime``)."""

    child: Any  # lifetime.Child
    port: int
    #: where ``ray start`` writes its output (what to read when it fails)
    log: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answers(self) -> bool:
        import socket

        if not self.child.is_alive():
            return False
        with socket.socket() as s:
            return _answers(s, self.port)


#: the local Ray head this process started, while it has one: never more than one, so a join
#: that fails after the head started (and is tried again) uses that head again
_local: list[_LocalHead] = []


def _local_head() -> _LocalHead:
    """This process's own Ray head: the one it started, while that still answers, else a new
    one (a head that stopped answering is stopped first; its output is kept: it says why)."""
    if _local:
        head = _local[0]
        if head.answers():
            return head
        log.warning("the local Ray stopped (its output is in %s); starting another", head.log)
        _local.clear()
        head.child.stop()
    head = _start_local()
    _local[:] = [head]
    return head


@atexit.register
def _stop_local() -> None:
    """At exit: stop this process's Ray head, if it started one."""
    if _local:
        _local.pop().child.stop()


def _forget_local_log() -> None:
    """Remove the output of this process's Ray head (the executor ended cleanly: nothing in
    it is needed). The head goes on writing to the file, unlinked, until it stops."""
    if _local and _local[0].answers():
        with contextlib.suppress(OSError):
            os.remove(_local[0].log)


def _start_local(timeout: float = 180.0) -> _LocalHead:
    """Start a Ray head on this machine for this process. It runs below a guard
    (``lifetime``), so it dies with this process however it ends (Ray's own local start leaves
    agents behind after a SIGKILL), and is stopped at exit. Its output goes to
    ``phloem-ray-PID-PORT.log`` in the temp folder, which is kept when it fails to start."""
    import shutil
    import socket
    import sys
    import tempfile

    from phloem.executors.lifetime import start_child

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    ray_cli = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    port = free()
    argv = [ray_cli, "start", "--head", "--block", f"--port={port}", "--disable-usage-stats"]
    argv += ["--include-dashboard=false", f"--dashboard-port={free()}"]
    for option in (
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-grpc-port",
        "dashboard-agent-listen-port",
        "metrics-export-port",
        "runtime-env-agent-port",
        "ray-client-server-port",
    ):
        argv.append(f"--{option}={free()}")
    out = os.path.join(tempfile.gettempdir(), f"phloem-ray-{os.getpid()}-{port}.log")
    child, conn = start_child(_exec, (argv, out), "phloem-ray")
    conn.close()
    head = _LocalHead(child, port, out)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.is_alive():
            break
        if head.answers():
            return head
        time.sleep(0.2)
    child.stop()
    try:
        with open(out, errors="replace") as f:
            tail = f.read()[-1500:]
    except OSError:
        tail = ""
    raise RuntimeError(f"a local Ray did not start (its output is in {out}): {tail}")


def _answers(s: Any, port: int) -> bool:
    """Whether ``s`` connects to something listening on 127.0.0.1:``port``. A connection to
    itself is not that: the port polled lies in the ephemeral range, so the kernel may give it
    to ``s`` as its own and the connect then succeeds with no listener (a simultaneous open)."""
    if s.connect_ex(("127.0.0.1", port)) != 0:
        return False
    return bool(s.getsockname() != s.getpeername())


def _exec(conn: Any, argv: list[str], out: str) -> None:
    """In the guarded child: become ``ray start``, its output in ``out``."""
    conn.close()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execv(argv[0], argv)


def _quiet(ray: Any) -> None:
    """Ray prints the cluster's error messages ("(raylet) the node ... has been marked dead")
    on this process's stdout, which may be pure JSON (``phloem run --json``): they go to the
    log instead. Attempts' own output is already off (``log_to_driver=False``)."""
    try:
        worker = ray._private.worker
        original = worker.print_to_stdstream
    except AttributeError:
        return

    def to_log(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("is_err") or data.get("pid") not in ("raylet", "autoscaler"):
            original(data, ignore_prefix)
            return
        for line in data.get("lines", ()):
            log.warning("Ray: %s", line)

    worker.print_to_stdstream = to_log


@dataclass(eq=False)
class _Actor:
    handle: Any
    shape: Shape
    #: where it runs, once it answered ``ready``
    info: Any = None
    #: the attempt it runs (of a batch: the last one seen started), None when idle
    attempt: Attempt | None = None
    #: the attempts of the call it runs, in order (one, or a batch)
    batch: list[Attempt] = field(default_factory=list)
    #: how many of ``batch`` were reported started, and how many reported their results
    started: int = 0
    ended: int = 0
    #: when (monotonic) it last showed a sign of life, and when its unanswered ping was sent
    alive_at: float = field(default_factory=time.monotonic)
    ping_at: float | None = None
    idle_since: float = field(default_factory=time.monotonic)
    #: its attempt's call failed as if its node were unreachable: why, and since when; its
    #: attempt is failed once Ray says it is dead (it might still run otherwise)
    doomed: str | None = None
    doomed_at: float = 0.0


class _Wake:
    """The pipe that wakes ``wait`` when a Ray call ends. Closed when nothing holds it any
    more: neither the executor nor a call still under way, whose end writes to it (closing it
    earlier could let the write land in whatever file took its number next)."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)

    def __del__(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str  # "ready" | "run" | "ping"
    actor: _Actor
    future: Any
    attempt: Attempt | None = None


def shipped(
    pipelines: Mapping[str, PipelineSpec],
) -> tuple[dict[str, str], dict[str, bytes], dict[str, str]]:
    """How each pipeline reaches the Ray workers: its ``file.py:name`` to import there, or,
    for a pipeline no file holds at its top level (made in ``python -c``, a notebook, inside a
    function), pickled by value with cloudpickle. Returns (sources, pickled, why): a
    pipeline that could be neither is in ``why`` with the reason its attempts fail with; it
    does not keep the others from going (each is pickled alone)."""
    import cloudpickle

    from phloem.runner.failures import clean, one_line

    sources: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    why: dict[str, str] = {}
    for name, spec in pipelines.items():
        if _found_in_its_file(name, spec):
            sources[name] = f"{spec.source_file}:{name}"
            continue
        try:
            blobs[name] = cloudpickle.dumps(spec)
        except Exception as exc:
            why[name] = clean(
                f"pipeline '{name}' could not be shipped to the Ray workers: they cannot load "
                f"it from a file (it has none, or is not at the top level of its file), and "
                f"pickling it failed ({one_line(exc)}); define it at the top level of a .py "
                "file the workers can import, or keep what its tasks refer to picklable"
            )
    return sources, blobs, why


class RayExecutor:
    """Attempts on the Ray cluster at ``address`` (None: a local Ray for this process)."""

    def __init__(
        self,
        *,
        address: str | None = None,
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        max_idle: float = DEFAULT_MAX_IDLE,
    ) -> None:
        _ray()  # a clear error now, not at the first task
        self.address = address
        self.log_max_bytes = log_max_bytes
        self.heartbeat_timeout = heartbeat_timeout
        self.max_idle = max_idle
        self._ray: Any = None
        self._cls: Any = None
        self._pipelines: Mapping[str, PipelineSpec] = {}
        #: how workers get the pipelines: "file.py:name" to import, or pickled by value (for
        #: a pipeline with no source file), and why those that could be neither cannot go
        self._sources: dict[str, str] = {}
        self._blobs: dict[str, bytes] = {}
        self._unshippable: dict[str, str] = {}
        self._artifacts: ArtifactStore | None = None
        #: attempts waiting for a worker, by the shape of worker they need (in order)
        self._queue: dict[Shape, deque[Attempt]] = {}
        self._actors: list[_Actor] = []
        self._reports: list[Report] = []
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._wake = _Wake()
        self._wake_r = self._wake.r
        self._nodes: list[dict[str, Any]] = []
        self._nodes_at = float("-inf")
        #: the resources of every node seen since the start, by node id (a node that died
        #: may come back: what it could hold still counts)
        self._seen: dict[str, dict[str, float]] = {}
        #: why the connection to the cluster was lost (None: it was not), and when (monotonic)
        #: it was last joined again
        self._lost: str | None = None
        self._reconnect_at = float("-inf")
        #: a join under way on its own thread: (the ray module, the worker class) once joined
        self._joining: concurrent.futures.Future[tuple[Any, Any]] | None = None
        #: as many attempts (or batches) as the cluster has CPUs (at least one); more wait in
        #: the engine
        self.slots = 1
        #: attempts of one task handed out together travel in one call (see the docstring)
        self.batches = True

    # -- the Executor protocol ------------------------------------------------------------------

    def start(self, pipelines: Mapping[str, PipelineSpec], artifacts: ArtifactStore) -> None:
        self._ray = connect(self.address)
        from phloem.executors.rayworker import RayWorker

        self._cls = self._ray.remote(RayWorker)
        self._pipelines = pipelines
        self._sources, self._blobs, self._unshippable = shipped(pipelines)
        self._artifacts = artifacts
        self._refresh_nodes(force=True)

    def submit(self, attempt: Attempt) -> None:
        """Queued here; handed out at the next ``wait`` (once per turn of the driver, so a
        wide fan-out costs one pass, not one per attempt)."""
        shape = self._shape(attempt)
        why = self._never_fits(attempt, shape)
        if why is None and not attempt.source:
            why = self._unshippable.get(attempt.pipeline)
        if why is not None:
            self._reports.append(failed_result(attempt, why, retryable=False))
            return
        self._queue.setdefault(shape, deque()).append(attempt)

    def kill(self, run_id: str, task_id: str, map_index: int, try_number: int, reason: str) -> None:
        target = (run_id, task_id, map_index, try_number)
        for shape, waiting in list(self._queue.items()):
            kept = deque(a for a in waiting if _id(a) != target)
            if len(kept) != len(waiting):
                self._queue[shape] = kept
        for actor in list(self._actors):
            if any(_id(a) == target for a in actor.batch):
                # which of its batch runs is not known here: the others go out again
                others = [a for a in actor.batch[actor.ended :] if _id(a) != target]
                self._retire(actor)
                self._give_back(actor.shape, others)

    def hand_over(self) -> None:
        """Send the attempts submitted so far now (see ``base.Executor``); a lost connection
        is left to ``wait``, which joins the cluster again."""
        self._dispatch()

    def wait(self, timeout: float | None, wake: Sequence[Any] = ()) -> list[Report]:
        if self._lost is None and self._ray is not None and not self._ray.is_initialized():
            self._lost = "the Ray connection ended"  # a Ray Client that gave up, e.g.
        if self._lost is not None:
            self._reconnect()
        self._dispatch()
        self._take_events()
        if not self._reports and timeout != 0:
            limit = self._next_check()
            if timeout is not None:
                limit = timeout if limit is None else min(limit, timeout)
            select.select([self._wake_r, *wake], [], [], limit)
            self._take_events()
        self._housekeeping()
        self._dispatch()
        reports, self._reports = self._reports, []
        return reports

    def shutdown(self) -> None:
        self._queue.clear()
        for actor in list(self._actors):
            self._retire(actor)
        self._drain_pipe()
        if self.address is None and self._ray is not None and self._lost is None:
            _forget_local_log()  # ended cleanly: the local Ray's output says nothing needed

    # -- placing attempts -----------------------------------------------------------------------

    def _shape(self, a: Attempt) -> Shape:
        res = a.resources or Resources()  # what the task asked for, from its driver
        memory = a.memory_limit or res.memory
        return (res.cpus, res.gpus, memory, res.custom)

    def _dispatch(self) -> None:
        self._queue = {shape: q for shape, q in self._queue.items() if q}
        if self._ray is None or self._lost is not None or not self._queue:
            return
        idle: dict[Shape, list[_Actor]] = {}
        starting: dict[Shape, int] = {}
        for actor in self._actors:
            if actor.info is None:
                starting[actor.shape] = starting.get(actor.shape, 0) + 1
            elif actor.attempt is None:
                idle.setdefault(actor.shape, []).append(actor)
        wanted: dict[Shape, int] = {}
        for shape, waiting in self._queue.items():
            free = idle.get(shape, [])
            while waiting and free and self._lost is None:
                self._send(free.pop(), _next_batch(waiting))
            if waiting:
                wanted[shape] = len(waiting)
        for shape, n in wanted.items():
            for _ in range(min(n, _STARTING_PER_SHAPE) - starting.get(shape, 0)):
                self._spawn(shape)
        if wanted:
            # idle actors of shapes nobody waits for give their room to those that wait
            for actor in list(self._actors):
                if actor.info and not actor.attempt and actor.shape not in wanted:
                    self._retire(actor)

    def _spawn(self, shape: Shape) -> None:
        if self._lost is not None:
            return

        cpus, gpus, memory, custom = shape
        options: dict[str, Any] = {
            "num_cpus": cpus,
            "num_gpus": gpus,
            "max_restarts": 0,  # phloem's engine decides what a lost worker means
            "max_task_retries": 0,
            "max_concurrency": 2,  # a second thread answers pings while an attempt runs
        }
        if memory:
            options["memory"] = memory
        if custom:
            options["resources"] = dict(custom)
        try:
            handle = self._cls.options(**options).remote(
                self._sources, self._blobs, self._artifacts, self.log_max_bytes
            )
            actor = _Actor(handle, shape)
            self._actors.append(actor)
            self._watch("ready", actor, handle.ready.remote())
        except Exception as exc:
            if isinstance(exc, ConnectionError) or not self._ray.is_initialized():
                # the cluster cannot be reached: joined again at the next wait
                log.warning("cannot start a Ray worker: %s", exc)
                self._connection_lost(exc)
                return
            # the worker itself cannot be made (its arguments do not pickle, Ray refuses its
            # options): the first attempt of its shape fails with why, as when a worker cannot
            # start, rather than every attempt on the cluster for a connection never lost
            from phloem.runner.failures import one_line

            waiting = self._queue.get(shape)
            if waiting:
                self._reports.append(
                    failed_result(
                        waiting.popleft(), clean(f"its Ray worker could not start: {one_line(exc)}")
                    )
                )

    def _send(self, actor: _Actor, batch: list[Attempt]) -> None:
        a = batch[0]
        sent_at = time.time()  # before the call: a tiny attempt may end before it returns
        try:
            if len(batch) == 1:
                ref = actor.handle.run.options(retry_exceptions=False).remote(a)
            else:
                ref = actor.handle.run_batch.options(retry_exceptions=False).remote(batch)
            future = ref.future()
        except ConnectionError as exc:
            self._give_back(actor.shape, batch, split=False)  # sent again later
            self._connection_lost(exc)
            return
        except Exception as exc:  # their arguments cannot be pickled
            if len(batch) > 1:
                self._give_back(actor.shape, batch)  # each alone: the culprit fails
                return
            from phloem.runner.failures import one_line

            self._reports.append(
                failed_result(
                    a,
                    clean(
                        f"the arguments of task '{a.task_id}' cannot be sent to a Ray worker "
                        f"({one_line(exc)}); pass values that can be pickled"
                    ),
                    retryable=False,
                )
            )
            return
        now = time.monotonic()
        actor.attempt, actor.batch, actor.started, actor.ended = a, batch, 1, 0
        actor.alive_at, actor.ping_at = now, None
        self._reports.append(Started(a.run_id, a.task_id, a.map_index, a.try_number, sent_at))
        self._watch("run", actor, future, a)

    def _give_back(self, shape: Shape, attempts: Sequence[Attempt], split: bool = True) -> None:
        """Queue ``attempts`` again, first in line, without spending a try; ``split``: each on
        its own (batches of one), so that a failure is pinned on the attempt to blame."""
        if not attempts:
            return
        again = [replace(a, batch=1) for a in attempts] if split else list(attempts)
        self._queue.setdefault(shape, deque()).extendleft(reversed(again))

    def _fail(self, actor: _Actor, why: str) -> None:
        """``actor``'s call ended without its reports: its attempt fails with ``why``; the
        attempts of a batch that did not report go out again one by one instead (which of
        them is to blame is not known)."""
        batch, a = actor.batch, actor.attempt
        self._retire(actor)
        if len(batch) > 1:
            log.warning(
                "a batch of %d attempts of task '%s' lost its Ray worker (%s); they run again "
                "one by one",
                len(batch),
                batch[0].task_id,
                why,
            )
            self._give_back(actor.shape, batch[actor.ended :])  # (not those that reported)
        elif a is not None:
            self._reports.append(failed_result(a, why))

    def _retire(self, actor: _Actor) -> None:
        """Let ``actor`` go (killed, whatever it runs: the engine decided already)."""
        if actor in self._actors:
            self._actors.remove(actor)
        if self._lost is None:  # (a Ray call without a connection would start a new one)
            with contextlib.suppress(Exception):
                self._ray.kill(actor.handle, no_restart=True)

    # -- what comes back ------------------------------------------------------------------------

    def _watch(self, kind: str, actor: _Actor, ref: Any, a: Attempt | None = None) -> None:
        """``ref`` (an object ref, or its future) is reported as an event once it is ready."""
        events, wake = self._events, self._wake

        def done(future: Any) -> None:
            events.put(_Event(kind, actor, future, a))
            with contextlib.suppress(OSError):
                os.write(wake.w, b"!")

        future = ref if isinstance(ref, concurrent.futures.Future) else ref.future()
        future.add_done_callback(done)

    def _drain_pipe(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _take_events(self) -> None:
        self._drain_pipe()
        while True:
            try:
                e = self._events.get_nowait()
            except queue.Empty:
                return
            if e.actor not in self._actors:
                continue  # let go of already
            if e.kind == "ready":
                self._on_ready(e)
            elif e.kind == "run":
                self._on_result(e)
            elif e.kind == "ping":
                self._on_ping(e)

    def _on_ready(self, e: _Event) -> None:
        actor = e.actor
        try:
            actor.info = e.future.result()
        except Exception as exc:
            # the actor could not start: the first attempt of its shape fails (with the
            # engine's retries, not a loop of actors that never start)
            self._retire(actor)
            waiting = self._queue.get(actor.shape)
            if waiting:
                a = waiting.popleft()
                self._reports.append(
                    failed_result(a, clean(f"its Ray worker could not start: {_cause(exc)}"))
                )
            return
        actor.idle_since = actor.alive_at = time.monotonic()

    def _on_result(self, e: _Event) -> None:
        actor, a = e.actor, e.attempt
        if a is None or not actor.batch or actor.batch[0] is not a:
            return
        try:
            outcome = e.future.result()
        except Exception as exc:
            ray = self._ray
            if isinstance(exc, ray.exceptions.ActorUnavailableError):
                # its node may be down, or only cut off: the attempt fails once Ray says the
                # worker is dead (or it answers again, and is stopped), so that it never
                # runs beside its retry
                actor.doomed, actor.doomed_at = _first(exc), time.monotonic()
                self._ping(actor)
                return
            if isinstance(exc, ConnectionError):  # the cluster itself is out of reach
                self._connection_lost(exc)
                why = f"the connection to the Ray cluster was lost ({_first(exc)})"
                self._fail(actor, clean(why))
                return
            if isinstance(exc, ray.exceptions.RayTaskError):  # phloem's own code failed there
                why = f"phloem could not run the attempt on its Ray worker: {_cause(exc)}"
                self._fail(actor, clean(why))
                return
            self._fail(actor, self._lost_reason(actor, actor.attempt or a, exc))
            return
        if len(actor.batch) == 1:
            self._reports.append(outcome)
        else:  # (when each started, its result), in the batch's order
            self._batch_ended(actor, outcome[actor.ended :])
        actor.attempt, actor.batch, actor.started, actor.ended = None, [], 0, 0
        actor.idle_since = actor.alive_at = time.monotonic()

    def _on_ping(self, e: _Event) -> None:
        actor = e.actor
        actor.ping_at = None
        try:
            answer = e.future.result()
        except Exception as exc:
            if actor.doomed is None or actor.attempt is None:
                return  # its attempt's own call reports the death
            if isinstance(exc, self._ray.exceptions.ActorUnavailableError):
                return  # not known dead yet: asked again at the next check
            self._fail(actor, self._lost_reason(actor, actor.attempt, exc))
            return
        if actor.doomed is None:
            actor.alive_at = time.monotonic()
            self._seen_running(actor, answer)
        elif actor.attempt is not None:
            # it answers again, but its attempt's call was lost: stop it, fail the attempt
            self._fail(
                actor,
                clean(
                    f"its Ray worker on node {getattr(actor.info, 'ip', '?')} was out of "
                    f"reach and its attempt's result was lost ({actor.doomed})"
                ),
            )

    def _seen_running(self, actor: _Actor, answer: Any) -> None:
        """A ping's answer (``rayworker.RayWorker.ping``) gives the results of the batch's
        attempts that ended since the last, and which one runs and since when: each reported
        once, so that every attempt's timeout counts from its own start to its own end."""
        if not isinstance(answer, tuple) or len(actor.batch) < 2:
            return
        _, running, at, ended = answer
        # (an answer about an earlier batch, read after its results, matches nothing here)
        self._batch_ended(actor, ended)
        index = next((i for i, a in enumerate(actor.batch) if _id(a) == running), None)
        if index is None or index < actor.started:
            return
        a = actor.batch[index]
        actor.attempt, actor.started = a, index + 1
        self._reports.append(Started(a.run_id, a.task_id, a.map_index, a.try_number, at))

    def _batch_ended(self, actor: _Actor, ended: Sequence[tuple[float, Result]]) -> None:
        """Report the next attempts of ``actor``'s batch that ended, (when each started, its
        result), those not reported started yet first reported started."""
        for at, r in ended:
            i = actor.ended
            if i >= len(actor.batch) or _result_id(r) != _id(actor.batch[i]):
                return
            if i >= actor.started:
                self._reports.append(Started(r.run_id, r.task_id, r.map_index, r.try_number, at))
                actor.started = i + 1
            self._reports.append(r)
            actor.ended = i + 1

    def _ping(self, actor: _Actor) -> None:
        actor.ping_at = time.monotonic()
        try:
            seen = actor.ended if len(actor.batch) > 1 else 0
            self._watch("ping", actor, actor.handle.ping.remote(seen))
        except Exception as exc:
            if isinstance(exc, ConnectionError):
                self._connection_lost(exc)

    def _lost_reason(self, actor: _Actor, a: Attempt, exc: BaseException) -> str:
        """Why ``a`` ended with its worker: the fence's own words, a node that died, the
        memory monitor, or a worker process that died."""
        ray = self._ray
        info = actor.info
        ip = getattr(info, "ip", "?")
        pid = getattr(info, "pid", "?")
        # Ray's generic advice ("(1) the process was killed by the OOM killer...") is no reason
        text = str(exc).split("Some common causes")[0].split("There are some potential")[0]
        with contextlib.suppress(Exception):
            from ray.experimental import internal_kv

            from phloem.executors.rayworker import NAMESPACE, last_words_key

            key = last_words_key(actor.handle._actor_id.hex())
            words = internal_kv._internal_kv_get(key, namespace=NAMESPACE)
            if words:
                internal_kv._internal_kv_del(key, namespace=NAMESPACE)
                return clean(words.decode("utf-8", "replace"))
        if isinstance(exc, ray.exceptions.ObjectLostError):
            return clean(f"the result of this attempt was lost with node {ip} ({_first(exc)})")
        lowered = text.lower()
        if isinstance(exc, ray.exceptions.OutOfMemoryError) or (
            "memory monitor" in lowered or "low on memory" in lowered
        ):
            limit = a.memory_limit
            at = f"{OUT_OF_MEMORY}{human_bytes(limit)}" if limit else "out of memory"
            return clean(f"{at} (its Ray worker on node {ip} was killed by Ray's memory monitor)")
        if (
            "node" in lowered
            and ("died" in lowered or "dead" in lowered)
            and ("its node has died" in lowered or not self._node_alive(info))
        ):
            return f"node {ip} died while running this attempt"
        if actor.doomed is not None:
            if not self._node_alive(info, force=True):
                return f"node {ip} died while running this attempt"
            return clean(
                f"its Ray worker (pid {pid} on node {ip}) died after it could not be reached "
                f"({actor.doomed})"
            )
        return clean(
            f"worker process {pid} on node {ip} died while running this attempt "
            f"(Ray: {_first(exc)})"
        )

    # -- keeping watch --------------------------------------------------------------------------

    def _next_check(self) -> float | None:
        """Seconds until something must be looked at without an event (a ping due, an idle
        actor to let go, queued attempts to judge again)."""
        if not self._actors and not self._queue:
            return None
        every = min(self.heartbeat_timeout / 6, self.max_idle / 2, _NODES_EVERY)
        if any(len(actor.batch) > 1 for actor in self._actors):
            every = min(every, _BATCH_PING_EVERY)
        return max(0.05, every)

    def _housekeeping(self) -> None:
        if self._ray is None or self._lost is not None:
            return
        now = time.monotonic()
        every = self.heartbeat_timeout / 6
        for actor in list(self._actors):
            if actor.attempt is None:
                if actor.info is not None and now - actor.idle_since > self.max_idle:
                    self._retire(actor)
                continue
            if actor.doomed is not None:
                if now - actor.doomed_at > self.heartbeat_timeout:
                    self._fail(
                        actor,
                        clean(
                            f"its Ray worker on node {getattr(actor.info, 'ip', '?')} "
                            f"could not be reached for {now - actor.doomed_at:.0f}s "
                            f"({actor.doomed})"
                        ),
                    )
                elif actor.ping_at is None:
                    self._ping(actor)
                continue
            silent = now - actor.alive_at
            if silent > self.heartbeat_timeout:
                info = actor.info
                self._fail(
                    actor,
                    f"no heartbeat from its Ray worker (pid {getattr(info, 'pid', '?')} on "
                    f"node {getattr(info, 'ip', '?')}) for {silent:.0f}s: it hung or lost "
                    "touch with the cluster, and was stopped",
                )
            elif actor.ping_at is None and (
                silent >= every or (len(actor.batch) > 1 and silent >= _BATCH_PING_EVERY)
            ):
                self._ping(actor)
        if self._queue:
            self._refresh_nodes()

    # -- the connection to the cluster ----------------------------------------------------------

    def _connection_lost(self, exc: BaseException) -> None:
        if self._lost is None:
            log.warning("lost the connection to the Ray cluster: %s", _first(exc))
            self._lost = _first(exc)

    def _reconnect(self) -> None:
        """Join the cluster again (its head restarted, or the Ray Client connection ended):
        the attempts that ran on the old connection fail (the engine retries them), those
        that wait go out once joined. Tried at most every few seconds, each time on a thread
        of its own: a join may wait a minute for a head that is away, and the driver's loop
        (cron ticks, leases, the store) must go on meanwhile."""
        joining = self._joining
        if joining is not None:
            if not joining.done():
                return
            self._joining = None
            try:
                self._ray, self._cls = joining.result()
            except Exception as exc:
                log.warning("cannot join the Ray cluster again yet: %s", exc)
                return
            self._lost = None
            self._refresh_nodes(force=True)
            log.warning("joined the Ray cluster again")
            return
        now = time.monotonic()
        if now - self._reconnect_at < _NODES_EVERY:
            return
        self._reconnect_at = now
        for actor in list(self._actors):  # (not killed: no Ray call while the connection is lost)
            self._fail(actor, clean(f"the connection to the Ray cluster was lost ({self._lost})"))
        ray = self._ray
        with _lock, contextlib.suppress(Exception):
            ray.shutdown()
            _connected.clear()
        self._joining = _join_in_background(self.address, self._wake)

    # -- the cluster's nodes --------------------------------------------------------------------

    def _refresh_nodes(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._lost is not None or (not force and now - self._nodes_at < _NODES_EVERY):
            return
        try:
            self._nodes = list(self._ray.nodes())
        except Exception as exc:
            log.warning("cannot read the Ray cluster's nodes: %s", exc)
            if isinstance(exc, ConnectionError) or not self._ray.is_initialized():
                self._connection_lost(exc)
            return
        self._nodes_at = now
        for n in self._nodes:
            if n.get("Alive") and n.get("Resources"):
                self._seen[n["NodeID"]] = dict(n["Resources"])
        cpus = sum(n["Resources"].get("CPU", 0.0) for n in self._nodes if n.get("Alive"))
        self.slots = max(1, int(cpus))

    def _node_alive(self, info: Any, force: bool = False) -> bool:
        if info is None:
            return True
        if force:
            self._refresh_nodes(force=True)
        for n in self._nodes:
            if n.get("NodeID") == info.node_id:
                return bool(n.get("Alive"))
        return True

    def _never_fits(self, a: Attempt, shape: Shape) -> str | None:
        """Why no node of the cluster, alive or gone, could ever hold ``a`` (None: one could)."""
        self._refresh_nodes()
        if not self._seen:
            return None
        need = _needs(shape)
        for have in self._seen.values():
            if all(have.get(k, 0.0) >= v for k, v in need.items()):
                return None
        most = {k: max(have.get(k, 0.0) for have in self._seen.values()) for k in need}
        return (
            f"task '{a.task_id}' asks for {_describe(need)}, which no node of the Ray cluster "
            f"has: the most any node has is {_describe(most)}"
        )


def _needs(shape: Shape) -> dict[str, float]:
    cpus, gpus, memory, custom = shape
    need: dict[str, float] = {}
    if cpus:
        need["CPU"] = cpus
    if gpus:
        need["GPU"] = gpus
    if memory:
        need["memory"] = float(memory)
    need.update(custom)
    return need


def _describe(amounts: Mapping[str, float]) -> str:
    parts = []
    for k, v in amounts.items():
        if k == "memory":
            parts.append(f"{human_bytes(v)} memory")
        elif k in ("CPU", "GPU"):
            parts.append(f"{v:g} {k}{'' if v == 1 else 's'}")
        else:
            parts.append(f"{v:g} '{k}'")
    return ", ".join(parts)


def _not_about_sigterm(record: logging.LogRecord) -> bool:
    """Ray's warning that a join off the main thread leaves SIGTERM alone says nothing."""
    return "SIGTERM handler is not set" not in record.getMessage()


def _join_in_background(address: str | None, wake: _Wake) -> concurrent.futures.Future[Any]:
    """``connect(address)`` on a thread of its own; the future holds (the ray module, the
    worker class made remote) or why the join failed, and ``wake`` is written to when it
    ends, so that the driver's ``wait`` looks at it at once."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    ray_log = logging.getLogger("ray._private.worker")
    if _not_about_sigterm not in ray_log.filters:
        ray_log.addFilter(_not_about_sigterm)  # phloem keeps its own handler (see connect)

    def join() -> None:
        try:
            ray = connect(address)
            from phloem.executors.rayworker import RayWorker

            future.set_result((ray, ray.remote(RayWorker)))
        except BaseException as exc:
            future.set_exception(exc)
        with contextlib.suppress(OSError):
            os.write(wake.w, b"!")

    threading.Thread(target=join, name="phloem-ray-join", daemon=True).start()
    return future


def _found_in_its_file(name: str, spec: PipelineSpec) -> bool:
    """Whether a worker finds the pipeline ``name`` by loading its source file: defined at the
    top level of a module of this process from that file. One defined inside a function, or
    made in a notebook, is sent pickled instead."""
    import sys

    from phloem.dsl.pipeline import Pipeline

    if not spec.source_file:
        return False
    path = os.path.realpath(spec.source_file)
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or os.path.realpath(file) != path:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Pipeline) and value.spec.name == name:
                return True
    return False


def _next_batch(waiting: deque[Attempt]) -> list[Attempt]:
    """The first attempt waiting, and as many attempts of the same task right behind it as
    its ``batch`` allows."""
    first = waiting.popleft()
    batch = [first]
    while (
        waiting
        and len(batch) < first.batch
        and waiting[0].task_id == first.task_id
        and waiting[0].run_id == first.run_id
    ):
        batch.append(waiting.popleft())
    return batch


def _result_id(r: Result) -> AttemptId:
    return (r.run_id, r.task_id, r.map_index, r.try_number)


def _id(a: Attempt) -> AttemptId:
    return (a.run_id, a.task_id, a.map_index, a.try_number)


def _cause(exc: BaseException) -> str:
    """The exception a Ray call raised on the other side, in one line."""
    from phloem.runner.failures import one_line

    cause = getattr(exc, "cause", None)
    return one_line(cause) if isinstance(cause, BaseException) else _first(exc)


def _first(exc: BaseException) -> str:
    """The telling line of a Ray error (its messages run to paragraphs)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("The actor is dead because") or "died" in ln or "unavailable" in ln:
            return ln.split(". Some common causes")[0].split(". There are some potential")[0]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


__all__ = ["DEFAULT_HEARTBEAT_TIMEOUT", "DEFAULT_MAX_IDLE", "RayExecutor", "connect"]
