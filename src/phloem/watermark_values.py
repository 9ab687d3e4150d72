"""The values a watermark may hold, kept as typed text so they come back as they went in.

Datetimes (aware or naive, kept as given), dates, ints, floats and strings. Ints and floats
compare with each other; a datetime compares only with a datetime of the same awareness. What
cannot be compared is a :class:`~phloem.errors.WatermarkError`: a watermark that silently
compared ``"9"`` with ``"10"`` as text, or a naive time with an aware one, would skip data.
"""

from __future__ import annotations

import math
import numbers
from datetime import date, datetime
from typing import Any

from phloem.errors import WatermarkError

Value = datetime | date | int | float | str
KINDS = ("datetime", "date", "int", "float", "str")


def encode(value: Any, *, name: str) -> tuple[str, str]:
    """``(kind, text)`` for ``value``; anything else is refused with what is accepted."""
    if isinstance(value, datetime):
        to_py = getattr(value, "to_pydatetime", None)  # a pandas Timestamp
        dt = to_py() if callable(to_py) else value
        return "datetime", dt.isoformat()
    if isinstance(value, date):
        return "date", value.isoformat()
    if isinstance(value, bool):
        pass
    elif isinstance(value, numbers.Integral):
        return "int", str(int(value))
    elif isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            raise WatermarkError(f"watermark '{name}' cannot hold NaN")
        return "float", repr(f)
    elif isinstance(value, str):
        return "str", value
    raise WatermarkError(
        f"watermark '{name}' holds datetimes, dates, ints, floats or strings, not "
        f"{type(value).__name__} ({value!r})"
    )


def decode(kind: str, text: str) -> Value:
    """The value ``encode`` was given."""
    if kind == "datetime":
        return datetime.fromisoformat(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "str":
        return text
    raise WatermarkError(f"unknown watermark kind {kind!r} in the store")


def parse(text: str, kind: str | None, *, name: str) -> tuple[str, str]:
    """``(kind, text)`` for a value typed on a command line: ``kind`` if given, else the
    first of int, float, datetime (ISO 8601 with a time), date that reads it, else str."""
    kinds = [kind] if kind else ["int", "float", "datetime", "date", "str"]
    for k in kinds:
        if k not in KINDS:
            raise WatermarkError(f"unknown watermark type {k!r}; use one of {', '.join(KINDS)}")
        if k == "datetime" and kind is None and "T" not in text and " " not in text:
            continue  # "2026-01-01" is a date unless asked for a datetime
        try:
            return encode(decode(k, text), name=name)
        except (ValueError, WatermarkError) as exc:
            if kind:
                raise WatermarkError(
                    f"watermark '{name}': {text!r} is not a {kind} ({exc})"
                ) from None
    raise AssertionError("str reads any text")


def compare(a: Value, b: Value, *, name: str) -> int:
    """-1, 0 or 1 as ``a`` is before, at or after ``b``."""
    if not comparable(a, b):
        raise WatermarkError(
            f"watermark '{name}' holds {_describe(a)}; {_describe(b)} cannot be compared with "
            "it (pass force=True to change what it holds)"
        )
    return (a > b) - (a < b)  # type: ignore[operator]


def comparable(a: Value, b: Value) -> bool:
    def num(v: Value) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if num(a) and num(b):
        return True
    if isinstance(a, datetime) or isinstance(b, datetime):
        return (
            isinstance(a, datetime)
            and isinstance(b, datetime)
            and (a.tzinfo is None) == (b.tzinfo is None)
        )
    return type(a) is type(b)


def _describe(v: Value) -> str:
    if isinstance(v, datetime):
        return f"{'a naive' if v.tzinfo is None else 'an aware'} datetime ({v.isoformat()})"
    return f"a {type(v).__name__} ({v!r})"


__all__ = ["KINDS", "Value", "comparable", "compare", "decode", "encode", "parse"]
