"""Import, once in the driver, the modules task bodies import, before workers are forked.

A task that imports scikit-learn inside its body would otherwise make every worker import it
again (a second or more each, on the critical path of a parallel pipeline); forked workers
inherit what the driver imported, so the cost is paid once, as in a plain script.
"""

from __future__ import annotations

import dis
import importlib
import inspect
import logging
import sys
from collections.abc import Iterable, Mapping
from types import CodeType

from phloem.dsl.spec import PipelineSpec

log = logging.getLogger("phloem.executors")


def imported_in_tasks(pipelines: Mapping[str, PipelineSpec]) -> list[str]:
    """Module names imported (absolutely) inside the task functions' bodies, and in what they
    define, in order.

    Read from their bytecode rather than their source: no file to read and tokenize (the
    tokenizer's patterns alone take milliseconds to compile, in every short run), and a task
    whose source is gone (defined in a notebook cell, or exec'd) is covered too."""
    names: dict[str, None] = {}
    for spec in pipelines.values():
        for fn in {id(t.fn): t.fn for t in spec.tasks.values()}.values():
            try:
                code = inspect.unwrap(fn).__code__
            except (AttributeError, ValueError):
                continue  # not a Python function (a callable object, a builtin)
            if isinstance(code, CodeType):
                _imports(code, names)
    return list(names)


#: what loads an import's level (0: absolute) right before its from-list and ``IMPORT_NAME``
_LOADS = {"LOAD_CONST", "LOAD_SMALL_INT"}


def _imports(code: CodeType, names: dict[str, None]) -> None:
    """Add the modules ``code`` (and the code it defines) imports absolutely to ``names``."""
    last: list[dis.Instruction] = []
    for ins in dis.get_instructions(code):
        if ins.opname == "EXTENDED_ARG":
            continue
        if ins.opname == "IMPORT_NAME" and len(last) == 2:
            level, fromlist = last
            if level.opname in _LOADS and fromlist.opname in _LOADS and level.argval == 0:
                names[ins.argval] = None
        last = [*last[-1:], ins]
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _imports(const, names)


def preload(modules: Iterable[str]) -> None:
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # the task will meet (and report) the same error itself
            log.debug("could not preload %s: %s", name, exc)
