"""Content hashes of task inputs that are equal exactly when the inputs are equal, or a clear
refusal (:class:`Unhashable`) when no such hash exists.

Upstream outputs arrive as their stored form (JSON text, or a reference naming an artifact's
sha256), which is already a content hash: the driver never loads them. Other values (literal
arguments, run parameters, mapped elements) are walked by type: plain data, dates, paths,
enums, dataclasses, pydantic models, NumPy arrays and pandas frames by their content,
``phloem.File`` by the file's content. Anything else is pickled twice (the second time after a
round trip) and accepted only if both pickles agree, so an object whose pickle holds a clock, a
counter or an address is refused rather than trusted. Open files, generators, iterators and
lambdas are refused outright: they have no content to hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import io
import pathlib
import pickle
import re
import sys
import types
import uuid
from collections.abc import Callable
from typing import Any

from phloem.caching.origin import is_user_module
from phloem.context import Deferred
from phloem.files import File, FileMissing, file_digest
from phloem.runner.attempt import Element, Out, OutList

_MAX_DEPTH = 200
_TYPE_NAME = re.compile(r'"type_name":"([^"]+)"')


class Unhashable(Exception):
    """An input has no stable content hash; ``reason`` says why, for ``phloem cache explain``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: how a function or class met as a value is hashed: by its code (``caching.fingerprint``
#: passes its own), or by its name when none is given
CodeDigest = Callable[[Any], str]


def _by_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def value_digest(value: Any, code: CodeDigest = _by_name) -> str:
    """The sha256 (hex) of ``value``'s content; raises Unhashable. Functions and classes in
    it (and the classes of the user's own objects) count by ``code``."""
    h = hashlib.sha256()
    _feed(h, value, 0, code)
    return h.hexdigest()


_SCALARS = (type(None), bool, int, float, complex, str)


def _feed(h: Any, v: Any, depth: int, code: CodeDigest) -> None:
    if depth > _MAX_DEPTH:
        raise Unhashable("it is nested too deeply (or refers to itself)")
    tp = type(v)
    if tp in _SCALARS:
        h.update(f"{tp.__name__}:{v!r};".encode())
        return
    if tp is bytes or tp is bytearray:
        h.update(b"bytes:%d:" % len(v))
        h.update(v)
        return
    if tp is Out:
        h.update(b"out:")
        _feed_stored(h, v.stored, code)
        h.update(repr(v.path).encode() + b";")
        return
    if tp is OutList:
        h.update(b"outlist:%d:" % len(v.stored))
        for s in v.stored:
            _feed_stored(h, s, code)
            h.update(b"\0")
        h.update(repr(v.path).encode() + b";")
        return
    if tp is Element:
        h.update(f"element:{v.index}:".encode())
        _feed_stored(h, v.stored, code)
        h.update(b";")
        return
    if tp is File:
        try:
            digest = file_digest(v.path)
        except FileMissing as exc:
            raise Unhashable(str(exc)) from None
        h.update(f"file:{v.path}:{digest};".encode())
        return
    if tp is list or tp is tuple:
        h.update(f"{tp.__name__}:{len(v)}[".encode())
        for item in v:
            _feed(h, item, depth + 1, code)
        h.update(b"]")
        return
    if tp is dict:
        h.update(f"dict:{len(v)}{{".encode())
        for kd, item in sorted(((value_digest_at(k, depth, code), item) for k, item in v.items())):
            h.update(kd.encode())
            _feed(h, item, depth + 1, code)
        h.update(b"}")
        return
    if tp is set or tp is frozenset:
        h.update(f"set:{len(v)}{{".encode())
        for d in sorted(value_digest_at(item, depth, code) for item in v):
            h.update(d.encode())
        h.update(b"}")
        return
    if isinstance(v, enum.Enum):
        h.update(f"enum:{tp.__module__}.{tp.__qualname__}:".encode())
        _feed(h, v.value, depth + 1, code)
        return
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        h.update(f"{tp.__name__}:{v.isoformat()};".encode())
        return
    if isinstance(v, (dt.timedelta, decimal.Decimal, uuid.UUID, pathlib.PurePath)):
        h.update(f"{tp.__name__}:{v};".encode())
        return
    _feed_other(h, v, tp, depth, code)


def _feed_stored(h: Any, stored: str | None, code: CodeDigest) -> None:
    """An upstream output as stored. An artifact of a class of the user's own modules also
    counts by that class's code: its pickle holds the object's state, not the methods the
    task will call on it."""
    text = stored or "null"
    h.update(text.encode())
    if '"__artifact__"' in text:
        for name in _TYPE_NAME.findall(text):
            cls = _user_class(name)
            if cls is not None:
                h.update(f"class:{name}:{code(cls)};".encode())


def _user_class(name: str) -> type | None:
    """The class a stored type name (``module.Qualname``) names, if one of the user's own
    modules defines it and it is imported."""
    module, _, attr = name.rpartition(".")
    while module:
        mod = sys.modules.get(module)
        if mod is not None:
            if not is_user_module(module):
                return None
            obj: Any = mod
            for part in attr.split("."):
                obj = getattr(obj, part, None)
            return obj if isinstance(obj, type) else None
        module, _, head = module.rpartition(".")
        attr = f"{head}.{attr}"
    return None


def value_digest_at(v: Any, depth: int, code: CodeDigest) -> str:
    h = hashlib.sha256()
    _feed(h, v, depth + 1, code)
    return h.hexdigest()


def _feed_other(h: Any, v: Any, tp: type, depth: int, code: CodeDigest) -> None:
    refused = _refusal(v)
    if refused is not None:
        raise Unhashable(refused)
    module = tp.__module__ or ""
    name = f"{module}.{tp.__qualname__}"
    if is_user_module(module):
        # an object of the user's own class: the task may call its methods
        h.update(f"class:{name}:{code(tp)};".encode())
    if module.startswith("numpy") and hasattr(v, "dtype") and hasattr(v, "tobytes"):
        if getattr(v.dtype, "hasobject", False):
            raise Unhashable(f"a NumPy array of Python objects ({name}) has no stable bytes")
        h.update(f"ndarray:{v.dtype.str}:{getattr(v, 'shape', ())};".encode())
        h.update(v.tobytes())
        return
    if module.startswith("pandas") and tp.__name__ in ("DataFrame", "Series", "Index"):
        _feed_pandas(h, v, name)
        return
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        h.update(f"dataclass:{name}(".encode())
        for f in dataclasses.fields(v):
            h.update(f.name.encode() + b"=")
            _feed(h, getattr(v, f.name), depth + 1, code)
        h.update(b")")
        return
    dump = getattr(v, "model_dump", None)
    if callable(dump) and hasattr(tp, "model_fields"):  # a pydantic model
        h.update(f"model:{name}:".encode())
        _feed(h, dump(mode="json"), depth + 1, code)
        return
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type)):
        h.update(f"code:{code(v)};".encode())
        return
    _feed_pickle(h, v, name)


def _refusal(v: Any) -> str | None:
    if isinstance(v, Deferred):
        return (
            "a templated argument is filled in only when the task runs (from the run's "
            "context), so its value is not known beforehand"
        )
    if isinstance(v, io.IOBase) or (hasattr(v, "fileno") and hasattr(v, "read")):
        return f"an open file ({type(v).__name__}) has no content to hash; pass phloem.File(path)"
    if isinstance(v, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)):
        return "a generator can be read only once and has no content to hash; pass a list"
    if isinstance(v, types.FunctionType) and v.__name__ == "<lambda>":
        return "a lambda has no stable identity; pass a named function defined in a module"
    if hasattr(v, "__next__") and hasattr(v, "__iter__"):
        return f"an iterator ({type(v).__name__}) can be read only once; pass a list"
    return None


def _feed_pandas(h: Any, v: Any, name: str) -> None:
    import pandas as pd

    try:
        rows = pd.util.hash_pandas_object(v, index=True).to_numpy()
    except TypeError as exc:
        raise Unhashable(f"a {name} whose values cannot be hashed: {exc}") from None
    h.update(f"pandas:{name}:{v.shape};".encode())
    if hasattr(v, "columns"):
        h.update(repr([(str(c), str(t)) for c, t in v.dtypes.items()]).encode())
    else:
        h.update(f"{v.name!r}:{v.dtype}".encode())
    h.update(rows.tobytes())


def _feed_pickle(h: Any, v: Any, name: str) -> None:
    try:
        first = pickle.dumps(v, protocol=5)
        second = pickle.dumps(pickle.loads(first), protocol=5)
    except Exception as exc:
        raise Unhashable(
            f"a {name} cannot be pickled ({type(exc).__name__}: {exc}), so it has no content "
            "hash; pass plain data"
        ) from None
    if first != second:
        raise Unhashable(
            f"a {name} pickles differently each time (its state holds something like a clock, "
            "a counter or an address), so equal inputs could not be recognised"
        )
    h.update(f"pickle:{name}:{len(first)}:".encode())
    h.update(first)


__all__ = ["Unhashable", "value_digest"]
