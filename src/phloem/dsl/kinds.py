"""The kinds of values options take: each checks a value, normalizes it, and says what it
expected when it is wrong."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from enum import Enum
from typing import Any, TypeVar

from phloem.dsl.declare import Kind
from phloem.errors import DefinitionError

E = TypeVar("E", bound=Enum)


def _fail(where: str, option: str, expected: str, value: object) -> DefinitionError:
    return DefinitionError(f"{where}: option '{option}' must be {expected}, got {value!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _seconds(value: Any, option: str, where: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif not _number(value):
        raise _fail(where, option, "seconds (a number) or a timedelta", value)
    if value < 0:
        raise DefinitionError(f"{where}: option '{option}' must not be negative, got {value!r}")
    return float(value)


def _optional(check: Callable[[Any, str, str], Any]) -> Callable[[Any, str, str], Any]:
    def coerce(value: Any, option: str, where: str) -> Any:
        return None if value is None else check(value, option, where)

    return coerce


def _positive_seconds(value: Any, option: str, where: str) -> float:
    seconds = _seconds(value, option, where)
    if seconds <= 0:
        raise DefinitionError(f"{where}: option '{option}' must be positive, got {value!r}")
    return seconds


def _int(minimum: int | None) -> Callable[[Any, str, str], int]:
    expected = "an int" if minimum is None else f"an int >= {minimum}"

    def coerce(value: Any, option: str, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, option, expected, value)
        if minimum is not None and value < minimum:
            raise _fail(where, option, expected, value)
        return value

    return coerce


def _multiplier(value: Any, option: str, where: str) -> float:
    if isinstance(value, bool):  # Airflow's retry_exponential_backoff=True habit
        value = 2.0 if value else 1.0
    if not _number(value) or value < 1:
        raise _fail(where, option, "a multiplier >= 1 (2.0 doubles the delay each retry)", value)
    return float(value)


def _fraction(value: Any, option: str, where: str) -> float:
    if isinstance(value, bool):
        value = 0.5 if value else 0.0
    if not _number(value) or not 0 <= value <= 1:
        raise _fail(where, option, "a fraction between 0 and 1", value)
    return float(value)


def _bool(value: Any, option: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, option, "True or False", value)
    return value


def _text(value: Any, option: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, option, "a non-empty string", value)
    return value


def _tags(value: Any, option: str, where: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    try:
        tags = tuple(items)
    except TypeError:
        raise _fail(where, option, "a list of strings", value) from None
    if not all(isinstance(t, str) and t for t in tags):
        raise _fail(where, option, "a list of non-empty strings", value)
    return tuple(dict.fromkeys(tags))


def _callback(value: Any, option: str, where: str) -> Any:
    if not callable(value):
        raise _fail(where, option, "a function (or None)", value)
    return value


def _exceptions(value: Any, option: str, where: str) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    if not all(isinstance(c, type) and issubclass(c, BaseException) for c in items):
        raise _fail(where, option, "an exception class or a tuple of them", value)
    return tuple(items)


def _mapping(value: Any, option: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(where, option, "a dict with string keys", value)
    return dict(value)


def _anything(value: Any, option: str, where: str) -> Any:
    return value


def choice(*values: str) -> Kind:
    text = " or ".join(f'`"{v}"`' for v in values)

    def coerce(value: Any, option: str, where: str) -> str:
        if value not in values:
            raise _fail(where, option, " or ".join(repr(v) for v in values), value)
        return str(value)

    return Kind(text, coerce)


def choice_of(values: type[E]) -> Kind:
    """One member of the str-valued enum ``values``, given as the member or its value."""
    members = list(values)
    text = " or ".join(f'`"{m.value}"`' for m in members)

    def coerce(value: Any, option: str, where: str) -> E:
        for m in members:
            if value is m or value == m.value:
                return m
        raise _fail(where, option, " or ".join(repr(m.value) for m in members), value)

    return Kind(text, coerce)


def kind(text: str, coerce: Callable[[Any, str, str], Any]) -> Kind:
    """A kind of its own, for options whose checks need more than a plain value."""
    return Kind(text, coerce)


SECONDS = Kind("seconds or timedelta", _seconds)
OPTIONAL_SECONDS = Kind("seconds or timedelta", _optional(_seconds))
OPTIONAL_POSITIVE_SECONDS = Kind("seconds or timedelta, > 0", _optional(_positive_seconds))
COUNT = Kind("int >= 0", _int(0))
POSITIVE_INT = Kind("int >= 1", _int(1))
OPTIONAL_POSITIVE_INT = Kind("int >= 1", _optional(_int(1)))
INT = Kind("int", _int(None))
MULTIPLIER = Kind("number >= 1", _multiplier)
FRACTION = Kind("number in [0, 1]", _fraction)
BOOL = Kind("bool", _bool)
TEXT = Kind("string", _text)
OPTIONAL_TEXT = Kind("string", _optional(_text))
TAGS = Kind("list of strings", _tags)
CALLBACK = Kind("function", _optional(_callback))
MAPPING = Kind("dict", _mapping)
EXCEPTIONS = Kind("exception classes", _exceptions)
ANY = Kind("any", _anything)
