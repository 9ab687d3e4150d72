"""Outputs with structure: a dict, tuple or dataclass of several values, each kept its own way.

A task returning ``{"model": clf, "features": df, "auc": 0.91}`` stores the model with joblib,
the frame as Parquet and the number inline, under one :class:`Structured` node kept in the
task instance's ``output`` column. A downstream task given ``ref["model"]`` reads the model's
bytes only; one given the whole ``ref`` gets the dict back, equal to what was returned.

What is split: an exact ``dict`` with string keys, an exact ``tuple``, or a dataclass instance
(with the default pickling behaviour and an importable class), holding at most
:data:`MAX_ITEMS` values, nested at most :data:`MAX_DEPTH` deep, that is not plain JSON as a
whole (plain JSON stays one JSON value or artifact). Lists are never split: a list is what
mapping iterates over, element by element.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from phloem.errors import ArtifactError, SerializationError
from phloem.files import File, is_file_marker

from .output import Output, automatic
from .ref import MARKER, ArtifactRef, Inline
from .serializers.json import fits_inline, is_jsonable
from .store import ArtifactStore

STRUCT_MARKER = "__struct__"
INLINE_MARKER = "__inline__"
FORMAT_VERSION = 1
MAX_DEPTH = 4
MAX_ITEMS = 256
#: a value of a structured output at most this large (as JSON) stays in the store's row
LEAF_INLINE_LIMIT = 4096

Path = tuple[str | int, ...]
Node = Union[Inline, ArtifactRef, "Structured"]


@dataclass(frozen=True, slots=True)
class Structured:
    """A dict, tuple or dataclass whose values are stored one by one (see the module doc)."""

    kind: str  # "dict" | "tuple" | "dataclass"
    keys: tuple[str | int, ...]
    items: tuple[Node, ...]
    cls: str | None = None  # "module:QualName" of a dataclass

    def child(self, key: str | int) -> Node:
        """The node under ``key``, failing as the value itself would (KeyError, IndexError)."""
        if self.kind == "tuple":
            if not isinstance(key, int) or isinstance(key, bool):
                raise TypeError(f"tuple indices must be integers, not {type(key).__name__}")
            return self.items[key]  # IndexError as a tuple's
        try:
            return self.items[self.keys.index(key)]
        except ValueError:
            if self.kind == "dataclass":
                raise AttributeError(
                    f"{self.cls} has no field {key!r} (fields: {', '.join(map(str, self.keys))})"
                ) from None
            raise KeyError(key) from None

    def leaves(self, path: Path = ()) -> Iterator[tuple[Path, Inline | ArtifactRef]]:
        """Every stored value below this node, with its path from the output's root."""
        for key, node in zip(self.keys, self.items, strict=True):
            if isinstance(node, Structured):
                yield from node.leaves((*path, key))
            else:
                yield (*path, key), node

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {STRUCT_MARKER: FORMAT_VERSION, "kind": self.kind}
        if self.kind != "tuple":
            out["keys"] = list(self.keys)
        if self.cls is not None:
            out["class"] = self.cls
        out["items"] = [node_to_json(n) for n in self.items]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Structured:
        if d.get(STRUCT_MARKER) != FORMAT_VERSION:
            raise ArtifactError(
                f"not a structured output of format {FORMAT_VERSION} (marker "
                f"{d.get(STRUCT_MARKER)!r}); it may have been written by a newer phloem"
            )
        kind, items = d.get("kind"), d.get("items")
        if kind not in ("dict", "tuple", "dataclass") or not isinstance(items, list):
            raise ArtifactError(f"malformed structured output (kind {kind!r})")
        nodes = tuple(node_from_json(i) for i in items)
        keys = tuple(range(len(nodes))) if kind == "tuple" else tuple(d.get("keys") or ())
        if len(keys) != len(nodes):
            raise ArtifactError("malformed structured output: keys and items differ in number")
        return cls(kind, keys, nodes, d.get("class"))


def node_to_json(node: Node) -> Any:
    if isinstance(node, ArtifactRef):
        return node.to_json()
    if isinstance(node, Structured):
        return node.to_json()
    return {INLINE_MARKER: node.value}


def node_from_json(value: Any) -> Node:
    if type(value) is dict:
        if MARKER in value:
            return ArtifactRef.from_json(value)
        if STRUCT_MARKER in value:
            return Structured.from_json(value)
        if len(value) == 1 and INLINE_MARKER in value:
            return Inline(value[INLINE_MARKER])
    raise ArtifactError(f"malformed value in a structured output: {str(value)[:80]!r}")


@dataclass(frozen=True, slots=True)
class LeafMetadata:
    """Metadata of one stored value: ``path`` from the output's root (``()`` for the whole
    output), the artifact it is kept in (None: inline)."""

    path: Path
    digest: str | None
    metadata: dict[str, Any]


@dataclass(slots=True)
class Encoder:
    """Stores one output; collects the artifacts it wrote and the metadata it found."""

    store: ArtifactStore
    #: NumPy scalars become Python numbers (a task's metric stays readable JSON) and files
    #: their markers (see :func:`plain`)
    plain_numbers: bool = False
    refs: list[ArtifactRef] = field(default_factory=list)
    metadata: list[LeafMetadata] = field(default_factory=list)

    def encode(self, value: object, limit: int, path: Path = (), depth: int = 0) -> Node:
        meta: dict[str, Any] | None = None
        if type(value) is Output:
            meta, value = value.metadata, value.value
        if self.plain_numbers:
            value = plain(value)
        node: Node
        if fits_inline(value, limit):
            node = Inline(value)
        else:
            parts = split(value) if depth < MAX_DEPTH else None
            if parts is not None:
                kind, keys, values, cls = parts
                node = Structured(
                    kind,
                    keys,
                    tuple(
                        self.encode(v, LEAF_INLINE_LIMIT, (*path, k), depth + 1)
                        for k, v in zip(keys, values, strict=True)
                    ),
                    cls,
                )
            else:
                node = self._put(value, path)
                self.refs.append(node)
                auto = automatic(value)
                if auto is not None:
                    meta = {**auto, **(meta or {})}
        if meta:
            digest = node.digest if isinstance(node, ArtifactRef) else None
            self.metadata.append(LeafMetadata(path, digest, meta))
        return node


    def _put(self, value: object, path: Path) -> ArtifactRef:
        try:
            return self.store.put(value)
        except SerializationError as exc:
            if not path:
                raise
            raise SerializationError(
                f"the value at {path_text(path)} of the output: {exc}", **exc.context
            ) from exc


def plain(value: Any) -> Any:
    """NumPy scalars (a metric from sklearn is one) become Python numbers so they stay
    readable JSON instead of pickled artifacts; a ``phloem.File`` becomes its path and content
    hash, so downstream tasks and the cache see it by content."""
    t = type(value)
    if t is File:
        return value.to_marker()
    if t.__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if t is dict:
        return {k: plain(v) for k, v in value.items()}
    if t is list:
        return [plain(v) for v in value]
    return value


def split(value: Any) -> tuple[str, tuple[str | int, ...], Sequence[Any], str | None] | None:
    """How ``value`` is stored value by value, or None to store it whole."""
    tp = type(value)
    if tp is tuple:
        n = len(value)
        return ("tuple", tuple(range(n)), value, None) if 0 < n <= MAX_ITEMS else None
    if tp is dict:
        if not 0 < len(value) <= MAX_ITEMS or any(type(k) is not str for k in value):
            return None
        if is_jsonable(value):
            return None  # plain data stays one JSON value, as readable as it was
        return "dict", tuple(value), tuple(value.values()), None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = class_path(tp)
        if cls is None or not _plain_pickling(tp):
            return None
        state = vars(value) if hasattr(value, "__dict__") else _slot_state(value)
        if not 0 < len(state) <= MAX_ITEMS:
            return None
        return "dataclass", tuple(state), tuple(state.values()), cls
    return None


def _slot_state(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _plain_pickling(tp: type) -> bool:
    """Whether instances pickle as their attributes (no custom reduce or state hooks), so
    storing the attributes one by one and setting them back rebuilds an equal object."""
    return (
        tp.__reduce_ex__ is object.__reduce_ex__  # type: ignore[comparison-overlap]
        and tp.__reduce__ is object.__reduce__  # type: ignore[comparison-overlap]
        and getattr(tp, "__getstate__", object.__getstate__) is object.__getstate__
        and not hasattr(tp, "__setstate__")
    )


def class_path(tp: type) -> str | None:
    """``module:QualName`` if importing it gives ``tp`` back (not a local class)."""
    module, qualname = tp.__module__, tp.__qualname__
    if "<locals>" in qualname or _resolve(module, qualname) is not tp:
        return None
    return f"{module}:{qualname}"


def _resolve(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    if obj is None:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def load_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    tp = _resolve(module, qualname)
    if tp is None:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ArtifactError(
                f"the output is a {qualname} from module {module!r}, which cannot be imported "
                f"here ({exc}); make the module that defines it importable in this worker"
            ) from exc
        tp = _resolve(module, qualname)
    if not isinstance(tp, type):
        raise ArtifactError(
            f"the output is a {qualname} from module {module!r}, which no longer defines it"
        )
    return tp


def decode(node: Node, store: ArtifactStore, reads: list[str] | None = None) -> object:
    """The value behind ``node``, fresh for the caller; the digest of every artifact read is
    appended to ``reads``."""
    if isinstance(node, Inline):
        return copy_json(node.value)
    if isinstance(node, ArtifactRef):
        if reads is not None:
            reads.append(node.digest)
        return store.get(node)
    values = [decode(n, store, reads) for n in node.items]
    if node.kind == "tuple":
        return tuple(values)
    if node.kind == "dict":
        return dict(zip(node.keys, values, strict=True))
    assert node.cls is not None
    tp: Any = load_class(node.cls)
    obj = tp.__new__(tp)
    for key, v in zip(node.keys, values, strict=True):
        object.__setattr__(obj, str(key), v)
    return obj


def pick(node: Node, path: Path, store: ArtifactStore, reads: list[str] | None = None) -> Any:
    """``value[path[0]][path[1]]…`` decoding only the part of a structured output it needs."""
    i = 0
    while i < len(path) and isinstance(node, Structured):
        node = node.child(path[i])
        i += 1
    return pick_value(decode(node, store, reads), path[i:])


def pick_value(value: Any, path: Path) -> Any:
    for p in path:
        if isinstance(p, str) and dataclasses.is_dataclass(value) and not hasattr(value, "keys"):
            value = getattr(value, p)
        else:
            value = value[p]
    return value


def copy_json(value: object) -> object:
    # Inline values are small JSON trees; copying them is cheaper than copy.deepcopy and keeps
    # one consumer's mutation from reaching another that decoded the same Inline.
    tp = type(value)
    if tp is list:
        return [copy_json(v) for v in value]  # type: ignore[attr-defined]
    if tp is dict:
        if is_file_marker(value):
            return File.from_marker(value)  # type: ignore[arg-type]
        return {k: copy_json(v) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


def path_text(path: Path) -> str:
    """``path`` as people write it: ``["model"]``, ``[0]["X"]``; the whole output is ``""``."""
    return "".join(f"[{p!r}]" for p in path)


__all__ = [
    "LEAF_INLINE_LIMIT",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "Encoder",
    "LeafMetadata",
    "Node",
    "Structured",
    "decode",
    "path_text",
    "pick",
    "pick_value",
]
