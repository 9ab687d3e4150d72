"""``with phloem.group("features") as g:``: a prefix for task ids, and a handle for ``>>``."""

from __future__ import annotations

from types import TracebackType

from phloem.dsl.builder import Builder, GroupScope, caller_location, current_builder
from phloem.dsl.names import check_name
from phloem.dsl.refs import Orderable
from phloem.errors import DefinitionError


class Group(Orderable):
    """The tasks created inside one ``with group(...)`` block, nested groups' tasks included.

    Usable after the block: ``g >> other`` runs every leaf of the group (a task no other task
    of the group depends on) before ``other``, ``other >> g`` runs ``other`` before every root
    (a task with no upstream inside the group). Roots and leaves are read when ``>>`` runs.
    """

    __slots__ = ("_builder", "_entered", "_scope", "name")
    kind = "group"

    def __init__(self, name: str) -> None:
        where = caller_location(2)
        builder = current_builder()
        if builder is None:
            raise DefinitionError(f"{where}: group('{name}') is used outside a @pipeline body")
        check_name(name, "group", where)
        self._builder: Builder = builder
        self.name = name
        self._entered = False
        parent = builder.groups[-1].group_id if builder.groups else ""
        self._scope = GroupScope(f"{parent}.{name}" if parent else name)

    @property
    def group_id(self) -> str:
        """The dotted id that prefixes its tasks' ids (``outer.inner``)."""
        return self._scope.group_id

    @property
    def label(self) -> str:
        return f"group '{self.group_id}'"

    @property
    def task_ids(self) -> tuple[str, ...]:
        """Its tasks so far, in definition order."""
        return tuple(self._scope.members)

    @property
    def roots(self) -> tuple[str, ...]:
        return self._builder.ends(self._scope.members)[0]

    @property
    def leaves(self) -> tuple[str, ...]:
        return self._builder.ends(self._scope.members)[1]

    def ends(self, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if not self._scope.members:
            raise DefinitionError(
                f"{where}: {self.label} has no tasks, so there is nothing to order; call tasks "
                "inside its with-block before using it with >> or <<"
            )
        return self._builder.ends(self._scope.members)

    def __enter__(self) -> Group:
        where = caller_location(2)
        if self._entered:
            raise DefinitionError(
                f"{where}: {self.label} was opened before; a group is one with-block: "
                f"open another with phloem.group('{self.name}')"
            )
        if current_builder() is not self._builder:
            raise DefinitionError(
                f"{where}: {self.label} is opened outside the body of its pipeline "
                f"'{self._builder.pipeline_name}'"
            )
        self._entered = True
        self._builder.groups.append(self._scope)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._builder.groups.pop()

    def __repr__(self) -> str:
        count = len(self._scope.members)
        return f"<phloem group {self.group_id} ({count} task{'s' if count != 1 else ''})>"


def group(name: str) -> Group:
    """Group the tasks created inside: their ids become ``name.task``; ``as g`` gives a handle
    that ``>>`` and ``<<`` order like a task."""
    return Group(name)
