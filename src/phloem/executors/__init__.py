"""Where attempts run: inline (this process), local worker processes, or a Ray cluster."""

from phloem.config import DEFAULT_LOG_MAX_BYTES
from phloem.errors import PhloemError
from phloem.executors.base import Executor, Report, Started
from phloem.states import ExecutorKind, assert_never


def make_executor(
    kind: "ExecutorKind | str | Executor",
    workers: int,
    *,
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    ray_address: str | None = None,
    heartbeat_timeout: float | None = None,
) -> Executor:
    """An executor of ``kind`` (one given is returned as it is); ``log_max_bytes``: the most
    one attempt's log keeps; ``ray_address``: the Ray cluster to join (None: a local Ray);
    ``heartbeat_timeout``: seconds a Ray worker may go silent before its attempt fails."""
    if not isinstance(kind, str):
        return kind
    try:
        which = ExecutorKind(kind)
    except ValueError:
        names = " or ".join(f"'{k.value}'" for k in ExecutorKind)
        raise PhloemError(f"unknown executor '{kind}'; use {names}") from None
    match which:
        case ExecutorKind.INLINE:
            from phloem.executors.inline import InlineExecutor

            return InlineExecutor(log_max_bytes=log_max_bytes)
        case ExecutorKind.LOCAL:
            from phloem.executors.local import LocalExecutor

            return LocalExecutor(workers, log_max_bytes=log_max_bytes)
        case ExecutorKind.RAY:
            from phloem.executors.ray import DEFAULT_HEARTBEAT_TIMEOUT, RayExecutor

            return RayExecutor(
                address=ray_address,
                log_max_bytes=log_max_bytes,
                heartbeat_timeout=heartbeat_timeout or DEFAULT_HEARTBEAT_TIMEOUT,
            )
        case _:
            assert_never(which)


__all__ = ["Executor", "Report", "Started", "make_executor"]
