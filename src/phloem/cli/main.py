"""``phloem``: run pipelines, inspect runs, read logs and outputs, manage the store.

The console script. ``phloem run PATH`` with plain arguments takes the quick path (``quick``):
no typer, no pydantic, no rich when output is not a terminal, as a one-task run should not pay
for them; everything else goes to the typer app in ``commands``, whose names (``app``,
``for_argv``, the commands) this module also gives, imported when first asked for.

Exit status: 0 success, 1 the run failed, 2 a usage or definition error (printed as one
``error: ...`` line on stderr), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def main() -> None:
    """The console script: run the command, then leave without the interpreter's teardown.

    Everything is committed and every worker is stopped when a command returns; tearing down
    hundreds of imported modules would only add ~0.1 s to every command.
    """
    import gc

    # what start-up imports is alive for good: no collection while importing it (they only
    # walk it again and again), then frozen, never collected, and GC back on for the command
    gc.disable()

    def started() -> None:
        gc.freeze()
        gc.enable()

    code = 0
    args = sys.argv[1:]
    try:
        from phloem.cli import quick

        parsed = quick.parse_run(args)
        if parsed is not None:
            quick.run(parsed, started)
        else:
            from phloem.cli.commands import for_argv

            command = for_argv(args)
            started()
            command()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def __getattr__(name: str) -> Any:
    """``app``, ``for_argv`` and the commands, from ``commands`` (importing typer) on first use."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from phloem.cli import commands

    try:
        return getattr(commands, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
