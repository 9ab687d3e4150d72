"""The quick path of ``phloem run``: plain arguments parsed here, the run started without typer.

Typer builds and imports a good deal before a command runs (click's objects, pydantic type
adapters for every parameter): about as long as a one-task run itself. ``parse_run`` reads the
arguments of ``run`` when they are plain (the target, and the options spelled out in full with
a value typer would take as it is); for anything else (``--help``, a short option glued to its
value, ``--``, an option given twice, a value typer would reject or convert, a stream click
would re-encode) it returns None and the typer app parses them, so help, errors and usage
messages stay typer's. ``run`` then does what typer's main does around the same command
function, ``run_cmd.run``.
"""

from __future__ import annotations

import codecs
import errno
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from phloem.states import ExecutorKind

#: option -> the field it sets, for the options that take a value
_VALUED = {
    "--param": "param",
    "-p": "param",
    "--executor": "executor",
    "-e": "executor",
    "--workers": "workers",
    "-w": "workers",
    "--logical-date": "logical_date",
}
#: flag -> the field it sets to True
_FLAGS = {
    "--rerun": "rerun",
    "--no-cache": "no_cache",
    "--refresh-cache": "refresh_cache",
    "--json": "as_json",
}
#: the largest --workers taken here (more digits: typer says what it thinks of them)
_MAX_WORKERS_DIGITS = 6


@dataclass
class RunArgs:
    """The arguments of ``phloem run``, as typer would hand them to the command."""

    target: str
    param: list[str] = field(default_factory=list)
    executor: ExecutorKind | None = None
    workers: int | None = None
    logical_date: str | None = None
    rerun: bool = False
    no_cache: bool = False
    refresh_cache: bool = False
    as_json: bool = False


def parse_run(args: Sequence[str]) -> RunArgs | None:
    """``args`` (the command line after ``phloem``) as ``run``'s arguments, if they are plain;
    None where typer should parse them."""
    if not args or args[0] != "run" or not _plain_streams():
        return None
    target: str | None = None
    given: dict[str, object] = {}
    params: list[str] = []
    rest = list(args[1:])
    while rest:
        token = rest.pop(0)
        if not _utf8(token):
            return None
        if not token.startswith("-"):
            if target is not None:
                return None  # typer: "Got unexpected extra argument"
            target = token
            continue
        name, eq, inline = token.partition("=")
        if name in _FLAGS and not eq:
            key = _FLAGS[name]
            if key in given:
                return None
            given[key] = True
            continue
        if name not in _VALUED or (eq and not name.startswith("--")):
            return None  # unknown, --help, "--", "-pKEY=V", "-p=...": typer's to parse
        if eq:
            value = inline
        elif rest:
            value = rest.pop(0)
        else:
            return None  # "requires an argument"
        if value.startswith("-") or not _utf8(value):
            return None
        key = _VALUED[name]
        if key == "param":
            params.append(value)
            continue
        if key in given:
            return None  # given twice: typer's rules
        converted = _convert(key, value)
        if converted is None:
            return None
        given[key] = converted
    if target is None:
        return None  # "Missing argument"
    return RunArgs(target, params, **given)  # type: ignore[arg-type]


def _convert(key: str, value: str) -> object | None:
    """``value`` as typer converts it for ``key``, or None if typer should judge it."""
    if key == "executor":
        kinds = {k.value: k for k in ExecutorKind}
        return kinds.get(value)
    if key == "workers":
        ok = value.isascii() and value.isdigit() and value[0] != "0"
        return int(value) if ok and len(value) <= _MAX_WORKERS_DIGITS else None
    return value


def _utf8(text: str) -> bool:
    """Whether ``text`` came as UTF-8 (undecodable bytes arrive as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_streams() -> bool:
    """stdout and stderr are text streams click would write to as they are (it re-wraps one
    whose encoding is ASCII)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        if stream is None or not encoding:
            return False
        try:
            if codecs.lookup(encoding).name == "ascii":
                return False
        except LookupError:
            return False
    return True


def run(args: RunArgs, started: Callable[[], None] = lambda: None) -> NoReturn:
    """``phloem run`` with ``args``: the command function inside the same scope and with the
    same endings as under typer (``common.Group`` and typer's main). ``started`` is called once
    what every run imports is imported."""
    from phloem.cli.plain import EXIT_INTERRUPTED, command_scope

    try:
        from phloem import api  # noqa: F401  (imported now, for ``started``)
        from phloem.cli import run_cmd

        started()
        with command_scope():
            run_cmd.run(
                args.target,
                args.param,
                args.executor,
                args.workers,
                args.logical_date,
                args.rerun,
                args.no_cache,
                args.refresh_cache,
                args.as_json,
            )
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except EOFError:
        from typer import rich_utils

        print(file=sys.stderr)
        rich_utils.rich_abort_error()
        raise SystemExit(1) from None
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        from typer._click.utils import PacifyFlushWrapper

        sys.stdout = PacifyFlushWrapper(sys.stdout)
        sys.stderr = PacifyFlushWrapper(sys.stderr)
        raise SystemExit(1) from None
