"""Run one attempt: rebuild the inputs, call the function, capture logs, store the output."""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from phloem.artifacts import ArtifactRef, ArtifactStore, Inline, decode_output, encode_output
from phloem.artifacts.codec import from_stored_json, to_stored_json
from phloem.context import Deferred, TaskContext, activate, as_datetime, deactivate
from phloem.dsl.spec import TaskSpec
from phloem.errors import Fail, SerializationError
from phloem.runner.attempt import Attempt, Element, Out, OutList, Result
from phloem.runner.logs import LazyLogFile, attempt_logger
from phloem.secrets import Masker, masking


class SkipTask(Exception):
    """Raise (or call ``phloem.skip()``) inside a task to end it as skipped."""


class _Timeout(BaseException):
    pass


def run_attempt(
    attempt: Attempt,
    spec: TaskSpec,
    artifacts: ArtifactStore,
    *,
    enforce_timeout: bool = False,
    now: Callable[[], float] = time.time,
) -> Result:
    """Never raises for a task's own failure: every outcome is a Result.

    Secrets the task obtains (``phloem.connection()``) are masked in its log and error.
    """
    masker = Masker()
    with masking(masker):
        result = _run(attempt, spec, artifacts, masker, enforce_timeout, now)
    if result.error and len(masker):
        result = replace(result, error=masker.mask(result.error))
    return result


def _run(
    attempt: Attempt,
    spec: TaskSpec,
    artifacts: ArtifactStore,
    masker: Masker,
    enforce_timeout: bool,
    now: Callable[[], float],
) -> Result:
    started = now()
    stream = LazyLogFile(attempt.log_path, masker)
    logger = attempt_logger(f"phloem.task.{attempt.task_id}", stream)
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
        log=logger,
        store_url=attempt.store_url,
    )
    token = activate(ctx)
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                args = tuple(_resolve(a, artifacts, inputs) for a in attempt.args)
                kwargs = {k: _resolve(v, artifacts, inputs) for k, v in attempt.kwargs.items()}
                timeout = attempt.timeout if enforce_timeout else None
                with _alarm(timeout, attempt):
                    outcome, value = _call(spec, attempt, args, kwargs, now)
            except SkipTask as exc:
                return Result(
                    **base,
                    outcome="skip",
                    ended_at=now(),
                    error=str(exc) or None,
                    inputs=tuple(inputs),
                )
            except _Timeout:
                msg = f"timed out after {attempt.timeout:g}s (attempt {attempt.try_number})"
                stream.write(f"phloem: {msg}\n")
                return Result(
                    **base, outcome="failed", ended_at=now(), error=msg, inputs=tuple(inputs)
                )
            except SystemExit as exc:
                msg = f"the task called sys.exit({exc.code!r}); raise an exception to fail it"
                stream.write(f"phloem: {msg}\n")
                return Result(
                    **base, outcome="failed", ended_at=now(), error=msg, inputs=tuple(inputs)
                )
            except Exception as exc:
                stream.write(traceback.format_exc())
                retryable = _retryable(exc, spec)
                return Result(
                    **base,
                    outcome="failed",
                    ended_at=now(),
                    error=_one_line(exc),
                    retryable=retryable,
                    inputs=tuple(inputs),
                )
            if outcome != "success":
                return Result(**base, outcome=outcome, ended_at=now(), inputs=tuple(inputs))
            try:
                follow = _follow(spec, value) if spec.is_branch else None
                stored, info, length = _store(value, artifacts)
            except (SerializationError, ValueError) as exc:
                msg = f"{_one_line(exc)} (task '{attempt.task_id}')"
                stream.write(f"phloem: {msg}\n")
                return Result(
                    **base,
                    outcome="failed",
                    ended_at=now(),
                    error=msg,
                    retryable=False,
                    inputs=tuple(inputs),
                )
            return Result(
                **base,
                outcome="success",
                ended_at=now(),
                output=stored,
                map_length=length,
                follow=follow,
                artifacts=info,
                inputs=tuple(inputs),
            )
    finally:
        deactivate(token)
        stream.close()


def _call(
    spec: TaskSpec,
    attempt: Attempt,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    now: Callable[[], float],
) -> tuple[str, Any]:
    if not spec.is_sensor:
        return "success", spec.fn(*args, **kwargs)
    sensor = spec.options.sensor
    assert sensor is not None
    deadline = attempt.first_started_at + sensor.timeout
    while True:
        value = spec.fn(*args, **kwargs)
        if value:
            return "success", value
        if sensor.mode == "reschedule":
            return "reschedule", None
        remaining = deadline - now()
        if remaining <= 0:
            return "sensor_timeout", None
        time.sleep(min(sensor.poke_interval, remaining))


@contextlib.contextmanager
def _alarm(timeout: float | None, attempt: Attempt) -> Iterator[None]:
    """Interrupt the task at its timeout when it runs on the main thread (inline executor)."""
    if not timeout or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _fire(signum: int, frame: Any) -> None:
        raise _Timeout()

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
        return _pick(_decode(value.stored, artifacts, inputs), value.path)
    if isinstance(value, OutList):
        return _pick([_decode(s, artifacts, inputs) for s in value.stored], value.path)
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
    obj = from_stored_json(stored)
    if isinstance(obj, ArtifactRef):
        inputs.append(obj.digest)
    return decode_output(obj, artifacts)


def _pick(value: Any, path: tuple[str | int, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def _store(value: Any, artifacts: ArtifactStore) -> tuple[str, tuple[ArtifactRef, ...], int | None]:
    value = _plain(value)
    obj = encode_output(value, artifacts)
    length = len(value) if isinstance(value, (list, tuple)) else None
    if isinstance(obj, Inline):
        return to_stored_json(obj), (), length
    return to_stored_json(obj), (obj,), length


def _plain(value: Any) -> Any:
    """NumPy scalars (a metric from sklearn is one) become Python numbers so they stay
    readable JSON instead of pickled artifacts."""
    t = type(value)
    if t.__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if t is dict:
        return {k: _plain(v) for k, v in value.items()}
    if t is list:
        return [_plain(v) for v in value]
    return value


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {first}" if first else name
