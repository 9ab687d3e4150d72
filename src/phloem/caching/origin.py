"""Whose code a module is: the user's own (its code counts in cache keys), or the standard
library, an installed library or phloem (counted by version)."""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.base_prefix, sys.prefix, sys.exec_prefix}
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


_ROOTS = _library_roots()
_PHLOEM_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep


def is_user_module(name: str) -> bool:
    """Is ``name`` one of the user's own modules (not the standard library, not an installed
    library, not phloem)?"""
    mod = sys.modules.get(name)
    file = getattr(mod, "__file__", None) if mod is not None else None
    if file is None:
        return name == "__main__" and mod is not None and hasattr(mod, "__file__")
    path = os.path.realpath(file)
    return not path.startswith(_ROOTS) and not path.startswith(_PHLOEM_ROOT)


def is_user_path(name: str) -> bool:
    """Would importing ``name`` load one of the user's own files (not a library)? Only the
    top-level package is looked at, which imports nothing (a dotted name would import its
    parent package)."""
    try:
        spec = importlib.util.find_spec(name.partition(".")[0])
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or origin in ("built-in", "frozen"):
        return False
    path = os.path.realpath(origin)
    return not path.startswith(_ROOTS) and not path.startswith(_PHLOEM_ROOT)


__all__ = ["is_user_module", "is_user_path"]
