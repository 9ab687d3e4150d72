"""Pickle (stdlib, protocol 5): the fallback for any other value.

When even pickle cannot store a value, the error names the type and says what to return
instead; most often the task returned a live resource rather than the data it produced.
"""

from __future__ import annotations

import pickle

from phloem.errors import SerializationError

from .base import full_type_name

HINT = (
    "return plain data (dict, list, DataFrame, ndarray) or an object that pickle can handle; "
    "open resources such as connections, locks, generators and file handles cannot be stored "
    "— return what they produced instead"
)


class PickleSerializer:
    """Anything pickle accepts; loaded only after the store has verified the digest."""

    name = "pickle"
    ext = "pkl"

    def handles(self, value: object) -> bool:
        return True

    def dumps(self, value: object) -> bytes:
        try:
            return pickle.dumps(value, protocol=5)
        except Exception as exc:  # pickling runs arbitrary __reduce__ code: anything can fail
            type_name = full_type_name(value)
            raise SerializationError(
                f"cannot store a value of type {type_name}: {type(exc).__name__}: {exc}. "
                f"To fix it, {HINT}",
                type=type_name,
            ) from exc

    def loads(self, data: bytes) -> object:
        return pickle.loads(data)


PICKLE = PickleSerializer()
