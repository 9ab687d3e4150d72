"""Which names a task, group or pipeline may have.

Names end up in log file names, database columns (250 characters), command lines
(``FILE:PIPELINE``) and terminals, so characters that break one of those are refused when the
pipeline is defined rather than when a worker trips over them: control and format characters
(NUL, newlines, escapes, invisible or direction-changing characters), path separators, and
the separators phloem gives a meaning (``.`` between a group and its tasks, ``:`` after a file).
"""

from __future__ import annotations

import unicodedata

from phloem.errors import DefinitionError

#: the width of the name columns in the store
MAX_LENGTH = 250

_FORBIDDEN = {
    "task": "./\\",
    "group": "./\\",
    "pipeline": ":/\\",
}
_MEANING = {".": "separates a group from its tasks", ":": "separates a file from a pipeline"}


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    code = f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"
    return f"{ch!r} ({code})"


def _bad_character(name: str, what: str) -> str | None:
    for ch in name:
        if ch in _FORBIDDEN[what]:
            meaning = _MEANING.get(ch, "is a path separator")
            return f"'{ch}' ({meaning})"
        category = unicodedata.category(ch)
        if category[0] == "C" or category in ("Zl", "Zp") or (ch.isspace() and ch != " "):
            return f"the control character {_describe(ch)}"
    return None


def check_name(name: object, what: str, where: str) -> str:
    """Return ``name`` if it is a valid ``what`` ("task", "group" or "pipeline") name."""
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError(f"{where}: a {what} name must be a non-empty string, got {name!r}")
    bad = _bad_character(name, what)
    if bad is not None:
        raise DefinitionError(
            f"{where}: {what} name {name!r} contains {bad}; use letters, digits, '_' and '-' "
            "(e.g. the function's name)"
        )
    if name != name.strip():
        raise DefinitionError(
            f"{where}: {what} name {name!r} starts or ends with a space; write {name.strip()!r}"
        )
    if len(name) > MAX_LENGTH:
        raise DefinitionError(
            f"{where}: {what} name '{name[:40]}...' is {len(name)} characters long; the limit "
            f"is {MAX_LENGTH}"
        )
    return name
