"""Find pipelines in a Python file: ``path/to/file.py`` or ``path/to/file.py:name``."""

from __future__ import annotations

import hashlib
import importlib.util
import keyword
import sys
from pathlib import Path

from phloem.dsl.pipeline import Pipeline
from phloem.errors import DefinitionError, PipelineNotFound


def split_target(target: str) -> tuple[Path, str | None]:
    path, sep, name = target.rpartition(":")
    if not sep or not path or "/" in name or name.endswith(".py"):
        return Path(target), None
    return Path(path), name or None


def module_name(path: Path) -> str:
    """The name a pipeline file is imported under.

    Its own name (``train.py`` -> ``train``) when nothing else owns that name, so objects
    pickled by its tasks (a model class defined in the file) load anywhere the file's folder
    is importable; otherwise a name unique to the path.
    """
    path = path.resolve()
    stem = path.stem
    if stem.isidentifier() and not keyword.iskeyword(stem):
        loaded = sys.modules.get(stem)
        if loaded is not None:
            if getattr(loaded, "__file__", None) == str(path):
                return stem
        elif stem not in sys.stdlib_module_names:
            try:
                spec = importlib.util.find_spec(stem)
            except (ImportError, ValueError):
                spec = None
            if spec is None or spec.origin == str(path):
                return stem
    return "phloem_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


def load_module_pipelines(path: Path) -> dict[str, Pipeline]:
    """Import the file once per process (cached in sys.modules) and return its pipelines."""
    path = path.resolve()
    if not path.is_file():
        raise PipelineNotFound(f"no such pipeline file: {path}")
    mod_name = module_name(path)
    module = sys.modules.get(mod_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise PipelineNotFound(f"cannot import {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except DefinitionError:
            del sys.modules[mod_name]
            raise
        except Exception as exc:
            del sys.modules[mod_name]
            raise DefinitionError(
                f"{path}: importing the file failed: {type(exc).__name__}: {exc}"
            ) from exc
    found: dict[str, Pipeline] = {}
    for value in vars(module).values():
        if isinstance(value, Pipeline):
            found[value.name] = value
    return found


def load_pipeline(target: str) -> Pipeline:
    """The pipeline named in ``target``, or the only one in the file."""
    path, name = split_target(target)
    found = load_module_pipelines(path)
    if name is not None:
        if name not in found:
            have = ", ".join(sorted(found)) or "none"
            raise PipelineNotFound(f"{path} has no pipeline '{name}' (it defines: {have})")
        return found[name]
    if not found:
        raise PipelineNotFound(
            f"{path} defines no pipeline; decorate a function with @phloem.pipeline"
        )
    if len(found) > 1:
        names = ", ".join(sorted(found))
        raise PipelineNotFound(
            f"{path} defines several pipelines ({names}); name one as {path}:NAME"
        )
    return next(iter(found.values()))


def reload_pipeline(target: str) -> Pipeline:
    """``load_pipeline`` after forgetting the file's module, so a changed file is read anew."""
    path, _ = split_target(target)
    sys.modules.pop(module_name(path), None)
    return load_pipeline(target)
