"""What a task call returns inside a pipeline body, and how arguments are recorded.

An argument is stored as a small tagged tree (``ArgSpec``) so the runner can rebuild the real
values at run time: literals stay as they are, references name the task (and item) whose output
fills them, parameters name the run parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from phloem.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class Ref:
    task_id: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Param:
    name: str


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[ArgSpec, ...]
    kind: str = "list"  # "list" | "tuple"


@dataclass(frozen=True, slots=True)
class Map:
    items: tuple[tuple[Any, ArgSpec], ...]


ArgSpec = Lit | Ref | Param | Seq | Map


class Owner(Protocol):
    """The pipeline being defined, as its task references see it (the builder, one layer up)."""

    pipeline_name: str

    def check_owned(self, node: Orderable, where: str | None = None) -> None: ...

    def order(self, ups: object, downs: object) -> None: ...

    def ends(self, task_ids: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]: ...


class Orderable:
    """A task or a group of tasks: what ``>>`` and ``<<`` put in order.

    ``a >> b`` runs every leaf of ``a`` before every root of ``b`` (a task is its own root and
    leaf) and returns ``b``, so chains read left to right; either side may be a list.
    """

    __slots__ = ()
    _builder: Owner
    #: "task" or "group", for messages
    kind = "task"

    @property
    def label(self) -> str:
        raise NotImplementedError

    def ends(self, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(roots, leaves) as task ids, as the graph stands now."""
        raise NotImplementedError

    def __rshift__(self, other: Any) -> Any:
        self._builder.order(self, other)
        return other

    def __rrshift__(self, other: Any) -> Any:
        self._builder.order(other, self)
        return self

    def __lshift__(self, other: Any) -> Any:
        self._builder.order(other, self)
        return other

    def __rlshift__(self, other: Any) -> Any:
        self._builder.order(self, other)
        return self


class TaskRef(Orderable):
    """A task inside a pipeline body: pass it to other tasks, or order it with ``>>``."""

    __slots__ = ("_builder", "path", "task_id")

    def __init__(self, builder: Owner, task_id: str, path: tuple[str | int, ...] = ()) -> None:
        self._builder = builder
        self.task_id = task_id
        self.path = path

    @property
    def label(self) -> str:
        return f"task '{self.task_id}'"

    def ends(self, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (self.task_id,), (self.task_id,)

    def __getitem__(self, key: str | int) -> TaskRef:
        return TaskRef(self._builder, self.task_id, (*self.path, key))

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"the result of task '{self.task_id}' is not known while the pipeline is being "
            "defined, so it cannot be used in 'if'/'and'/'or'; decide inside a task, or use "
            "@task.branch to choose which tasks run"
        )

    def __iter__(self) -> Any:
        raise DefinitionError(
            f"the result of task '{self.task_id}' cannot be iterated while the pipeline is being "
            "defined; to run a task once per element use other_task.expand(x=...)"
        )

    def __repr__(self) -> str:
        suffix = "".join(f"[{p!r}]" for p in self.path)
        return f"<TaskRef {self.task_id}{suffix}>"


def as_orderables(value: object, where: str) -> list[Orderable]:
    """The tasks and groups one side of ``>>`` names: one of them, or a list of them."""
    items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    for item in items:
        if isinstance(item, Orderable):
            continue
        name = getattr(item, "__phloem_task__", None)
        if name is not None:
            raise DefinitionError(
                f"{where}: task '{name}' was not called; call it ({name}()) and order its "
                "result with >> or <<"
            )
        raise DefinitionError(
            f"{where}: >> and << order tasks and groups (or lists of them); got "
            f"{item!r:.60} ({type(item).__name__}); use the value a task call returns, or the "
            "handle of `with phloem.group(...) as g:`"
        )
    return items  # type: ignore[return-value]


class ParamRef:
    """A run parameter inside a pipeline body; its value is known when the run starts."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"parameter '{self.name}' has no value while the pipeline is being defined; "
            "read it inside a task (pass it as an argument, or use phloem.context().params)"
        )

    def __repr__(self) -> str:
        return f"<ParamRef {self.name}>"


def to_argspec(value: object, builder: Owner, upstream: set[str]) -> ArgSpec:
    """Record ``value`` as an ArgSpec, collecting the task ids it depends on."""
    if isinstance(value, TaskRef):
        builder.check_owned(value)
        upstream.add(value.task_id)
        return Ref(value.task_id, value.path)
    if isinstance(value, ParamRef):
        return Param(value.name)
    if isinstance(value, Orderable):
        raise DefinitionError(
            f"{value.label} cannot be passed to a task as an argument; pass the results of its "
            "tasks, or order it with >>"
        )
    if isinstance(value, (list, tuple)):
        items = tuple(to_argspec(v, builder, upstream) for v in value)
        if all(isinstance(i, Lit) for i in items):
            return Lit(value)
        return Seq(items, "tuple" if isinstance(value, tuple) else "list")
    if isinstance(value, dict):
        pairs = tuple((k, to_argspec(v, builder, upstream)) for k, v in value.items())
        if all(isinstance(v, Lit) for _, v in pairs):
            return Lit(value)
        return Map(pairs)
    if hasattr(value, "__phloem_task__"):
        raise DefinitionError(
            f"task '{value.__phloem_task__}' was passed without being called; call it to create "
            "the task and pass its result"
        )
    return Lit(value)


def argspec_refs(spec: ArgSpec) -> Iterable[Ref]:
    if isinstance(spec, Ref):
        yield spec
    elif isinstance(spec, Seq):
        for item in spec.items:
            yield from argspec_refs(item)
    elif isinstance(spec, Map):
        for _, item in spec.items:
            yield from argspec_refs(item)
