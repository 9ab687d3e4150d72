"""Collects task calls made in a pipeline body and turns them into a validated PipelineSpec."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from phloem.dsl.names import MAX_LENGTH
from phloem.dsl.options import TaskOptions
from phloem.dsl.refs import ArgSpec, Lit, Orderable, Param, Ref, TaskRef, as_orderables, to_argspec
from phloem.dsl.spec import ParamSpec, PipelineSpec, TaskSpec
from phloem.errors import CycleError, DefinitionError

#: The builder of the pipeline whose body is executing right now (None outside a body).
_current: ContextVar[Builder | None] = ContextVar("phloem_builder", default=None)


def current_builder() -> Builder | None:
    return _current.get()


def caller_location(depth: int = 2) -> str:
    """'file:line' of the author's code, skipping frames inside phloem."""
    frame = sys._getframe(depth)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("phloem."):
        if frame.f_back is None:
            break
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


@dataclass
class GroupScope:
    """An open ``with group(...)`` block: its dotted id and the tasks created in it so far."""

    group_id: str
    members: list[str] = field(default_factory=list)


@dataclass
class _Draft:
    task_id: str
    fn: Callable[..., Any]
    options: TaskOptions
    args: tuple[ArgSpec, ...]
    kwargs: tuple[tuple[str, ArgSpec], ...]
    expand: tuple[tuple[str, ArgSpec], ...] | None
    #: data and ordering edges, as ordered sets: a fan-in of n tasks stays linear
    data_upstream: dict[str, None]
    order_upstream: dict[str, None] = field(default_factory=dict)
    group: str | None = None
    defined_at: str = ""
    #: the position in definition order, to sort upstream ids without scanning every task
    position: int = 0


class Builder:
    """Mutable while one pipeline body runs; frozen into a PipelineSpec afterwards."""

    def __init__(self, pipeline_name: str, params: Mapping[str, ParamSpec]) -> None:
        self.pipeline_name = pipeline_name
        self.params = params
        self.drafts: dict[str, _Draft] = {}
        #: the open group blocks, outermost first
        self.groups: list[GroupScope] = []
        self.order_sites: dict[tuple[str, str], str] = {}
        #: the next suffix to try per repeated task id, so n calls of one task stay linear
        self._suffixes: dict[str, int] = {}

    @contextmanager
    def active(self) -> Iterator[Builder]:
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def check_owned(self, node: Orderable, where: str | None = None) -> None:
        if node._builder is not self:
            again = "call the task" if node.kind == "task" else "create the group"
            raise DefinitionError(
                f"{where or caller_location(3)}: {node.label} belongs to pipeline "
                f"'{node._builder.pipeline_name}', not to '{self.pipeline_name}'; "
                f"{node.kind}s cannot be shared across pipelines: {again} again inside this "
                "pipeline (or use a sensor such as phloem.sensors.wait_for_pipeline to wait for "
                "the other pipeline)"
            )

    def _new_id(self, base: str, explicit: bool, where: str) -> str:
        prefix = self.groups[-1].group_id if self.groups else ""
        task_id = f"{prefix}.{base}" if prefix else base
        if task_id in self.drafts:
            if explicit:
                raise DefinitionError(
                    f"{where}: duplicate task name '{task_id}' in pipeline "
                    f"'{self.pipeline_name}' (first defined at "
                    f"{self.drafts[task_id].defined_at}); give this call another name with "
                    ".with_options(name=...)"
                )
            task_id = self._next_free(task_id)
        if len(task_id) > MAX_LENGTH:
            raise DefinitionError(
                f"{where}: task id '{task_id[:40]}...' (groups and name) is {len(task_id)} "
                f"characters long; the limit is {MAX_LENGTH}: use shorter group or task names"
            )
        return task_id

    def _next_free(self, task_id: str) -> str:
        n = self._suffixes.get(task_id, 1)
        while f"{task_id}__{n}" in self.drafts:
            n += 1
        self._suffixes[task_id] = n + 1
        return f"{task_id}__{n}"

    def add_task(
        self,
        fn: Callable[..., Any],
        options: TaskOptions,
        explicit_name: bool,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        expand: Mapping[str, Any] | None,
    ) -> TaskRef:
        where = caller_location(3)
        task_id = self._new_id(options.name, explicit_name, where)
        upstream: set[str] = set()
        arg_specs = tuple(to_argspec(a, self, upstream) for a in args)
        kw_specs = tuple((k, to_argspec(v, self, upstream)) for k, v in kwargs.items())
        exp_specs = None
        if expand is not None and options.kind == "branch":
            raise DefinitionError(
                f"{where}: branch task '{task_id}' cannot be mapped: one run follows one set of "
                "paths; map the work before the branch and branch on its combined result"
            )
        if expand is not None:
            if not expand:
                raise DefinitionError(f"{where}: expand() needs at least one keyword argument")
            exp_specs = tuple((k, to_argspec(v, self, upstream)) for k, v in expand.items())
            for key, spec in exp_specs:
                _check_expandable(task_id, key, spec, where)
        for spec in (*arg_specs, *(s for _, s in kw_specs), *(s for _, s in exp_specs or ())):
            self._check_params(spec, where)
        ordered = sorted(upstream, key=lambda u: self.drafts[u].position)  # definition order
        self.drafts[task_id] = _Draft(
            task_id=task_id,
            fn=fn,
            options=options,
            args=arg_specs,
            kwargs=kw_specs,
            expand=exp_specs,
            data_upstream=dict.fromkeys(ordered),
            group=self.groups[-1].group_id if self.groups else None,
            defined_at=where,
            position=len(self.drafts),
        )
        for scope in self.groups:
            scope.members.append(task_id)
        return TaskRef(self, task_id)

    def _check_params(self, spec: ArgSpec, where: str) -> None:
        if isinstance(spec, Param) and spec.name not in self.params:
            raise DefinitionError(f"{where}: unknown parameter '{spec.name}'")

    def order(self, ups: object, downs: object) -> None:
        """``ups >> downs``: every leaf of each of ``ups`` before every root of each of
        ``downs``; only inside the body of the pipeline that made them."""
        where = caller_location(2)
        lefts, rights = as_orderables(ups, where), as_orderables(downs, where)
        current = _current.get()
        for node in (*lefts, *rights):
            if current is None:
                owner = node._builder.pipeline_name
                raise DefinitionError(
                    f"{where}: {node.label} is used outside the body of its pipeline "
                    f"'{owner}'; >> and << add edges only while the @pipeline function runs: "
                    f"move this line into the body of '{owner}'"
                )
            current.check_owned(node, where)
        assert current is not None
        leaves = [u for left in lefts for u in left.ends(where)[1]]
        roots = [d for right in rights for d in right.ends(where)[0]]
        for up in leaves:
            for down in roots:
                current.add_order(up, down, where)

    def ends(self, task_ids: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(roots, leaves) of a set of tasks: those with no upstream among them, and those
        none of them depends on, in definition order."""
        inside = set(task_ids)
        has_up: set[str] = set()
        is_up: set[str] = set()
        for task_id in task_ids:
            draft = self.drafts[task_id]
            for up in (*draft.data_upstream, *draft.order_upstream):
                if up in inside:
                    has_up.add(task_id)
                    is_up.add(up)
        roots = tuple(t for t in task_ids if t not in has_up)
        return roots, tuple(t for t in task_ids if t not in is_up)

    def add_order(self, up: str, down: str, where: str) -> None:
        if up == down:
            raise CycleError(f"{where}: task '{up}' cannot depend on itself")
        draft = self.drafts[down]
        if up not in draft.order_upstream and up not in draft.data_upstream:
            draft.order_upstream[up] = None
            self.order_sites[(up, down)] = where

    def build(self, **pipeline_fields: Any) -> PipelineSpec:
        if not self.drafts:
            raise DefinitionError(
                f"{pipeline_fields.get('defined_at', '')}: pipeline '{self.pipeline_name}' "
                "defines no tasks; call at least one @task function in its body"
            )
        order = self._toposort()
        downstream: dict[str, list[str]] = {t: [] for t in self.drafts}
        for d in self.drafts.values():
            for u in (*d.data_upstream, *d.order_upstream):
                downstream[u].append(d.task_id)
        tasks: dict[str, TaskSpec] = {}
        for index, task_id in enumerate(order):
            d = self.drafts[task_id]
            up = tuple(dict.fromkeys((*d.data_upstream, *d.order_upstream)))
            tasks[task_id] = TaskSpec(
                task_id=task_id,
                fn=d.fn,
                options=d.options,
                args=d.args,
                kwargs=d.kwargs,
                expand=d.expand,
                upstream=up,
                data_upstream=tuple(d.data_upstream),
                downstream=tuple(downstream[task_id]),
                group=d.group,
                defined_at=d.defined_at,
                index=index,
            )
        # the run's state is decided by its last tasks, teardown tasks aside
        teardown = {t for t, d in self.drafts.items() if d.options.teardown}
        leaves = tuple(
            t for t in order if t not in teardown and all(d in teardown for d in downstream[t])
        ) or tuple(t for t in order if not downstream[t])
        return PipelineSpec(
            name=self.pipeline_name,
            tasks=tasks,
            params=self.params,
            leaves=leaves,
            **pipeline_fields,
        )

    def _toposort(self) -> list[str]:
        upstream = {
            t: list(dict.fromkeys((*d.data_upstream, *d.order_upstream)))
            for t, d in self.drafts.items()
        }
        state: dict[str, int] = {}  # 1 visiting, 2 done
        order: list[str] = []
        for root in self.drafts:
            if state.get(root):
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = []
            while stack:
                node, i = stack.pop()
                if i == 0:
                    if state.get(node) == 2:
                        continue
                    state[node] = 1
                    path.append(node)
                ups = upstream[node]
                if i < len(ups):
                    stack.append((node, i + 1))
                    nxt = ups[i]
                    if state.get(nxt) == 1:
                        cycle = [*path[path.index(nxt) :], nxt]
                        cycle.reverse()
                        site = self.order_sites.get((node, nxt)) or self.order_sites.get(
                            (nxt, node), ""
                        )
                        raise CycleError(
                            f"{site + ': ' if site else ''}pipeline '{self.pipeline_name}' has a "
                            f"cycle: {' >> '.join(cycle)}; remove one of these dependencies"
                        )
                    if state.get(nxt) != 2:
                        stack.append((nxt, 0))
                else:
                    state[node] = 2
                    path.pop()
                    order.append(node)
        return order


def _check_expandable(task_id: str, key: str, spec: ArgSpec, where: str) -> None:
    if isinstance(spec, Lit):
        if not isinstance(spec.value, (list, tuple)):
            raise DefinitionError(
                f"{where}: expand({key}=...) of task '{task_id}' needs a list (or a task's "
                f"output that is a list), got {type(spec.value).__name__}"
            )
    elif isinstance(spec, Ref):
        if spec.path:
            raise DefinitionError(
                f"{where}: expand({key}=...) of task '{task_id}' cannot map over an item of "
                f"another task's output ({spec.task_id}{list(spec.path)}); return that list "
                "from a task of its own and expand over it"
            )
    elif not isinstance(spec, Param):
        raise DefinitionError(
            f"{where}: expand({key}=...) of task '{task_id}' takes a list, a task's output or a "
            "parameter"
        )
