"""The exception tree of phloem.

Every error phloem raises derives from :class:`PhloemError` and carries the context it
happened in (pipeline, task, run, attempt), so a message can say where and what to do::

    PhloemError
    +-- DefinitionError          the author's pipeline code is wrong (cycle, unknown option, ...)
    |   +-- CycleError
    +-- ParamError               a run parameter is unknown or of the wrong type
    +-- PipelineNotFound         a path or name does not hold the pipeline asked for
    +-- RunNotFound              no run with that id in the store
    +-- TaskNotFound             a pipeline has no task of that id
    +-- RunConflict              a run for that (pipeline, logical date) exists already
    +-- PoolNotFound             a task names a pool the store does not define (or too small)
    +-- StoreError               the store cannot be used (schema too new, locked, ...)
    |   +-- StoreLocked          another process drives this SQLite store
    +-- SerializationError       a value cannot be stored as an output or artifact
    +-- ArtifactError            an artifact is missing or fails its integrity check
    +-- TaskFailed               raised by the runner for a failed attempt (carries the message)
    +-- Fail                     raised by a task to fail at once, whatever its retries
    |   +-- GateFailed           ``phloem.gate``: metrics missed their conditions (each listed)
    |   +-- ValidationFailed     ``phloem.expect(...).check()``: data broke its expectations
    |   +-- ConditionError       a gate condition or an expectation is written wrongly
    +-- WatermarkError           a watermark cannot move as asked (backwards, another type)
    +-- CommandFailed            a shell task's command exited with a non-zero status
    +-- VariableNotFound         no variable of that key, and no default was given
    +-- ConnectionNotFound       no connection of that name
    +-- SecretError              a secret cannot be encrypted or decrypted with the configured key
    +-- AccountError             a user, token or role given to the server's accounts is not valid
        +-- AccountNotFound      no user or token of that name
        +-- LastAdmin            the change would leave the server with no enabled admin
    +-- BadCursor                a page cursor this listing did not make
    +-- RunBusy                  another process drives the run (retry it once that ends)
    +-- ServerError              the phloem server refused a request, failed, or cannot be reached
    +-- OutputNotFound           no successful output of the pipeline, task or date asked for
    +-- LineageError             a lineage target is unknown, ambiguous or cannot be resolved
    |   +-- ArtifactNotFound     no artifact with that hash (or hash prefix) is recorded
    +-- ModelNotFound            no model, version or alias of that name in the registry
    +-- EvalDataMismatch         two model versions were evaluated on different data
    +-- BreakerOpen              a call was refused: its circuit breaker is open
    +-- AlertError               an alert rule or channel is declared or configured wrongly
"""

from __future__ import annotations


class PhloemError(Exception):
    """Root of all phloem errors; ``context`` names where it happened."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class DefinitionError(PhloemError):
    """The pipeline as written cannot be run; the message says where and how to fix it."""


class CycleError(DefinitionError):
    """The task graph has a cycle."""


class ParamError(PhloemError):
    """A run parameter is unknown or does not match the declared type."""


class PipelineNotFound(PhloemError):
    """The file or name given does not hold the pipeline asked for."""


class RunNotFound(PhloemError):
    """No run with that id exists in the store."""


class TaskNotFound(PhloemError):
    """A pipeline has no task with that id."""


class RunConflict(PhloemError):
    """A run already exists for the same pipeline and logical date (or idempotency key)."""


class PoolNotFound(PhloemError):
    """A task names a pool the store does not define, or takes more slots than it has."""


class StoreError(PhloemError):
    """The store cannot be used as asked."""


class StoreLocked(StoreError):
    """Another process already drives this SQLite store."""


class SerializationError(PhloemError):
    """A task's output (or input) cannot be serialized."""


class ArtifactError(PhloemError):
    """An artifact is missing, or its content does not match its checksum."""


class TaskFailed(PhloemError):
    """An attempt failed; ``message`` is the one-line reason shown to users."""


class Fail(PhloemError):
    """Raise it in a task to fail the task at once, without its retries: for a failure that a
    retry cannot fix (a changed schema, bad input), as Airflow's AirflowFailException."""


class GateFailed(Fail):
    """``phloem.gate`` found metrics that miss their conditions; ``verdict`` holds every
    check. Not retried: the same model gives the same metrics."""

    def __init__(self, message: str, verdict: object) -> None:
        super().__init__(message)
        self.verdict = verdict


class ValidationFailed(Fail):
    """Data broke expectations checked with ``on_fail="fail"``; ``report`` holds every
    check. Not retried: the same data breaks them again."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


class ConditionError(Fail):
    """A gate condition or an expectation is written wrongly (unknown operator, a value that
    is not a number, a metric or column that does not exist); not retried either."""


class WatermarkError(PhloemError):
    """A watermark cannot move as asked: backwards without ``force``, to a value of another
    type, or from outside a task."""


class CommandFailed(PhloemError):
    """A shell task's command exited with a non-zero status; ``stderr_tail`` holds its last
    lines of error output."""

    def __init__(self, message: str, returncode: int, stderr_tail: list[str]) -> None:
        super().__init__(message, returncode=returncode)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class VariableNotFound(PhloemError):
    """No variable has that key (and the caller gave no default)."""


class ConnectionNotFound(PhloemError):
    """No connection has that name."""


class SecretError(PhloemError):
    """The configured secret key is missing or invalid, or does not decrypt a stored secret."""


class AccountError(PhloemError):
    """A user, token or role is not valid (a name taken, a role that does not exist, ...)."""


class AccountNotFound(AccountError):
    """No user (or token) of that name."""


class LastAdmin(AccountError):
    """A change to the last enabled admin that would leave nobody able to manage the server's
    users (demoting, disabling or removing it), refused whoever asks: the CLI or the API."""
class OutputNotFound(PhloemError):
    """No run has a successful output of the pipeline and task asked for (on that date, for
    that map index); the message says what exists instead."""


class LineageError(PhloemError):
    """A lineage target is unknown, ambiguous (an artifact hash prefix that matches several)
    or of a kind no resolver can read (a model version without the model registry)."""


class ArtifactNotFound(LineageError):
    """No artifact with that hash, or hash prefix, is recorded in the store."""


class BadCursor(PhloemError):
    """A page cursor that the listing did not make (altered, truncated, or another's)."""


class RunBusy(PhloemError):
    """Another process drives the run now; what was asked needs the run to itself."""


class ServerError(PhloemError):
    """The phloem server refused a request for a reason of its own (credentials, a malformed
    request), failed, or cannot be reached; ``status`` is the HTTP status (0: no answer) and
    ``problem`` the server's problem document."""

    def __init__(self, message: str, status: int, problem: dict[str, object]) -> None:
        super().__init__(message, status=status)
        self.status = status
        self.problem = problem


class ModelNotFound(PhloemError):
    """The registry has no model, version or alias by that name (the message lists what it
    has), or the version's attempt has not succeeded."""


class EvalDataMismatch(PhloemError):
    """``register_if_better`` was asked to compare metrics measured on different evaluation
    data (pass ``allow_different_eval=True`` to compare anyway)."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none (a bare
    ``ConnectionResetError()``): what a one-line log or error message quotes."""
    try:
        lines = str(exc).strip().splitlines()
    except Exception:  # a broken __str__ must not break the report of it
        lines = []
    return lines[0] if lines else type(exc).__name__


class BreakerOpen(PhloemError):
    """A call was refused because its circuit breaker (``phloem.breaker``) is open."""


class AlertError(PhloemError):
    """An alert rule, channel or the mail server setting is wrong; the message says how."""
