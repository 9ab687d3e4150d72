"""``@task``, ``@task.branch`` and ``@sensor``: plain functions that record metadata only."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, overload

from phloem.dsl.builder import caller_location, current_builder
from phloem.dsl.names import check_name
from phloem.dsl.options import SensorOptions, TaskOptions, build_options
from phloem.dsl.refs import TaskRef
from phloem.errors import DefinitionError

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A task definition. Call it inside a ``@pipeline`` body to add it; ``.fn`` is the plain
    function, for unit tests."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions, explicit_name: bool = False):
        self.fn = fn
        self.options = options
        self._explicit_name = explicit_name
        self.__phloem_task__ = options.name
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskRef:
        builder = current_builder()
        if builder is None:
            raise DefinitionError(
                f"{caller_location()}: task '{self.options.name}' was called outside a @pipeline "
                f"body; to run the plain function (e.g. in a unit test) call "
                f"{self.options.name}.fn(...)"
            )
        return builder.add_task(self.fn, self.options, self._explicit_name, args, kwargs, None)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy with other options, e.g. ``train.with_options(name="train_rf", retries=2)``."""
        where = f"{caller_location()}: {self.options.name}.with_options"
        opts = build_options(self.options, options, where)
        return Task(self.fn, opts, explicit_name=self._explicit_name or "name" in options)

    def partial(self, **kwargs: Any) -> Partial:
        """Fix arguments shared by every mapped instance; follow with ``.expand(...)``."""
        return Partial(self, kwargs)

    def expand(self, **mapped: Any) -> TaskRef:
        """One task instance per element (cross product over several keywords)."""
        return Partial(self, {}).expand(**mapped)

    def __repr__(self) -> str:
        return f"<phloem task {self.options.name}>"


class Partial:
    __slots__ = ("fixed", "task")

    def __init__(self, task: Task[Any, Any], fixed: Mapping[str, Any]) -> None:
        self.task = task
        self.fixed = dict(fixed)

    def expand(self, **mapped: Any) -> TaskRef:
        builder = current_builder()
        if builder is None:
            raise DefinitionError(
                f"{caller_location()}: {self.task.options.name}.expand() was called outside a "
                "@pipeline body"
            )
        overlap = set(mapped) & set(self.fixed)
        if overlap:
            raise DefinitionError(
                f"{caller_location()}: argument(s) {sorted(overlap)} of "
                f"'{self.task.options.name}' are given to both partial() and expand()"
            )
        t = self.task
        return builder.add_task(t.fn, t.options, t._explicit_name, (), self.fixed, mapped)


def _make(
    fn: Callable[..., Any] | None, options: Mapping[str, Any], kind: str, decorator: str
) -> Any:
    def wrap(f: Callable[..., Any]) -> Task[Any, Any]:
        if not callable(f):
            raise DefinitionError(f"{decorator} decorates a function, got {f!r}")
        code = getattr(f, "__code__", None)
        site = f"{code.co_filename}:{code.co_firstlineno}" if code else caller_location(3)
        where = f"{site}: {decorator} on {getattr(f, '__name__', f)!r}"
        name = f.__name__ if "name" in options else check_name(f.__name__, "task", where)
        base = TaskOptions(name=name, kind=kind)
        if kind == "sensor":
            base = TaskOptions(name=name, kind=kind, sensor=SensorOptions())
        opts = build_options(base, options, where)
        return Task(f, opts, explicit_name="name" in options)

    if fn is not None:
        return wrap(fn)
    return wrap


class _TaskDecorator:
    """``@task``, ``@task(retries=3)`` and ``@task.branch``."""

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...
    def __call__(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        return _make(fn, options, "task", "@task")

    def branch(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """The function returns the task name(s) to follow; other direct downstream tasks
        are skipped."""
        return _make(fn, options, "branch", "@task.branch")


task = _TaskDecorator()


@overload
def sensor(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def sensor(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def sensor(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """A task that waits: the function returns a falsy value until its condition holds.

    Options: ``poke_interval`` and ``timeout`` (seconds or timedelta), ``mode`` ("poke" keeps
    its worker slot, "reschedule" gives it back between pokes), ``soft_fail`` (skip instead of
    fail on timeout), plus any task option.
    """
    return _make(fn, options, "sensor", "@sensor")
