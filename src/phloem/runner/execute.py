"""Run one attempt: rebuild the inputs, call the function, capture its output, store its result."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, TextIO

from phloem.artifacts import ArtifactRef, ArtifactStore
from phloem.artifacts.active import storing_in
from phloem.artifacts.codec import DEFAULT_INLINE_LIMIT, from_stored_json, to_stored_json
from phloem.artifacts.output import Output
from phloem.artifacts.structured import Encoder, pick, pick_value
from phloem.context import Deferred, TaskContext, activate, as_datetime, deactivate
from phloem.dsl.spec import TaskSpec
from phloem.effects import OutputMetadataKept, collect, record
from phloem.errors import Fail, SerializationError
from phloem.runner.attempt import (
    Attempt,
    Element,
    Out,
    OutList,
    Result,
    failed_result,
    with_effects,
)
from phloem.runner.capture import OutputCapture
from phloem.runner.failures import (
    AttemptTimeout,
    classify,
    clean,
    one_line,
    passes_through,
)
from phloem.runner.logs import DEFAULT_LOG_MAX_BYTES, AttemptLog, attempt_logger
from phloem.secrets import Masker, masking
from phloem.states import AttemptOutcome, SensorMode


class SkipTask(Exception):
    """Raise (or call ``phloem.skip()``) inside a task to end it as skipped."""


def run_attempt(
    attempt: Attempt,
    spec: TaskSpec,
    artifacts: ArtifactStore,
    *,
    capture: OutputCapture,
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    enforce_timeout: bool = False,
    interruptible: bool = False,
    now: Callable[[], float] = time.time,
) -> Result:
    """Never raises for anything the task does: every outcome is a Result.

    Only phloem's own stop passes through (see :mod:`phloem.runner.failures`;
    ``interruptible``: a ``KeyboardInterrupt`` is the user's Ctrl-C, as in the inline
    executor). Everything the attempt writes goes to its log through ``capture``; secrets the
    task obtains (``phloem.connection()``) are masked in its log and error.
    """
    masker = Masker()
    log = AttemptLog(attempt.log_path, masker, log_max_bytes)
    started = now()
    note: str | None = None
    try:
        with (
            masking(masker),
            capture.attempt(log) as (_, err),
            collect() as effects,
            storing_in(artifacts),
        ):
            result, note = _run(
                attempt, spec, artifacts, err, started, enforce_timeout, interruptible, now
            )
        if effects:
            result = with_effects(result, tuple(effects))
    except BaseException as exc:
        if passes_through(exc, interruptible=interruptible):
            raise
        # the task's own failures are handled inside; this is the capture or the log failing
        note = traceback.format_exc()
        why = f"phloem could not run the attempt: {one_line(exc)}"
        result = failed_result(attempt, why, started=started, ended=now())
    finally:
        if note is not None:
            log.note(note)
        log.close()
    if log.problem is not None:
        capture.warn(masker.mask(log.problem))
    if result.error:
        result = replace(result, error=clean(masker.mask(result.error)))
    return result


def _run(
    attempt: Attempt,
    spec: TaskSpec,
    artifacts: ArtifactStore,
    err: TextIO,
    started: float,
    enforce_timeout: bool,
    interruptible: bool,
    now: Callable[[], float],
) -> tuple[Result, str | None]:
    """The attempt boundary: the task's code and the storing of its output. Returns the
    result and what to add to the log after the task's own output (its traceback)."""
    inputs: list[str] = []
    base: dict[str, Any] = dict(
        run_id=attempt.run_id,
        task_id=attempt.task_id,
        map_index=attempt.map_index,
        try_number=attempt.try_number,
        started_at=started,
    )
    logical_date = as_datetime(attempt.logical_date) or datetime.now(timezone.utc)
    ctx = TaskContext(
        run_id=attempt.run_id,
        pipeline=attempt.pipeline,
        task_id=attempt.task_id,
        map_index=attempt.map_index if attempt.map_index >= 0 else None,
        try_number=attempt.try_number,
        logical_date=logical_date,
        data_interval_start=as_datetime(attempt.data_interval_start) or logical_date,
        data_interval_end=as_datetime(attempt.data_interval_end) or logical_date,
        params=attempt.params,
        log=attempt_logger(f"phloem.task.{attempt.task_id}", err),
        store_url=attempt.store_url,
        run_type=attempt.run_type,
        artifacts=artifacts,
        reads=inputs,
    )
    token = activate(ctx)
    storing = False
    try:
        args = tuple(_resolve(a, artifacts, inputs) for a in attempt.args)
        kwargs = {k: _resolve(v, artifacts, inputs) for k, v in attempt.kwargs.items()}
        timeout = attempt.timeout if enforce_timeout else None
        with _alarm(timeout, attempt):
            outcome, value = _call(spec, attempt, args, kwargs, now)
        if outcome is not AttemptOutcome.SUCCESS:
            return Result(**base, outcome=outcome, ended_at=now(), inputs=tuple(inputs)), None
        storing = True
        follow = _follow(spec, value) if spec.is_branch else None
        stored, info, length = _store(value, artifacts)
        return (
            Result(
                **base,
                outcome=AttemptOutcome.SUCCESS,
                ended_at=now(),
                output=stored,
                map_length=length,
                follow=follow,
                artifacts=info,
                inputs=tuple(inputs),
            ),
            None,
        )
    except SkipTask as exc:
        skipped = Result(
            **base,
            outcome=AttemptOutcome.SKIP,
            ended_at=now(),
            error=str(exc) or None,
            inputs=tuple(inputs),
        )
        return skipped, None
    except BaseException as exc:  # every failure of a task is a failed task
        if passes_through(exc, interruptible=interruptible):
            raise
        f = classify(
            exc,
            attempt.task_id,
            storing=storing,
            timeout=attempt.timeout,
            try_number=attempt.try_number,
            retryable=lambda e: _retryable(e, spec),
            memory_limit=attempt.memory_limit,
        )
        failed = Result(
            **base,
            outcome=AttemptOutcome.FAILED,
            ended_at=now(),
            error=f.message,
            retryable=f.retryable,
            inputs=tuple(inputs),
        )
        return failed, f.note
    finally:
        deactivate(token)


def _call(
    spec: TaskSpec,
    attempt: Attempt,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    now: Callable[[], float],
) -> tuple[AttemptOutcome, Any]:
    if not spec.is_sensor:
        guard = spec.options.breaker
        if guard is None:
            return AttemptOutcome.SUCCESS, spec.fn(*args, **kwargs)
        from phloem import breakers  # here: only a task behind a breaker needs it

        probe = breakers.enter(guard)
        try:
            value = spec.fn(*args, **kwargs)
        except BaseException as exc:
            breakers.leave(guard, probe, exc)
            raise
        breakers.leave(guard, probe, None)
        return AttemptOutcome.SUCCESS, value
    sensor = spec.options.sensor
    assert sensor is not None
    deadline = attempt.first_started_at + sensor.timeout
    while True:
        value = spec.fn(*args, **kwargs)
        if value:
            return AttemptOutcome.SUCCESS, value
        if sensor.mode is SensorMode.RESCHEDULE:
            return AttemptOutcome.RESCHEDULE, None
        remaining = deadline - now()
        if remaining <= 0:
            return AttemptOutcome.SENSOR_TIMEOUT, None
        time.sleep(min(sensor.poke_interval, remaining))


#: what an attempt without an alarm enters (reusable; on every attempt of the hot path)
_NO_ALARM = contextlib.nullcontext()


def _alarm(timeout: float | None, attempt: Attempt) -> contextlib.AbstractContextManager[None]:
    """Interrupt the task at its timeout when it runs on the main thread (inline executor)."""
    if not timeout or threading.current_thread() is not threading.main_thread():
        return _NO_ALARM
    return _alarm_at(timeout)


@contextlib.contextmanager
def _alarm_at(timeout: float) -> Iterator[None]:
    def _fire(signum: int, frame: Any) -> None:
        raise AttemptTimeout()

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _retryable(exc: BaseException, spec: TaskSpec) -> bool:
    """May the engine retry after ``exc``? Not after ``phloem.Fail``, an output that cannot be
    stored, a class in ``no_retry_on``, or one outside a non-empty ``retry_on``."""
    opts = spec.options
    if isinstance(exc, (Fail, SerializationError)):
        return False
    if opts.no_retry_on and isinstance(exc, opts.no_retry_on):
        return False
    return not opts.retry_on or isinstance(exc, opts.retry_on)


def _resolve(value: Any, artifacts: ArtifactStore, inputs: list[str]) -> Any:
    if isinstance(value, Element):
        ref = from_stored_json(value.stored)
        assert isinstance(ref, ArtifactRef)
        inputs.append(ref.digest)
        # the sequence is decoded once per worker and shared; each task gets its own copy
        # of its element, so one task's changes cannot reach another
        return copy.deepcopy(artifacts.get_shared(ref)[value.index])  # type: ignore[index]
    if isinstance(value, Out):
        if value.stored is None:
            return pick_value(None, value.path)
        # a structured output is read only as far as the path goes: ref["model"] loads the
        # model, not the data frame stored beside it
        return pick(from_stored_json(value.stored), value.path, artifacts, inputs)
    if isinstance(value, OutList):
        return pick_value([_decode(s, artifacts, inputs) for s in value.stored], value.path)
    if isinstance(value, Deferred):
        return value.resolve()
    if isinstance(value, list):
        return [_resolve(v, artifacts, inputs) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, artifacts, inputs) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, artifacts, inputs) for k, v in value.items()}
    return value


def _decode(stored: str | None, artifacts: ArtifactStore, inputs: list[str]) -> Any:
    if stored is None:
        return None
    return pick(from_stored_json(stored), (), artifacts, inputs)


def _store(value: Any, artifacts: ArtifactStore) -> tuple[str, tuple[ArtifactRef, ...], int | None]:
    """The stored text of ``value``, the artifacts written for it, and its length if it is a
    sequence (to map over). The metadata found (or given with ``phloem.Output``) is recorded
    as an effect of the attempt: it lands with its success, never without it."""
    scalar = _scalar_json(value)
    if scalar is not None:
        return scalar, (), None
    enc = Encoder(artifacts, plain_numbers=True)
    node = enc.encode(value, DEFAULT_INLINE_LIMIT)
    inner = value.value if isinstance(value, Output) else value
    length = len(inner) if isinstance(inner, (list, tuple)) else None
    for m in enc.metadata:
        record(OutputMetadataKept(json.dumps(list(m.path)), m.digest, json.dumps(m.metadata)))
    return to_stored_json(node), tuple(enc.refs), length


def _scalar_json(value: Any) -> str | None:
    """The stored text of a JSON scalar (``None``, a bool, a 64-bit int, a finite float), as
    ``to_stored_json`` writes it, without an encoder: most small tasks return one. None for
    anything else (even a subclass of int)."""
    t = type(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int and -(1 << 63) <= value < 1 << 63:
        return int.__repr__(value)
    if t is float and math.isfinite(value):
        return float.__repr__(value)
    return None


def _follow(spec: TaskSpec, value: Any) -> tuple[str, ...]:
    """Normalize a branch's return value to the ids of direct downstream tasks to follow."""
    items = [] if value is None else value if isinstance(value, (list, tuple, set)) else [value]
    chosen: list[str] = []
    for item in items:
        name = getattr(item, "__phloem_task__", None) or getattr(item, "task_id", None) or item
        if not isinstance(name, str):
            raise ValueError(
                f"branch '{spec.task_id}' returned {item!r}; return a task name, a list of "
                "names, or None to skip all"
            )
        matches = [
            d
            for d in spec.downstream
            if d == name or d.rsplit(".", 1)[-1] == name or d.split("__")[0] == name
        ]
        if not matches:
            raise ValueError(
                f"branch '{spec.task_id}' returned '{name}', which is not one of its direct "
                f"downstream tasks ({', '.join(spec.downstream) or 'none'})"
            )
        chosen.extend(matches)
    return tuple(dict.fromkeys(chosen))
