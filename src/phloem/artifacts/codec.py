"""How a task's return value is recorded: inline JSON for small plain data, else an artifact.

The text that :func:`to_stored_json` produces is what the store keeps in a task instance's
``output`` column. An inline value is stored as its own JSON (readable and queryable in the
database); a reference is stored as its :meth:`~phloem.artifacts.ArtifactRef.to_json` dict,
recognised by its ``"__artifact__"`` key. An inline dict that happens to use a marker key is
wrapped as ``{"__inline__": value}`` so it can never be mistaken for a reference.
"""

from __future__ import annotations

import json

from phloem.errors import ArtifactError, SerializationError
from phloem.files import File, is_file_marker

from .ref import MARKER, ArtifactRef, Inline
from .serializers.json import encode, fits_inline
from .store import ArtifactStore

INLINE_MARKER = "__inline__"
DEFAULT_INLINE_LIMIT = 65536


def encode_output(
    value: object, store: ArtifactStore, inline_limit: int = DEFAULT_INLINE_LIMIT
) -> Inline | ArtifactRef:
    """``Inline(value)`` if its canonical JSON is at most ``inline_limit`` bytes, else store it.

    A scalar costs a type check or two; containers are walked once with a size budget.
    """
    if fits_inline(value, inline_limit):
        return Inline(value)
    return store.put(value)


def decode_output(obj: Inline | ArtifactRef, store: ArtifactStore) -> object:
    """The value behind ``obj``; each call returns a fresh object, safe for the caller to mutate."""
    if isinstance(obj, Inline):
        return _copy_json(obj.value)
    if isinstance(obj, ArtifactRef):
        return store.get(obj)
    raise TypeError(f"expected Inline or ArtifactRef, got {type(obj).__name__}")


def to_stored_json(obj: Inline | ArtifactRef) -> str:
    """The text kept in the ``output`` column for ``obj``."""
    if isinstance(obj, ArtifactRef):
        return encode(obj.to_json())
    value = obj.value
    if type(value) is dict and (MARKER in value or INLINE_MARKER in value):
        value = {INLINE_MARKER: value}
    try:
        return encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"inline output of type {type(obj.value).__name__} is not JSON: {exc}"
        ) from exc


def from_stored_json(text: str) -> Inline | ArtifactRef:
    """Parse :func:`to_stored_json` output back into an ``Inline`` or an ``ArtifactRef``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"stored output is not valid JSON ({exc}): {text[:80]!r}") from exc
    if type(value) is dict:
        if MARKER in value:
            return ArtifactRef.from_json(value)
        if len(value) == 1 and INLINE_MARKER in value:
            return Inline(value[INLINE_MARKER])
    return Inline(value)


def _copy_json(value: object) -> object:
    # Inline values are small JSON trees; copying them is cheaper than copy.deepcopy and keeps
    # one consumer's mutation from reaching another that decoded the same Inline.
    tp = type(value)
    if tp is list:
        return [_copy_json(v) for v in value]  # type: ignore[attr-defined]
    if tp is dict:
        if is_file_marker(value):
            return File.from_marker(value)  # type: ignore[arg-type]
        return {k: _copy_json(v) for k, v in value.items()}  # type: ignore[attr-defined]
    return value
