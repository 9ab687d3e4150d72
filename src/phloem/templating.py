"""Placeholders in shell commands, SQL text and ``phloem.template`` strings, filled when the
attempt runs: ``{ds}``, ``{run_id}``, ``{params.x}``, ``{var.x}``, ``{conn.x.host}`` ...

Only known names are replaced, so ordinary braces (``awk '{print $1}'``, JSON, ``${HOME}``)
pass through untouched. ``{{ ds }}`` (the Jinja spelling) is accepted too, so SQL and file
names written for Airflow keep working. Values of connections are registered as secrets, so a
password put into a command is masked in the attempt's log.
"""

from __future__ import annotations

import re
from typing import Any

from phloem.context import Deferred, TaskContext, context
from phloem.errors import PhloemError

#: names that come straight from the attempt's context
_CONTEXT_NAMES = (
    "ds",
    "ds_nodash",
    "ts",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "pipeline",
    "task_id",
    "map_index",
    "try_number",
)
_CONNECTION_FIELDS = ("conn_type", "host", "port", "login", "password", "schema", "uri")

_NAME = r"(?:" + "|".join(_CONTEXT_NAMES) + r"|params(?:\.\w+)+|var\.\w+|conn\.\w+\.\w+)"
# ``{{ name }}`` or ``{name}``, but not ``${name}`` (a shell variable)
_PATTERN = re.compile(r"\{\{\s*(" + _NAME + r")\s*\}\}|(?<!\$)\{(" + _NAME + r")\}")


class Template(str, Deferred):
    """A string argument whose placeholders are filled when the attempt runs."""

    __slots__ = ()

    def resolve(self) -> str:
        return render(str(self))


def template(text: str) -> Template:
    """Mark a string argument for templating: ``load(path=phloem.template("raw/{ds}.csv"))``.

    Shell commands and SQL text are templated without it.
    """
    if not isinstance(text, str):
        raise PhloemError(f"phloem.template() takes a string, not {type(text).__name__}")
    return Template(text)


def has_placeholders(text: str) -> bool:
    return _PATTERN.search(text) is not None


def render(text: str, ctx: TaskContext | None = None) -> str:
    """``text`` with its placeholders filled from ``ctx`` (the running attempt's by default)."""
    if "{" not in text:
        return text
    if ctx is None:
        if not has_placeholders(text):
            return text
        ctx = context()
    return _PATTERN.sub(lambda m: _value(m.group(1) or m.group(2), ctx, text), text)


def _value(name: str, ctx: TaskContext, text: str) -> str:
    head, _, rest = name.partition(".")
    if head == "params":
        return _param(rest, ctx, text)
    if head == "var":
        from phloem.variables import variable

        return _text(variable(rest))
    if head == "conn":
        return _connection(rest, text)
    value: Any = getattr(ctx, name)
    return "" if value is None else _text(value)


def _param(path: str, ctx: TaskContext, text: str) -> str:
    value: Any = ctx.params
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif not isinstance(value, dict) and hasattr(value, part):
            value = getattr(value, part)
        else:
            known = ", ".join(sorted(ctx.params)) or "none"
            raise PhloemError(
                f"template {text!r}: the run has no parameter '{path}' (its parameters: "
                f"{known}); declare it on the pipeline or fix the placeholder"
            )
    return _text(value)


def _connection(rest: str, text: str) -> str:
    from phloem.variables import connection

    conn_name, _, field = rest.partition(".")
    if field not in _CONNECTION_FIELDS:
        raise PhloemError(
            f"template {text!r}: a connection has no field '{field}'; use one of "
            f"{', '.join(_CONNECTION_FIELDS)}"
        )
    value = getattr(connection(conn_name), field)  # registers its secrets for masking
    return "" if value is None else str(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    import json

    return json.dumps(value, default=str)


__all__ = ["Template", "has_placeholders", "render", "template"]
