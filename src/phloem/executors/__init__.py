"""Where attempts run: inline (this process) or local worker processes."""

from phloem.executors.base import Executor, Report, Started


def make_executor(kind: "str | Executor", workers: int) -> Executor:
    if not isinstance(kind, str):
        return kind
    if kind == "inline":
        from phloem.executors.inline import InlineExecutor

        return InlineExecutor()
    if kind == "local":
        from phloem.executors.local import LocalExecutor

        return LocalExecutor(workers)
    from phloem.errors import PhloemError

    raise PhloemError(f"unknown executor '{kind}'; use 'inline' or 'local'")


__all__ = ["Executor", "Report", "Started", "make_executor"]
