"""Task-instance and run states, and the transitions allowed between them.

The table here is the one place the lifecycle is written down; the engine only proposes
transitions it allows, the store refuses any other, and tests read it.
"""

from __future__ import annotations

from enum import Enum
from typing import NoReturn


class Text(str, Enum):
    """A value stored and shown as its text (``str(TaskState.SUCCESS) == "success"``)."""

    def __str__(self) -> str:
        return str(self.value)


class TaskState(Text):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CACHED = "cached"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TASK_STATES


class AttemptOutcome(Text):
    """How an attempt ended, as the runner saw it; the engine decides what it means."""

    SUCCESS = "success"
    FAILED = "failed"
    #: a sensor's condition did not hold yet: poke again after its interval
    RESCHEDULE = "reschedule"
    #: a sensor's condition did not hold within its timeout
    SENSOR_TIMEOUT = "sensor_timeout"
    #: the task asked to be skipped (``phloem.skip()``)
    SKIP = "skip"


class RunType(Text):
    """What started a run."""

    MANUAL = "manual"  # phloem run, phloem trigger, the Python API
    SCHEDULED = "scheduled"  # its pipeline's schedule
    BACKFILL = "backfill"  # phloem backfill
    ASSET = "asset"  # an update of an asset it consumes
    TRIGGERED = "triggered"  # phloem.trigger in a task of another run (see triggered_by)


class SensorMode(Text):
    """How a sensor waits between pokes."""

    POKE = "poke"  # in one attempt, keeping its worker slot
    RESCHEDULE = "reschedule"  # one attempt per poke, giving the slot back in between


class AttemptState(Text):
    """Where one attempt stands, as its row in the store records it: the state its task
    instance took while the attempt was current, or ``interrupted`` when the driver that
    handed it out stopped and took it back."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"

    @classmethod
    def of(cls, state: TaskState) -> AttemptState:
        """What the current attempt's row records when its instance moves to ``state``."""
        if state is TaskState.SCHEDULED:
            return cls.INTERRUPTED
        return cls(state.value)  # an instance leaves QUEUED/RUNNING only for these


class DriverRole(Text):
    """Who drives a run (the first part of a lease holder's name)."""

    SCHEDULER = "scheduler"  # a phloem scheduler (or server)
    RUN = "run"  # phloem run / phloem.run, in the caller's process
    RETRY = "retry"  # phloem retry / phloem.retry


class ExecutorKind(Text):
    """Where attempts run."""

    INLINE = "inline"  # in the driver's own process, one at a time
    LOCAL = "local"  # long-lived worker processes on this machine
    RAY = "ray"  # long-lived Ray actors on a Ray cluster (PHLOEM_RAY_ADDRESS)


class BreakerPhase(Text):
    """A circuit breaker's phase (``phloem.breaker``)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class RunState(Text):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (RunState.SUCCESS, RunState.FAILED)


T = TaskState
TERMINAL_TASK_STATES = frozenset({T.SUCCESS, T.FAILED, T.SKIPPED, T.UPSTREAM_FAILED, T.CACHED})
#: States whose value downstream tasks may read.
SUCCESS_STATES = frozenset({T.SUCCESS, T.CACHED})
#: States in which an attempt is (or may be) executing somewhere.
ACTIVE_TASK_STATES = frozenset({T.QUEUED, T.RUNNING})

#: Allowed transitions.  Terminal states may go back to PENDING only through an explicit
#: retry/clear by a person (``phloem retry``), never by the engine on its own.
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    T.PENDING: frozenset({T.SCHEDULED, T.SKIPPED, T.UPSTREAM_FAILED, T.CACHED, T.FAILED}),
    # cached: the driver found the instance's output in the cache as it became ready
    T.SCHEDULED: frozenset({T.QUEUED, T.SKIPPED, T.UPSTREAM_FAILED, T.PENDING, T.CACHED}),
    T.QUEUED: frozenset(
        {
            T.RUNNING,
            T.SUCCESS,
            T.FAILED,
            T.UP_FOR_RETRY,
            T.UP_FOR_RESCHEDULE,
            T.SKIPPED,
            T.SCHEDULED,
        }
    ),
    T.RUNNING: frozenset(
        {T.SUCCESS, T.FAILED, T.UP_FOR_RETRY, T.UP_FOR_RESCHEDULE, T.SKIPPED, T.SCHEDULED}
    ),
    T.UP_FOR_RETRY: frozenset({T.SCHEDULED, T.QUEUED, T.FAILED}),
    T.UP_FOR_RESCHEDULE: frozenset({T.SCHEDULED, T.QUEUED, T.FAILED, T.SKIPPED}),
    T.SUCCESS: frozenset({T.PENDING}),
    T.FAILED: frozenset({T.PENDING}),
    T.SKIPPED: frozenset({T.PENDING}),
    # a branch that ends after another upstream failed still skips the tasks it did not follow
    T.UPSTREAM_FAILED: frozenset({T.PENDING, T.SKIPPED}),
    T.CACHED: frozenset({T.PENDING}),
}

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.SUCCESS, RunState.FAILED}),
    RunState.RUNNING: frozenset({RunState.SUCCESS, RunState.FAILED}),
    # reopened: RUNNING when its driver resumes it at once (retry), QUEUED when it waits for
    # a scheduler like any new run (a backfill rerun, bound by its limits)
    RunState.SUCCESS: frozenset({RunState.RUNNING, RunState.QUEUED}),
    RunState.FAILED: frozenset({RunState.RUNNING, RunState.QUEUED}),
}


def task_transition_allowed(old: TaskState, new: TaskState) -> bool:
    return new in TASK_TRANSITIONS[old]


def run_transition_allowed(old: RunState, new: RunState) -> bool:
    return new in RUN_TRANSITIONS[old]


class TriggerRule(Text):
    """When a task may run, given the states of its upstream tasks (Airflow's semantics)."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"


def assert_never(value: NoReturn) -> NoReturn:
    """The end of an exhaustive match: mypy rejects a call any value can still reach, so
    adding a member to an enum shows every place that must handle it."""
    raise AssertionError(f"unhandled value: {value!r}")
