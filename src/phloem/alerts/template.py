"""Alert messages with values from the run: ``"AUC {metrics.auc:.3f} for {run.logical_date}"``.

Only plain names and one attribute level are allowed (``{metrics.auc}``, ``{run.id}``), never
indexing or private attributes, so a message cannot reach into objects; the template is checked
when the rule is declared, and a value the run lacks renders as ``?`` instead of failing.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from phloem.errors import AlertError

#: what a message may name, and what each holds
FIELDS: dict[str, str] = {
    "pipeline": "the pipeline's name",
    "run": "the run: run.id, run.state, run.logical_date, run.duration (seconds)",
    "metrics": "the run's logged metrics by name: metrics.auc",
    "params": "the run's parameters by name: params.date",
    "rule": "what the rule watches, as text",
    "task": "the task (retry alerts)",
    "error": "the error (failure and retry alerts)",
    "value": "the value that broke the rule (duration, metric)",
    "see": "the command or link that shows the run",
}
MISSING = "?"


def check_template(text: str, where: str) -> str:
    """``text`` if every field it names is one a message may use; else a clear error."""
    if not isinstance(text, str):
        raise AlertError(f"{where}: message must be text, got {text!r}")
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise AlertError(f"{where}: cannot read the message {text!r} ({exc}); write "
                         "literal braces as {{ and }}") from None
    for _, field, spec, _conv in parts:
        if field is None:
            continue
        if "[" in field or field.count(".") > 1 or not field:
            raise AlertError(
                f"{where}: message field {{{field}}} is not allowed; use a name or name.attribute"
                f" such as {{metrics.auc}} (fields: {', '.join(FIELDS)})"
            )
        root, _, attr = field.partition(".")
        if root not in FIELDS or attr.startswith("_"):
            raise AlertError(
                f"{where}: message field {{{field}}} is unknown; use one of "
                + ", ".join("{" + f + "}" for f in FIELDS)
            )
        if spec and "{" in spec:
            raise AlertError(f"{where}: message field {{{field}}} nests another field")
    return text


class _Bag:
    """Attribute access over a mapping; a missing name reads as ``?``."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._values.get(name, _Missing())

    def __format__(self, spec: str) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._values.items())


class _Missing:
    def __format__(self, spec: str) -> str:
        return MISSING

    def __repr__(self) -> str:
        return MISSING

    __str__ = __repr__


class _Lenient(string.Formatter):
    """A value whose format spec does not fit it (``{pipeline:.2f}``) is shown plainly."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        try:
            return format(value, format_spec)
        except (ValueError, TypeError):
            return str(value)


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        return _Missing()


def render(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with its fields filled from ``values`` (mappings become attribute bags)."""
    ns = {k: _Bag(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    try:
        return _Lenient().vformat(text, (), _Values(ns))
    except (ValueError, TypeError, AttributeError) as exc:  # checked text never gets here
        return f"{text} (message could not be filled: {exc})"


__all__ = ["FIELDS", "check_template", "render"]
