"""Where attempts run: inline (this process) or local worker processes."""

from phloem.config import DEFAULT_LOG_MAX_BYTES
from phloem.executors.base import Executor, Report, Started


def make_executor(
    kind: "str | Executor", workers: int, *, log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
) -> Executor:
    """``log_max_bytes``: the most one attempt's log keeps."""
    if not isinstance(kind, str):
        return kind
    if kind == "inline":
        from phloem.executors.inline import InlineExecutor

        return InlineExecutor(log_max_bytes=log_max_bytes)
    if kind == "local":
        from phloem.executors.local import LocalExecutor

        return LocalExecutor(workers, log_max_bytes=log_max_bytes)
    from phloem.errors import PhloemError

    raise PhloemError(f"unknown executor '{kind}'; use 'inline' or 'local'")


__all__ = ["Executor", "Report", "Started", "make_executor"]
