"""The Ray side of the Ray executor: a long-lived actor that runs attempts as a local worker
process does (the same ``_serve``: fencing, logs, usage, the memory limit), one at a time.

It is a plain class that the executor wraps with ``ray.remote`` when it starts, so importing
this module does not import Ray. Pipelines are imported once per actor (at its start), never
per attempt; a run made with other code reloads its file once, as a local worker does.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phloem.artifacts import ArtifactStore
from phloem.dsl.spec import PipelineSpec
from phloem.executors.fencing import Fence
from phloem.executors.threads import ThreadBudget
from phloem.runner import Attempt, Result
from phloem.runner.attempt import failed_result
from phloem.runner.logs import DEFAULT_LOG_MAX_BYTES
from phloem.runner.usage import UsageMeter

#: the Ray namespace phloem's actors and last words live in
NAMESPACE = "phloem"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """Where an actor runs."""

    node_id: str
    ip: str
    host: str
    pid: int


def last_words_key(actor_id: str) -> bytes:
    """Where an actor that stops itself (its fence) leaves the reason, for the driver."""
    return f"phloem-stopped-{actor_id}".encode()


class _Silent:
    """The ``conn`` ``_serve`` reports Started through: the driver knows when it sent the
    attempt to an idle actor, which is when it starts. Whatever it is asked to send, it
    drops."""

    def put(self, msg: Any) -> None:
        pass

    def send(self, msg: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def unpickled(specs: Mapping[str, bytes]) -> tuple[dict[str, PipelineSpec], dict[str, str]]:
    """The pipelines the driver sent pickled (they have no file to import here), and why each
    that does not unpickle here failed: typically a module the driver has and this worker's
    Python does not."""
    from phloem.runner.failures import clean, one_line

    found: dict[str, PipelineSpec] = {}
    why: dict[str, str] = {}
    for name, data in specs.items():
        try:
            found[name] = pickle.loads(data)
        except Exception as exc:
            why[name] = clean(
                f"pipeline '{name}' could not be unpickled on the Ray worker at "
                f"{socket.gethostname()} ({one_line(exc)}); the workers' Python needs the "
                "modules and versions the pipeline uses, as the driver has them (or define "
                "the pipeline in a .py file the workers can import)"
            )
    return found, why


def cannot_load(
    attempt: Attempt,
    loaded: Mapping[tuple[str, str | None], PipelineSpec],
    unloadable: Mapping[str, str],
) -> Result | None:
    """The failure of an attempt whose pipeline this worker could not unpickle (and has no
    source to load it from), with why; None for an attempt it can run."""
    why = unloadable.get(attempt.pipeline)
    if why is None or attempt.source or (attempt.pipeline, None) in loaded:
        return None
    return failed_result(attempt, why)


#: an attempt: (run id, task id, map index, try number)
AttemptKey = tuple[str, str, int, int]


class RayWorker:
    """One warm worker: ``ready()`` once, then ``run(attempt)`` for each attempt sent, or
    ``run_batch(attempts)`` for a batch of them."""

    def __init__(
        self,
        sources: Mapping[str, str],
        specs: Mapping[str, bytes],
        artifacts: ArtifactStore,
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    ) -> None:
        from phloem.runner.capture import OutputCapture

        self._sources = dict(sources)
        self._specs = dict(specs)
        #: why a pipeline sent pickled could not be unpickled here, by name
        self._unloadable: dict[str, str] = {}
        self._artifacts = artifacts
        self._log_max_bytes = log_max_bytes
        self._loaded: dict[tuple[str, str | None], PipelineSpec] = {}
        self._budget = ThreadBudget()
        self._meter = UsageMeter()
        self._held_gpus: float | None = None
        self._fence = Fence(self._stop)
        #: which attempt of the running batch runs, and since when (wall clock)
        self._running: tuple[AttemptKey, float] | None = None
        #: the running batch's attempts that ended: (when each started, its result), in order
        self._ended: list[tuple[float, Result]] = []
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        # fds 1 and 2 go to the running attempt's log from now on (Ray's log files otherwise)
        self._capture = OutputCapture(sticky=True)

    def ready(self) -> WorkerInfo:
        """Where this actor runs, once its pipelines are imported (what fails to import here
        is met again, and reported, by the attempts that need it)."""
        self._load()
        import ray

        ctx = ray.get_runtime_context()
        return WorkerInfo(
            ctx.get_node_id(),
            ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            socket.gethostname(),
            os.getpid(),
        )

    def ping(
        self, seen: int = 0
    ) -> tuple[float, AttemptKey | None, float | None, list[tuple[float, Result]]]:
        """A sign of life (answered by the actor's second thread while an attempt runs); while
        a batch runs, also which of its attempts runs and since when, and the results of those
        that ended after the first ``seen`` (so that the driver need not wait for the batch's
        end to learn them: their timeouts would run on)."""
        running, ended = self._running, self._ended[seen:]
        if running is None:
            return (time.time(), None, None, ended)
        return (time.time(), running[0], running[1], ended)

    def run_batch(self, attempts: list[Attempt]) -> list[tuple[float, Result]]:
        """Each attempt in turn, as ``run`` would: (when it started, its result)."""
        out: list[tuple[float, Result]] = []
        self._ended = out
        try:
            for a in attempts:
                started = time.time()
                self._running = ((a.run_id, a.task_id, a.map_index, a.try_number), started)
                out.append((started, self.run(a)))
        finally:
            self._running = None
        return out

    def run(self, attempt: Attempt) -> Result:
        from phloem.executors.local import _serve

        if not self._loaded:
            self._load()
        failed = cannot_load(attempt, self._loaded, self._unloadable)
        if failed is not None:
            return failed
        return _serve(
            _Silent(),  # type: ignore[arg-type]
            attempt,
            self._loaded,
            self._artifacts,
            self._budget,
            self._capture,
            self._log_max_bytes,
            self._fence,
            self._meter,
            self._gpus(),
        )

    def _gpus(self) -> float:
        """The GPUs Ray reserved for this worker (its ``num_gpus``, fractions included),
        which each of its attempts holds for as long as it runs."""
        if self._held_gpus is None:
            self._held_gpus = 0.0
            with contextlib.suppress(Exception):
                import ray

                ctx = ray.get_runtime_context()
                assigned = ctx.get_assigned_resources()  # type: ignore[no-untyped-call]
                self._held_gpus = float(assigned.get("GPU", 0.0)) or float(len(ray.get_gpu_ids()))
        return self._held_gpus

    def _load(self) -> None:
        from phloem.loading import load_pipeline

        specs, self._specs = self._specs, {}
        found, unloadable = unpickled(specs)
        self._unloadable.update(unloadable)
        for name, spec in found.items():
            self._loaded.setdefault((name, None), spec)
        for name, source in list(self._sources.items()):
            if (name, None) in self._loaded:
                continue
            try:
                self._loaded[(name, None)] = load_pipeline(source).spec
            except Exception:
                self._sources.pop(name)  # its attempts reload it and report why it fails

    def _stop(self, a: Attempt, reason: str) -> None:
        """The fence's stop: leave the reason where the driver finds it, and die at once
        (with the process group, if this worker leads one)."""
        with contextlib.suppress(Exception):
            import ray
            from ray.experimental import internal_kv

            actor_id = ray.get_runtime_context().get_actor_id() or ""
            internal_kv._internal_kv_put(
                last_words_key(actor_id), reason.encode(), namespace=NAMESPACE
            )
        from phloem.executors.local import die_now

        die_now()


__all__ = ["NAMESPACE", "RayWorker", "WorkerInfo", "last_words_key"]
