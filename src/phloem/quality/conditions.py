"""Conditions such as ``">= 0.85"`` or ``"< 50"``: parsed strictly, once, into a comparison.

The grammar is one comparison operator and one number (``1e-3``, ``-2``, ``inf``); anything
else is a :class:`~phloem.errors.ConditionError` that quotes the text and says what is
accepted, so a typo such as ``"=> 0.85"`` is never read as something else.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phloem.errors import ConditionError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

#: common slips, and what was surely meant
_SLIPS = {"=>": ">=", "=<": "<=", "=": "==", "<>": "!=", "≥": ">=", "≤": "<=", "=!": "!="}

_SHAPE = re.compile(r"\s*([^\s\w.+-]+)\s*(\S.*?)?\s*")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?", re.IGNORECASE)

ACCEPTED = "an operator (>=, >, <=, <, ==, !=) and a number, as '>= 0.85' or '< 50'"


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition: ``value <op> threshold``."""

    op: str
    threshold: float
    text: str

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the condition (NaN never does)."""
        if math.isnan(value):
            return False
        return OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


def parse(text: Any, *, what: str = "condition") -> Condition:
    """Parse ``text`` (see the module docstring); ``what`` names it in errors."""
    if not isinstance(text, str):
        raise ConditionError(
            f"{what} must be text such as '>= 0.85', not {type(text).__name__} ({text!r})"
        )
    m = _SHAPE.fullmatch(text)
    if m is None:
        raise ConditionError(f"{what} {text!r} is not a condition: write {ACCEPTED}")
    op, number = m.group(1), m.group(2)
    if op not in OPERATORS:
        hint = f"; did you mean '{_SLIPS[op]}'?" if op in _SLIPS else ""
        raise ConditionError(
            f"{what} {text!r} has an unknown operator '{op}'{hint} (use >=, >, <=, <, ==, !=)"
        )
    if number is None:
        raise ConditionError(f"{what} {text!r} has no number after '{op}': write {ACCEPTED}")
    if not _NUMBER.fullmatch(number):
        raise ConditionError(
            f"{what} {text!r}: '{number}' is not a number (write digits, as '{op} 0.85')"
        )
    threshold = float(number)
    return Condition(op, threshold, text.strip())


def as_number(value: Any, *, what: str) -> float:
    """A metric's value as a float (NumPy scalars and 0-d arrays too); bools and text are
    refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        item = getattr(value, "item", None)
        if callable(item) and not isinstance(value, (str, bytes)):
            try:
                return as_number(item(), what=what)
            except (TypeError, ValueError):
                pass
        raise ConditionError(f"{what} must be a number, not {type(value).__name__} ({value!r})")
    return float(value)


__all__ = ["ACCEPTED", "OPERATORS", "Condition", "as_number", "parse"]
