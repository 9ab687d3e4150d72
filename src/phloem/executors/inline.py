"""Run attempts in this process, one at a time: a debugger and breakpoints just work."""

from __future__ import annotations

import select
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from phloem.artifacts import ArtifactStore
from phloem.dsl.spec import PipelineSpec, TaskSpec
from phloem.executors.base import Report, Started
from phloem.runner import Attempt, run_attempt
from phloem.runner.attempt import failed_result
from phloem.runner.capture import OutputCapture
from phloem.runner.failures import clean, one_line
from phloem.runner.logs import DEFAULT_LOG_MAX_BYTES


class InlineExecutor:
    slots = 1

    def __init__(self, *, log_max_bytes: int = DEFAULT_LOG_MAX_BYTES) -> None:
        self._queue: deque[Attempt] = deque()
        self._pipelines: Mapping[str, PipelineSpec] = {}
        self._artifacts: ArtifactStore | None = None
        self._capture: OutputCapture | None = None
        self._log_max_bytes = log_max_bytes

    def start(self, pipelines: Mapping[str, PipelineSpec], artifacts: ArtifactStore) -> None:
        self._pipelines = pipelines
        self._artifacts = artifacts

    def submit(self, attempt: Attempt) -> None:
        self._queue.append(attempt)

    def kill(self, run_id: str, task_id: str, map_index: int, try_number: int, reason: str) -> None:
        self._queue = deque(
            a
            for a in self._queue
            if (a.run_id, a.task_id, a.map_index, a.try_number)
            != (run_id, task_id, map_index, try_number)
        )

    def wait(self, timeout: float | None, wake: Sequence[Any] = ()) -> list[Report]:
        if not self._queue:
            if timeout:
                if wake:
                    select.select(list(wake), [], [], timeout)
                else:
                    time.sleep(timeout)
            return []
        attempt = self._queue.popleft()
        assert self._artifacts is not None
        started = Started(
            attempt.run_id, attempt.task_id, attempt.map_index, attempt.try_number, time.time()
        )
        spec, problem = self._task(attempt)
        if spec is None:
            return [started, failed_result(attempt, problem)]
        if self._capture is None:
            # this is the driver's own process: fds 1 and 2 go to the log only while a task runs
            self._capture = OutputCapture(sticky=False)
        result = run_attempt(
            attempt,
            spec,
            self._artifacts,
            capture=self._capture,
            log_max_bytes=self._log_max_bytes,
            enforce_timeout=True,
            interruptible=True,  # Ctrl-C in the driver interrupts the run, not just the task
        )
        return [started, result]

    def _task(self, attempt: Attempt) -> tuple[TaskSpec | None, str]:
        """The attempt's task, or why there is none (its code fails to load, or lacks it)."""
        pipeline = self._pipelines.get(attempt.pipeline)
        try:
            if pipeline is None and attempt.source:
                from phloem.loading import load_pipeline

                pipeline = load_pipeline(attempt.source).spec
        except Exception as exc:
            return None, clean(f"cannot load the pipeline's code: {one_line(exc)}")
        if pipeline is None or attempt.task_id not in pipeline.tasks:
            return (
                None,
                f"the code of pipeline '{attempt.pipeline}' has no task '{attempt.task_id}'",
            )
        return pipeline.tasks[attempt.task_id], ""

    def shutdown(self) -> None:
        self._queue.clear()
        if self._capture is not None:
            self._capture.close()
            self._capture = None
