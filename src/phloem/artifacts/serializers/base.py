"""The serializer protocol and type naming shared by every serializer.

Serializers recognise values by ``type(value).__module__`` and class name rather than
``isinstance`` so that ``import phloem.artifacts`` never imports pandas, NumPy or friends.
"""

from __future__ import annotations

import sys
from typing import Protocol


class Serializer(Protocol):
    """Turns one family of values into bytes and back. ``name`` is persisted: never rename."""

    name: str
    ext: str

    def handles(self, value: object) -> bool:
        """Whether this serializer is meant for ``value`` (a cheap type check, not a trial)."""
        ...

    def dumps(self, value: object) -> bytes:
        """Serialize ``value``; equal values should give equal bytes so they dedupe."""
        ...

    def loads(self, data: bytes) -> object:
        """Rebuild a value of the same type from :meth:`dumps` output."""
        ...


def top_package(value: object) -> str:
    """The top-level package of ``value``'s type (``"pandas"`` for a DataFrame)."""
    return type(value).__module__.partition(".")[0]


def full_type_name(value: object) -> str:
    """``module.QualName`` of ``value``'s type, exactly as Python knows it."""
    tp = type(value)
    return f"{tp.__module__}.{tp.__qualname__}"


def type_name(value: object) -> str:
    """A readable type name for lineage and the UI: ``"pandas.DataFrame"``, ``"dict"``.

    The shortest already-imported parent module that exports the class under the same name is
    used, so private module paths (``sklearn.linear_model._logistic``) stay out of stored data.
    """
    tp = type(value)
    module, qualname = tp.__module__, tp.__qualname__
    if module == "builtins":
        return qualname
    parts = module.split(".")
    for end in range(1, len(parts)):
        parent = ".".join(parts[:end])
        if getattr(sys.modules.get(parent), qualname, None) is tp:
            return f"{parent}.{qualname}"
    return f"{module}.{qualname}"
