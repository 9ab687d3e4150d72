"""How an attempt that did not end well is told: one line, masked, and never a crashed worker.

Everything a task can raise, ``BaseException`` included (``asyncio.CancelledError``, a
``KeyboardInterrupt`` raised by hand, ``sys.exit()``), fails its attempt with its own message.
Only phloem's own stop passes through: :class:`WorkerShutdown`, and ``KeyboardInterrupt``
where it is the user's Ctrl-C (the inline executor runs tasks in the driver's main thread;
workers ignore SIGINT, so there a ``KeyboardInterrupt`` can only come from the task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phloem.errors import SerializationError

#: Longer error messages are cut (the whole traceback is in the attempt's log).
MAX_ERROR_CHARS = 2000


class WorkerShutdown(SystemExit):
    """Raised by phloem itself to stop a worker: the attempt boundary lets it through."""


class AttemptTimeout(BaseException):
    """Raised in the task's thread when its timeout fires (inline executor)."""


@dataclass(frozen=True, slots=True)
class Failure:
    message: str
    retryable: bool
    #: the traceback (or phloem's own line) for the attempt's log
    note: str


def passes_through(exc: BaseException, *, interruptible: bool) -> bool:
    """True for phloem's own stop, which must end the worker (or the driver), not the attempt."""
    return isinstance(exc, WorkerShutdown) or (interruptible and isinstance(exc, KeyboardInterrupt))


#: how the error of an attempt that ran out of its memory limit begins
OUT_OF_MEMORY = "out of memory at "


def classify(
    exc: BaseException,
    task_id: str,
    *,
    storing: bool,
    timeout: float | None,
    try_number: int,
    retryable: Callable[[BaseException], bool] = lambda e: True,
    memory_limit: int | None = None,
) -> Failure:
    """What ``exc``, raised by the task (or, ``storing``, while storing its output), means;
    ``retryable`` is the task's policy for what its own code raised; ``memory_limit`` the
    memory the attempt was allowed, if it was limited."""
    import traceback

    line = one_line(exc)
    if isinstance(exc, MemoryError) and memory_limit:
        from phloem.runner.usage import human_bytes

        msg = f"{OUT_OF_MEMORY}{human_bytes(memory_limit)} ({line})"
        return Failure(msg, retryable(exc), "".join(traceback.format_exception(exc)))
    if isinstance(exc, AttemptTimeout):
        msg = f"timed out after {timeout or 0:g}s (attempt {try_number})"
        return Failure(msg, True, f"phloem: {msg}")
    if isinstance(exc, SystemExit):
        msg = f"the task called sys.exit({exc.code!r}); raise an exception to fail it"
        return Failure(msg, True, f"phloem: {msg}")
    tb = "".join(traceback.format_exception(exc))
    if isinstance(exc, KeyboardInterrupt):
        return Failure(f"the task raised {line}", retryable(exc), tb)
    if not storing:
        return Failure(line, retryable(exc), tb)
    where = f"task '{task_id}'"
    if isinstance(exc, RecursionError):
        msg = (
            f"the output of {where} is nested too deeply to store ({line}); return a flatter value"
        )
        return Failure(msg, False, tb)
    if isinstance(exc, (SerializationError, ValueError)):
        return Failure(f"{line} ({where})", False, tb)
    # a full disk or an unreachable artifact store may recover: worth a retry
    return Failure(f"cannot store the output of {where}: {line}", True, tb)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (a message that cannot be printed says so)."""
    name = type(exc).__name__
    try:
        text = str(exc).strip().splitlines()
    except Exception:  # a broken __str__ must not break the report
        return f"{name}: <message could not be printed>"
    first = text[0] if text else ""
    return f"{name}: {first}" if first else name


def clean(message: str) -> str:
    """Fit for any store and terminal: no NUL or lone surrogates, at most MAX_ERROR_CHARS."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text
