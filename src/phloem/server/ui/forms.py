"""The trigger form's fields, one per typed parameter of the pipeline.

Each field says what kind of value it takes (``data-kind``), so the page's script checks it
before anything is sent (a number is a number, JSON parses, a choice is one of its options);
the server checks the values again against the same types when the run is created.
"""

from __future__ import annotations

import enum
import json
import typing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from phloem.dsl.spec import ParamSpec


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str  # bool | int | float | str | choice | date | datetime | json
    value: str  # the default, as the input shows it
    type_text: str
    choices: tuple[str, ...] = ()
    checked: bool = False
    optional: bool = False  # None is a valid value: an empty field sends null


def _choices(annotation: Any) -> tuple[str, ...] | None:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(str(m.value) for m in annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    return None


def field_of(p: ParamSpec) -> Field:
    a = p.annotation
    d = p.default
    text = p.describe()
    optional = d is None
    if a is bool:
        return Field(p.name, "bool", "", text, checked=bool(d), optional=optional)
    if a in (int, float, str):
        kind = a.__name__
        return Field(p.name, kind, "" if d is None else str(d), text, optional=optional)
    choices = _choices(a)
    if choices is not None:
        value = "" if d is None else str(d.value if isinstance(d, enum.Enum) else d)
        return Field(p.name, "choice", value, text, choices=choices, optional=optional)
    if a is date:
        return Field(p.name, "date", d.isoformat() if d else "", text, optional=optional)
    if a is datetime:
        value = d.strftime("%Y-%m-%dT%H:%M") if isinstance(d, datetime) else ""
        return Field(p.name, "datetime", value, text, optional=optional)
    if a is timedelta:
        secs = d.total_seconds() if isinstance(d, timedelta) else ""
        return Field(p.name, "float", str(secs), f"{text} (seconds)", optional=optional)
    try:
        value = "" if d is None else json.dumps(_jsonable(p, d), indent=1)
    except (TypeError, ValueError):
        value = ""
    return Field(p.name, "json", value, text, optional=optional)


def _jsonable(p: ParamSpec, value: Any) -> Any:
    from phloem.dsl.params import to_json

    return to_json(p, value)


def fields_of(params: dict[str, ParamSpec] | Any) -> list[Field]:
    return [field_of(p) for p in params.values()]


__all__ = ["Field", "field_of", "fields_of"]
