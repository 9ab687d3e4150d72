"""JSON: plain data (None, bool, int, float, str, and lists/dicts of them with str keys).

Only exact built-in types count, so a value always comes back as the same type: tuples,
dict subclasses and NumPy scalars (``np.float64`` subclasses ``float``) go to pickle instead of
silently turning into lists or floats. NaN and infinities are excluded (they are not JSON).
The encoding is canonical (sorted keys, no spaces, ASCII) so equal values hash equally.
"""

from __future__ import annotations

import json
import math

# Deeper than any real data; also how self-referencing lists and dicts are rejected.
MAX_DEPTH = 100


class _NotJson(Exception):
    pass


class _TooLarge(Exception):
    pass


def _scan(value: object, budget: int, depth: int) -> int:
    """Check ``value`` is JSON-able, spending a lower bound of its encoded size from ``budget``.

    Raises ``_NotJson``, or ``_TooLarge`` as soon as the bound exceeds the budget, so a huge
    list is not walked to the end only to learn it is too big to inline.
    """
    tp = type(value)
    if tp is str:
        budget -= len(value) + 2  # type: ignore[arg-type]
    elif tp is int:
        budget -= 1
    elif tp is bool or value is None:
        budget -= 4
    elif tp is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _NotJson
        budget -= 3
    elif tp is list:
        if depth >= MAX_DEPTH:
            raise _NotJson
        budget -= 1 + len(value)  # type: ignore[arg-type]  # brackets and commas
        for item in value:  # type: ignore[attr-defined]
            budget = _scan(item, budget, depth + 1)
    elif tp is dict:
        if depth >= MAX_DEPTH:
            raise _NotJson
        budget -= 1 + len(value)  # type: ignore[arg-type]  # braces and commas
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise _NotJson
            budget = _scan(item, budget - len(key) - 3, depth + 1)  # quotes and colon
    else:
        raise _NotJson
    if budget < 0:
        raise _TooLarge
    return budget


def is_jsonable(value: object) -> bool:
    """Whether ``value`` round-trips through JSON as exactly the same value and types."""
    try:
        _scan(value, 1 << 62, 0)
    except _NotJson:
        return False
    return True


def fits_inline(value: object, limit: int) -> bool:
    """Whether ``value`` is JSON-able and its canonical encoding is at most ``limit`` bytes.

    This is on every task's hot path: common scalars are answered without encoding anything.
    """
    tp = type(value)
    if limit >= 32 and (
        value is None
        or tp is bool
        or (tp is int and -(1 << 63) <= value < 1 << 63)  # type: ignore[operator]
        or (tp is float and math.isfinite(value))  # type: ignore[arg-type]
    ):
        return True
    try:
        _scan(value, limit, 0)
        return len(encode(value)) <= limit
    except (_NotJson, _TooLarge, ValueError):  # ValueError: an int too long to print
        return False


def encode(value: object) -> str:
    """The canonical JSON text of ``value`` (ASCII, so its length is its size in bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


class JsonSerializer:
    """Large plain-data outputs, stored as canonical JSON."""

    name = "json"
    ext = "json"

    def handles(self, value: object) -> bool:
        return is_jsonable(value)

    def dumps(self, value: object) -> bytes:
        return encode(value).encode("ascii")

    def loads(self, data: bytes) -> object:
        return json.loads(data)


JSON = JsonSerializer()
