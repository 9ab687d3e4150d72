"""Turn a task's recorded arguments into what its attempt receives."""

from __future__ import annotations

from typing import Any

from phloem.artifacts import ArtifactRef, ArtifactStore, decode_output
from phloem.artifacts.codec import from_stored_json
from phloem.artifacts.structured import Structured
from phloem.dsl.refs import ArgSpec, Lit, Map, Param, Ref, Seq
from phloem.dsl.spec import PipelineSpec, TaskSpec
from phloem.engine import TI, Snapshot
from phloem.runner import Out, OutList
from phloem.runner.attempt import Element
from phloem.states import SUCCESS_STATES


class Inputs:
    """Resolves arguments for one run; decodes each mapping source once, not once per
    mapped instance."""

    def __init__(
        self, spec: PipelineSpec, artifacts: ArtifactStore, params: dict[str, Any]
    ) -> None:
        self.spec = spec
        self.artifacts = artifacts
        #: the run's parameters as their declared types (a date, a pydantic model ...)
        self.params = params
        self._map_sources: dict[str, Any] = {}  # a list, or _ArtifactElements

    def forget(self, task_id: str) -> None:
        self._map_sources.pop(task_id, None)

    def arguments(self, snap: Snapshot, ti: TI) -> tuple[tuple[Any, ...], dict[str, Any]]:
        t = self.spec.tasks[ti.task_id]
        args = tuple(self._value(snap, a) for a in t.args)
        kwargs = {k: self._value(snap, v) for k, v in t.kwargs}
        if t.expand is not None:
            kwargs.update(self._mapped_kwargs(snap, t, ti.map_index))
        return args, kwargs

    def _value(self, snap: Snapshot, a: ArgSpec) -> Any:
        if isinstance(a, Lit):
            return a.value
        if isinstance(a, Param):
            return self.params.get(a.name)
        if isinstance(a, Ref):
            up = self.spec.tasks[a.task_id]
            if up.is_mapped:
                return OutList(tuple(_out(ti) for ti in snap.instances(a.task_id)), a.path)
            return Out(_out(snap.tis[(a.task_id, -1)]), a.path)
        if isinstance(a, Seq):
            items = [self._value(snap, i) for i in a.items]
            return tuple(items) if a.kind == "tuple" else items
        assert isinstance(a, Map)
        return {k: self._value(snap, v) for k, v in a.items}

    def _mapped_kwargs(self, snap: Snapshot, t: TaskSpec, map_index: int) -> dict[str, Any]:
        assert t.expand is not None
        sources = [(name, self._map_source(snap, arg)) for name, arg in t.expand]
        # cross product, the first keyword varying slowest (as itertools.product)
        idx = map_index
        picks: list[int] = []
        for _, src in reversed(sources):
            picks.append(idx % len(src))
            idx //= len(src)
        picks.reverse()
        return {name: src[i] for (name, src), i in zip(sources, picks, strict=True)}

    def _map_source(self, snap: Snapshot, arg: ArgSpec) -> Any:
        if isinstance(arg, Lit):
            return arg.value
        if isinstance(arg, Param):
            return self.params[arg.name]
        assert isinstance(arg, Ref)
        if self.spec.tasks[arg.task_id].is_mapped:
            return _MappedOutputs(snap, arg.task_id)  # one element read per instance, not n
        cached = self._map_sources.get(arg.task_id)
        if cached is None:
            ti = snap.tis[(arg.task_id, -1)]
            stored = ti.output
            obj = None if stored is None else from_stored_json(stored)
            if isinstance(obj, ArtifactRef):
                # too large to inline: the workers decode it, the driver never loads it
                assert stored is not None
                cached = _ArtifactElements(stored, ti.map_length or 0)
            elif isinstance(obj, Structured) and obj.kind == "tuple":
                # a tuple stored value by value: each instance reads its own value only
                assert stored is not None
                cached = [Out(stored, (i,)) for i in range(len(obj.items))]
            elif isinstance(obj, Structured) and obj.kind == "dict":
                cached = list(obj.keys)  # iterating a dict gives its keys
            else:
                value = [] if obj is None else decode_output(obj, self.artifacts)
                cached = list(value)  # type: ignore[call-overload]
            self._map_sources[arg.task_id] = cached
        return cached


class _ArtifactElements:
    """A stored sequence, as the elements workers will pick from it."""

    def __init__(self, stored: str, length: int) -> None:
        self.stored = stored
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Element:
        return Element(self.stored, i)


class _MappedOutputs:
    """The outputs of a mapped task as a sequence, read one element at a time."""

    def __init__(self, snap: Snapshot, task_id: str) -> None:
        self.snap = snap
        self.task_id = task_id
        self.indexes = snap.indexes[task_id]

    def __len__(self) -> int:
        return len(self.indexes)

    def __getitem__(self, i: int) -> Out:
        return Out(_out(self.snap.tis[(self.task_id, self.indexes[i])]))


def _out(ti: TI) -> str | None:
    return ti.output if ti.state in SUCCESS_STATES else None
