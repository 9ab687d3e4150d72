"""How an option is declared: once, as a dataclass field that carries its documentation.

``retries: int = option(0, COUNT, "attempts after the first failure")`` gives the option's
name (the field), its type and coercion (the ``Kind``), its default (the field's) and its one
line of documentation. Validation, the hints for unknown names and the README tables all read
these declarations, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar, overload

T = TypeVar("T")
_KEY = "phloem_option"


@dataclass(frozen=True, slots=True)
class Kind:
    """What values an option takes: a text for people and a function that checks and
    normalizes a value, ``coerce(value, option_name, where)``, raising DefinitionError."""

    text: str
    coerce: Callable[[Any, str, str], Any]


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    kind: Kind
    doc: str
    default_text: str

    def coerce(self, value: Any, where: str) -> Any:
        return self.kind.coerce(value, self.name, where)


@dataclass(frozen=True, slots=True)
class _Declared:
    kind: Kind
    doc: str
    shown: str | None


@overload
def option(default: T, kind: Kind, doc: str, *, shown: str | None = None) -> T: ...
@overload
def option(*, kind: Kind, doc: str, shown: str | None = None) -> Any: ...
@overload
def option(*, factory: Callable[[], T], kind: Kind, doc: str, shown: str | None = None) -> T: ...
def option(
    default: Any = dataclasses.MISSING,
    kind: Kind | None = None,
    doc: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    shown: str | None = None,
) -> Any:
    """A dataclass field that is an option authors may set; ``shown`` overrides how the
    default is written in the documentation."""
    assert kind is not None and doc, "an option needs a kind and one line of documentation"
    meta = {_KEY: _Declared(kind, doc, shown)}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


@cache
def declared(cls: type) -> Mapping[str, Option]:
    """The options of a dataclass, in declaration order (fields without ``option`` are
    internal and not settable by authors)."""
    out: dict[str, Option] = {}
    for f in dataclasses.fields(cls):
        d = f.metadata.get(_KEY)
        if d is None:
            continue
        out[f.name] = Option(f.name, d.kind, d.doc, d.shown or _default_text(f))
    return out


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, tuple) and not value:
        return "none"
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum
        return f"`{value.value}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"
