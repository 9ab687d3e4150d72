"""Run parameters, typed by the pipeline body's annotations.

A parameter's value lives in two forms: JSON in the store (``resolve_params``), so runs can be
listed, compared and triggered from a command line; and the annotated Python type inside tasks
(``typed_params``): a ``datetime`` arrives as a datetime, a pydantic model as the model. Plain
JSON types are checked here directly; the rest (datetime, date, timedelta, Path, Enum, Literal,
containers of those, pydantic models) by pydantic, imported only for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from phloem.dsl.spec import ParamSpec, PipelineSpec
from phloem.errors import DefinitionError, ParamError, first_line

#: annotations checked without pydantic (and what a default of that type implies)
SIMPLE_TYPES = (bool, int, float, str, list, dict)


def param_spec(name: str, default: Any, annotation: Any, where: str) -> ParamSpec:
    """The parameter ``name`` as declared; a default that does not fit is a definition error."""
    if annotation is None and default is not None and type(default) in SIMPLE_TYPES:
        annotation = type(default)
    if annotation is not None and annotation not in SIMPLE_TYPES:
        try:
            _adapter(annotation)
        except Exception as exc:
            raise DefinitionError(
                f"{where}: parameter '{name}' has a type phloem cannot check "
                f"({_describe(annotation)}): {first_line(exc)}; use JSON types, "
                "datetime, date, timedelta, Path, an Enum, a Literal or a pydantic model"
            ) from None
    spec = ParamSpec(name, default, annotation)
    if default is not None:
        try:
            to_json(spec, coerce_param(spec, default))
        except ParamError as exc:
            raise DefinitionError(f"{where}: default of {exc}") from None
    return spec


def coerce_param(spec: ParamSpec, value: Any) -> Any:
    """``value`` as the parameter's type; text (from ``--param``) is parsed."""
    typ = spec.annotation
    if typ is None or value is None:
        return value
    if typ in SIMPLE_TYPES:
        return _simple(spec, typ, value)
    adapter = _adapter(typ)
    from pydantic import ValidationError

    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        if isinstance(value, str):
            try:
                return adapter.validate_json(value)
            except ValidationError:
                pass
        raise _wrong(spec, value, _first_error(exc)) from None


def to_json(spec: ParamSpec, value: Any) -> Any:
    """A typed value in the form the store keeps (JSON)."""
    typ = spec.annotation
    if typ is None or typ in SIMPLE_TYPES or value is None:
        return value
    return _adapter(typ).dump_python(value, mode="json")


def resolve_params(spec: PipelineSpec, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's parameters, as stored: defaults overridden by ``overrides``, each checked
    against its type; unknown names and wrong types are errors."""
    values = {name: to_json(p, coerce_param(p, p.default)) for name, p in spec.params.items()}
    for key, value in (overrides or {}).items():
        if key not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise ParamError(
                f"pipeline '{spec.name}' has no parameter '{key}' (its parameters: {known})"
            )
        p = spec.params[key]
        _check_depth(p, value)
        values[key] = to_json(p, coerce_param(p, value))
    return values


#: deeper values are refused: nothing real nests this deep, and Python's own recursion (to
#: encode the value for the store, to send it to a worker) gives out near 1,000 levels
MAX_PARAM_DEPTH = 100


def _check_depth(spec: ParamSpec, value: Any) -> None:
    if isinstance(value, str):
        # text is parsed as JSON for any type but str; measure it before parsing
        depth = 0 if spec.annotation in (None, str) else _text_depth(value)
    else:
        depth = _depth(value)
    if depth > MAX_PARAM_DEPTH:
        raise ParamError(
            f"parameter '{spec.name}' is nested more than {MAX_PARAM_DEPTH} levels deep; pass "
            "a flatter value, or a path to a file that a task reads"
        )


def _text_depth(text: str) -> int:
    """How deep the brackets of JSON text nest (outside strings), without parsing it."""
    depth = deepest = 0
    quoted = escaped = False
    for ch in text:
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _depth(value: Any) -> int:
    """How deep lists, tuples and dicts nest in ``value`` (iteratively: no recursion limit)."""
    deepest = 0
    todo = [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_PARAM_DEPTH:
            return deepest
        todo.extend((child, level + 1) for child in children)
    return deepest


def typed_params(spec: PipelineSpec, stored: Mapping[str, Any]) -> dict[str, Any]:
    """Stored parameters as their declared types, for the tasks that read them."""
    out = dict(stored)
    for name, p in spec.params.items():
        if name in out and p.annotation is not None and p.annotation not in SIMPLE_TYPES:
            out[name] = coerce_param(p, out[name])
    return out


def _simple(spec: ParamSpec, typ: type, value: Any) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            if typ is bool and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if typ in (int, float):
                return typ(value)
            if typ in (list, dict):
                parsed = json.loads(value)
                if isinstance(parsed, typ):
                    return parsed
        except (ValueError, RecursionError):
            pass
    raise _wrong(spec, value)


@cache
def _adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation)


def _describe(annotation: Any) -> str:
    if annotation is None:
        return "any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _first_error(exc: Any) -> str:
    errors = exc.errors()
    if not errors:
        return ""
    e = errors[0]
    loc = ".".join(str(x) for x in e.get("loc", ()))
    return f"{loc + ': ' if loc else ''}{e.get('msg', '')}"


def _wrong(spec: ParamSpec, value: Any, detail: str = "") -> ParamError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ParamError(
        f"parameter '{spec.name}' must be {_describe(spec.annotation)}, got {shown} "
        f"({type(value).__name__})" + (f": {detail}" if detail else ""),
    )


__all__ = ["coerce_param", "param_spec", "resolve_params", "to_json", "typed_params"]
