"""The README's option tables, written from the option declarations.

``python -m phloem.dsl.docs`` prints the tables; ``--write README.md`` replaces them in place
(between ``<!-- options:SCOPE -->`` and ``<!-- /options:SCOPE -->``); ``--check README.md``
exits 1 when the file disagrees with the declarations. A test runs the check.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from phloem.dsl.declare import declared
from phloem.dsl.options import SCOPES

#: the tables the README carries, in order
TABLES = ("task", "sensor", "pipeline")


def table(scope: str) -> str:
    """One markdown table: option, type, default, what it does."""
    rows = ["| option | type | default | what it does |", "| --- | --- | --- | --- |"]
    for opt in declared(SCOPES[scope]).values():
        rows.append(f"| `{opt.name}` | {opt.kind.text} | {opt.default_text} | {opt.doc} |")
    return "\n".join(rows)


def _region(scope: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- options:{scope} -->\n)(.*?)(<!-- /options:{scope} -->)", re.DOTALL)


def render(text: str) -> str:
    """``text`` with every options region replaced by the table the declarations give."""
    for scope in TABLES:
        found = _region(scope).search(text)
        if found is None:
            raise ValueError(f"no '<!-- options:{scope} -->' region found")
        start, end = found.span(2)
        text = text[:start] + table(scope) + "\n" + text[end:]
    return text


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] in ("--check", "--write"):
        path = Path(argv[1])
        current = path.read_text(encoding="utf-8")
        wanted = render(current)
        if argv[0] == "--write":
            path.write_text(wanted, encoding="utf-8")
            return 0
        if wanted != current:
            print(f"{path}: option tables are stale; run python -m phloem.dsl.docs --write {path}")
            return 1
        return 0
    if argv:
        print("usage: python -m phloem.dsl.docs [--check FILE | --write FILE]", file=sys.stderr)
        return 2
    for scope in TABLES:
        print(f"<!-- options:{scope} -->\n{table(scope)}\n<!-- /options:{scope} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
