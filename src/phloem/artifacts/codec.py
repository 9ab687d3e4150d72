"""How a task's return value is recorded: inline JSON for small plain data, else an artifact.

The text that :func:`to_stored_json` produces is what the store keeps in a task instance's
``output`` column. An inline value is stored as its own JSON (readable and queryable in the
database); a reference is stored as its :meth:`~phloem.artifacts.ArtifactRef.to_json` dict,
recognised by its ``"__artifact__"`` key; a structured output (a dict, tuple or dataclass
stored value by value, see :mod:`phloem.artifacts.structured`) by its ``"__struct__"`` key. An
inline dict that happens to use a marker key is wrapped as ``{"__inline__": value}`` so it can
never be mistaken for either.
"""

from __future__ import annotations

import json

from phloem.errors import ArtifactError, SerializationError

from .ref import MARKER, ArtifactRef, Inline
from .serializers.json import encode
from .store import ArtifactStore
from .structured import INLINE_MARKER, STRUCT_MARKER, Encoder, Node, Structured, decode

DEFAULT_INLINE_LIMIT = 65536
_MARKERS = (MARKER, INLINE_MARKER, STRUCT_MARKER)


def encode_output(
    value: object, store: ArtifactStore, inline_limit: int = DEFAULT_INLINE_LIMIT
) -> Node:
    """``Inline(value)`` if its canonical JSON is at most ``inline_limit`` bytes; a
    :class:`Structured` node for a dict, tuple or dataclass of values kept one by one; else
    one artifact.

    A scalar costs a type check or two; containers are walked once with a size budget.
    """
    return Encoder(store).encode(value, inline_limit)


def decode_output(obj: Node, store: ArtifactStore) -> object:
    """The value behind ``obj``; each call returns a fresh object, safe for the caller to mutate."""
    if not isinstance(obj, (Inline, ArtifactRef, Structured)):
        raise TypeError(f"expected Inline, ArtifactRef or Structured, got {type(obj).__name__}")
    return decode(obj, store)


def to_stored_json(obj: Node) -> str:
    """The text kept in the ``output`` column for ``obj``."""
    if isinstance(obj, (ArtifactRef, Structured)):
        return encode(obj.to_json())
    value = obj.value
    if type(value) is dict and any(m in value for m in _MARKERS):
        value = {INLINE_MARKER: value}
    try:
        return encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"inline output of type {type(obj.value).__name__} is not JSON: {exc}"
        ) from exc


def from_stored_json(text: str) -> Node:
    """Parse :func:`to_stored_json` output back into an ``Inline``, an ``ArtifactRef`` or a
    ``Structured``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"stored output is not valid JSON ({exc}): {text[:80]!r}") from exc
    if type(value) is dict:
        if MARKER in value:
            return ArtifactRef.from_json(value)
        if STRUCT_MARKER in value:
            return Structured.from_json(value)
        if len(value) == 1 and INLINE_MARKER in value:
            return Inline(value[INLINE_MARKER])
    return Inline(value)


def read_digests(stored: str | None, path: tuple[str | int, ...] = ()) -> list[str]:
    """The digests of the artifacts a consumer of ``stored`` at ``path`` reads: of a
    structured output, only those under the path (``ref["model"]`` reads the model only)."""
    if stored is None:
        return []
    try:
        node = from_stored_json(stored)
    except ArtifactError:
        return []  # not a stored output phloem can read: it names no artifact it knows
    for key in path:
        if not isinstance(node, Structured):
            break
        try:
            node = node.child(key)
        except (KeyError, IndexError, TypeError, AttributeError):
            return []
    if isinstance(node, ArtifactRef):
        return [node.digest]
    if isinstance(node, Structured):
        found = [leaf.digest for _, leaf in node.leaves() if isinstance(leaf, ArtifactRef)]
        return list(dict.fromkeys(found))
    return []
