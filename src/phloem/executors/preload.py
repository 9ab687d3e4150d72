"""Import, once in the driver, the modules task bodies import, before workers are forked.

A task that imports scikit-learn inside its body would otherwise make every worker import it
again (a second or more each, on the critical path of a parallel pipeline); forked workers
inherit what the driver imported, so the cost is paid once, as in a plain script.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import sys
import textwrap
from collections.abc import Iterable, Mapping

from phloem.dsl.spec import PipelineSpec

log = logging.getLogger("phloem.executors")


def imported_in_tasks(pipelines: Mapping[str, PipelineSpec]) -> list[str]:
    """Module names imported inside the task functions' bodies, in order."""
    names: dict[str, None] = {}
    for spec in pipelines.values():
        for fn in {id(t.fn): t.fn for t in spec.tasks.values()}.values():
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
            except (OSError, TypeError, SyntaxError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update((a.name, None) for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names[node.module] = None
    return list(names)


def preload(modules: Iterable[str]) -> None:
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # the task will meet (and report) the same error itself
            log.debug("could not preload %s: %s", name, exc)
