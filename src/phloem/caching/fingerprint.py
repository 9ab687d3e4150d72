"""What a task's code is, for its cache key: a hash of every function and class of the user's
own modules that the task reaches, and the versions of the libraries those modules use.

A function is hashed by its bytecode, constants, names, defaults and closure (so comments and
moved lines do not count, while any change of behaviour does), then the globals it names are
followed: functions and classes defined in the user's modules are hashed in turn (a helper in
another file counts), modules are followed through the attributes the code names
(``helpers.clean``), and everything that comes from an installed distribution is recorded as
that distribution's name and version (``scikit-learn 1.5.2``), without importing it. The
standard library is covered by the Python version. Module-level constants the code reads
(``THRESHOLD = 0.5``) count by value.

Each function's fingerprint is computed once per process (the task's code cannot change while
the process runs), not once per task instance.
"""

from __future__ import annotations

import dis
import hashlib
import importlib
import importlib.metadata as md
import importlib.util
import os
import sys
import types
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from phloem.caching.hashing import Unhashable, value_digest
from phloem.caching.origin import is_user_module, is_user_path

_IMPORTS = frozenset({"IMPORT_NAME", "IMPORT_FROM"})


@dataclass(frozen=True, slots=True)
class CodeParts:
    """A task's code, as cache key parts: ``code`` maps each reached function or class
    (``module.qualname``) to its hash; ``packages`` maps each distribution to its version."""

    code: Mapping[str, str]
    packages: Mapping[str, str]


class Versions:
    """Which distribution provides a module, and its version (importlib.metadata), looked up
    once per module. ``overrides`` (distribution -> version) is the seam tests use to pretend
    a library was upgraded.

    A module named like its distribution (``numpy``) costs one metadata read; another
    (``sklearn`` of scikit-learn) is found in the installed distributions' file lists, read as
    text (not ``packages_distributions()``, which parses every list and costs ~0.4 s)."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._owner: dict[str, str | None] = {}
        self._versions: dict[str, str | None] = {}

    def of_module(self, module: str) -> tuple[str, str] | None:
        """(distribution, version) for a module outside the standard library, else None."""
        top = module.partition(".")[0]
        if not top or top in sys.stdlib_module_names or top == "builtins":
            return None
        if top not in self._owner:
            self._owner[top] = self._find(top)
        dist = self._owner[top]
        if dist is None:
            return None
        version = self.version(dist)
        return None if version is None else (dist, version)

    def _find(self, top: str) -> str | None:
        for name in dict.fromkeys((top, top.replace("_", "-"))):
            if self.version(name) is not None:
                return name
        needles = (f"{top}/__init__.py,", f"{top}.py,", f"{top}/")
        for dist in md.distributions():
            record = dist.read_text("RECORD") or ""
            for needle in needles:
                if record.startswith(needle) or f"\n{needle}" in record:
                    return str(dist.metadata["Name"])
        return None

    def version(self, dist: str) -> str | None:
        if dist in self.overrides:
            return self.overrides[dist]
        if dist not in self._versions:
            try:
                self._versions[dist] = md.version(dist)
            except md.PackageNotFoundError:
                self._versions[dist] = None
        return self._versions[dist]


_default_versions = Versions()


#: a name the walk looked up: (namespace, name, id of the object it found)
_Dep = tuple[dict[str, Any], str, int]


class Fingerprinter:
    """Computes :class:`CodeParts` of functions, remembering each function's result with the
    names it looked up; a remembered result is reused only while every one of those names
    still holds the same object (a module reloaded in the process is seen)."""

    def __init__(self, versions: Versions | None = None) -> None:
        self.versions = versions or _default_versions
        self._memo: weakref.WeakKeyDictionary[Any, tuple[CodeParts, list[_Dep]]] = (
            weakref.WeakKeyDictionary()
        )

    def parts(self, fn: Callable[..., Any]) -> CodeParts:
        try:
            known = self._memo.get(fn)
        except TypeError:
            known = None
        if known is not None and all(id(ns.get(name)) == oid for ns, name, oid in known[1]):
            return known[0]
        walk = _Walk(self.versions)
        out = walk.run(fn)
        try:
            self._memo[fn] = (out, walk.deps)
        except TypeError:
            pass
        return out


_default = Fingerprinter()


def code_parts(fn: Callable[..., Any], versions: Versions | None = None) -> CodeParts:
    """The code parts of ``fn`` (remembered per process for the default versions)."""
    if versions is None or versions is _default_versions:
        return _default.parts(fn)
    return Fingerprinter(versions).parts(fn)


def function_digest(fn: Any) -> str:
    """One hash for a function or class passed as a value (its code and what it reaches)."""
    parts = code_parts(fn)
    h = hashlib.sha256()
    for k in sorted(parts.code):
        h.update(f"{k}={parts.code[k]};".encode())
    for k in sorted(parts.packages):
        h.update(f"{k}=={parts.packages[k]};".encode())
    return h.hexdigest()


def _label(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    if module == "__main__":
        main = sys.modules.get("__main__")
        file = getattr(main, "__file__", None)
        module = os.path.splitext(os.path.basename(file))[0] if file else module
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


class _Walk:
    def __init__(self, versions: Versions) -> None:
        self.versions = versions
        self.code: dict[str, str] = {}
        self.packages: dict[str, str] = {}
        self.seen: set[int] = set()
        self.todo: list[Any] = []
        self.deps: list[_Dep] = []

    def run(self, fn: Any) -> CodeParts:
        self.packages["python"] = ".".join(map(str, sys.version_info[:3]))
        self.todo.append(fn)
        while self.todo:
            obj = self.todo.pop()
            if id(obj) in self.seen:
                continue
            self.seen.add(id(obj))
            if isinstance(obj, type):
                self._class(obj)
            else:
                self._function(obj)
        return CodeParts(dict(sorted(self.code.items())), dict(sorted(self.packages.items())))

    # -- what an object is ------------------------------------------------------------------

    def _reach(self, value: Any, names: frozenset[str], h: Any, label: str) -> None:
        """Follow a value a function names: user code is walked, libraries are versioned,
        constants count by value (into ``h``, the naming function's hash)."""
        inner = getattr(value, "fn", None)
        if inner is not None and hasattr(value, "__phloem_task__"):
            value = inner  # a phloem task: its plain function
        if isinstance(value, types.ModuleType):
            if is_user_module(value.__name__):
                ns = vars(value)
                for attr in sorted(names):
                    if attr in ns and id(ns[attr]) not in self.seen:
                        self.deps.append((ns, attr, id(ns[attr])))
                        self._reach(ns[attr], names, h, f"{value.__name__}.{attr}")
            else:
                self._library(value.__name__)
            return
        if isinstance(value, (types.FunctionType, type, types.MethodType)):
            target = value.__func__ if isinstance(value, types.MethodType) else value
            module = getattr(target, "__module__", None) or ""
            if is_user_module(module):
                self.todo.append(target)
            else:
                self._library(module)
            return
        if isinstance(value, types.BuiltinFunctionType):
            self._library(getattr(value, "__module__", None) or "")
            return
        h.update(f"{label}={_constant(value)};".encode())
        module = type(value).__module__
        if not is_user_module(module):
            self._library(module)

    def _library(self, module: str) -> None:
        found = self.versions.of_module(module)
        if found is not None:
            self.packages[found[0]] = found[1]

    # -- functions and classes --------------------------------------------------------------

    def _function(self, fn: Any) -> None:
        code = getattr(fn, "__code__", None)
        if code is None:
            self._library(getattr(fn, "__module__", None) or "")
            return
        h = hashlib.sha256()
        h.update(_code_digest(code).encode())
        h.update(_constant(getattr(fn, "__defaults__", None)).encode())
        h.update(_constant(getattr(fn, "__kwdefaults__", None)).encode())
        names = frozenset(_names(code))
        imports = frozenset(_imports(code))
        for cell_name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
            try:
                content = cell.cell_contents
            except ValueError:
                continue
            self._reach(content, names, h, cell_name)
        glob = getattr(fn, "__globals__", {})
        for name in sorted(names):
            if name in glob:
                self.deps.append((glob, name, id(glob[name])))
                self._reach(glob[name], names, h, name)
        for name in sorted(imports):
            self._imported(name, names, h)
        self.code[_label(fn)] = h.hexdigest()[:16]

    def _imported(self, name: str, names: frozenset[str], h: Any) -> None:
        """A module a function imports in its body (``import sklearn.linear_model``): a
        library is versioned without importing it; one of the user's own modules is imported
        (as the task will) so the code it reaches counts."""
        mod = sys.modules.get(name)
        if mod is None and is_user_path(name):
            try:
                mod = importlib.import_module(name)
            except Exception:
                h.update(f"import {name} failed;".encode())
                return
        if mod is not None:
            self._reach(mod, names, h, name)
        else:
            self._library(name)

    def _class(self, cls: type) -> None:
        h = hashlib.sha256()
        for base in cls.__bases__:
            if base is not object:
                h.update(f"base:{_label(base)};".encode())
                self._reach(base, frozenset(), h, "base")
        for attr, value in sorted(vars(cls).items()):
            if attr in ("__dict__", "__weakref__", "__module__", "__doc__", "__qualname__"):
                continue
            for target in _members(value):
                if isinstance(target, types.FunctionType):
                    h.update(f"{attr}:{_code_digest(target.__code__)};".encode())
                    self.todo.append(target)
                else:
                    h.update(f"{attr}={_constant(target)};".encode())
        self.code[_label(cls)] = h.hexdigest()[:16]


def _members(value: Any) -> Iterator[Any]:
    if isinstance(value, (staticmethod, classmethod)):
        yield value.__func__
    elif isinstance(value, property):
        yield from (f for f in (value.fget, value.fset, value.fdel) if f is not None)
    else:
        yield value


def _names(code: types.CodeType) -> Iterator[str]:
    """Global and attribute names a code object (and the code nested in it) uses."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _imports(code: types.CodeType) -> Iterator[str]:
    """The modules a code object (and the code nested in it) imports in its body."""
    if any(op in _IMPORTS for op in _opnames(code)):
        for ins in dis.get_instructions(code):
            if ins.opname == "IMPORT_NAME" and isinstance(ins.argval, str):
                yield ins.argval
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _imports(const)


def _opnames(code: types.CodeType) -> Iterator[str]:
    raw = code.co_code
    for i in range(0, len(raw), 2):
        yield dis.opname[raw[i]]


def _code_digest(code: types.CodeType) -> str:
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    h.update(repr((code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode())
    for const in code.co_consts:
        h.update(_const_text(const).encode())
    return h.hexdigest()


def _const_text(const: Any) -> str:
    """A constant of compiled code as text that is the same in every process: a frozenset
    (``x in {"a", "b"}``) is written sorted, as its order follows string hashing, which
    differs from one process to the next."""
    if isinstance(const, types.CodeType):
        return _code_digest(const)
    if isinstance(const, frozenset):
        return "frozenset:" + ",".join(sorted(_const_text(c) for c in const)) + ";"
    if isinstance(const, tuple):
        return "tuple:" + ",".join(_const_text(c) for c in const) + ";"
    return f"{type(const).__name__}:{const!r};"


def _constant(value: Any) -> str:
    """A module-level value a function reads: its content hash, or its type when it has
    none (a client object, a lock): such a value does not make a key unusable."""
    if isinstance(value, (types.FunctionType, type, types.ModuleType)):
        return _label(value)
    try:
        return value_digest(value, function_digest)[:16]
    except Unhashable:
        return f"<{type(value).__module__}.{type(value).__qualname__}>"
    except Exception:
        return f"<{type(value).__qualname__}>"


__all__ = ["CodeParts", "Fingerprinter", "Versions", "code_parts", "function_digest"]
