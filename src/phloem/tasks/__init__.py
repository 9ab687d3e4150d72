"""Ready-made tasks: call them inside a ``@pipeline`` body like your own.

- ``shell(command, env=..., cwd=...)``: run a command; its output streams into the attempt log
  and the last line of stdout is the task's output.
- ``sql(query, conn="warehouse", params=...)``: run one statement on a connection, parameters
  bound; rows come back as a list of dicts.
"""

from phloem.errors import CommandFailed
from phloem.tasks.shell import shell
from phloem.tasks.sql import sql

__all__ = ["CommandFailed", "shell", "sql"]
