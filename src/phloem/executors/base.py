"""The executor interface: move attempts to where they run, report back; never decide."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from phloem.artifacts import ArtifactStore
from phloem.dsl.spec import PipelineSpec
from phloem.runner.attempt import Attempt, Result


@dataclass(frozen=True, slots=True)
class Started:
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    at: float


Report = Started | Result


class Executor(Protocol):
    #: how many attempts may run at once (an executor that ``batches``: how many batches)
    slots: int
    # An executor may also say ``batches = True``: attempts of one task handed to it one after
    # another travel together, up to ``Attempt.batch`` of them, and a batch takes one slot
    # (the local executor does). Without it every attempt takes a slot of its own.
    # It may also have ``wind_down()``: called when the decisions being committed end every
    # run its loop drives and ``shutdown`` comes next, so idle workers can start to stop
    # while the driver commits (the local executor does; others need not).
    # And ``hand_over()``: send what was submitted now rather than at the next ``wait``; the
    # driver calls it before the turn's task callbacks and progress lines, so those run while
    # the attempts do (the local and Ray executors have it; without it, as for the inline
    # executor, which runs attempts inside ``wait``, they go at ``wait``).

    def start(self, pipelines: Mapping[str, PipelineSpec], artifacts: ArtifactStore) -> None:
        """Prepare to run tasks of these pipelines (their code is known to the caller)."""

    def submit(self, attempt: Attempt) -> None:
        """Start ``attempt`` soon; its Started and Result come back through ``wait``."""

    def kill(self, run_id: str, task_id: str, map_index: int, try_number: int, reason: str) -> None:
        """Stop that attempt if it still runs; the engine already decided its outcome."""

    def wait(self, timeout: float | None, wake: Sequence[Any] = ()) -> list[Report]:
        """Reports that arrived, waiting at most ``timeout`` seconds for the first one, or
        until one of ``wake`` (objects with ``fileno()``) is readable."""

    def shutdown(self) -> None:
        """Stop every worker; attempts still running are abandoned."""
