"""A task instance's cache key: its parts (code, libraries, inputs, version salt) and their
hash. The parts are kept with the instance's check so ``phloem cache explain`` can say, after
the fact, what the key was made of and which part changed."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from phloem.caching.fingerprint import Versions, code_parts, function_digest
from phloem.caching.hashing import Unhashable, value_digest
from phloem.dsl.cache import Cache
from phloem.dsl.spec import TaskSpec

#: the key's format: bump it when the parts change meaning, so older entries stop matching
KEY_FORMAT = 1


@dataclass(frozen=True, slots=True)
class CacheContext:
    """What a ``Cache(key=fn)`` function receives."""

    pipeline: str
    task_id: str
    map_index: int | None
    logical_date: str
    params: Mapping[str, Any]
    #: the arguments as the driver holds them: literal values and parameters as they are,
    #: upstream outputs as their stored form (JSON text or an artifact reference)
    arguments: Mapping[str, Any]
    #: each argument's content hash
    input_hashes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class KeyParts:
    """The parts of one key, as stored (JSON-able) and as ``explain`` compares them."""

    code: Mapping[str, str]
    packages: Mapping[str, str]
    inputs: Mapping[str, str]
    version: str
    custom: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": KEY_FORMAT,
            "code": dict(self.code),
            "packages": dict(self.packages),
            "inputs": dict(self.inputs),
            "version": self.version,
        }
        if self.custom is not None:
            out["custom"] = self.custom
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> KeyParts:
        return cls(
            dict(d.get("code", {})),
            dict(d.get("packages", {})),
            dict(d.get("inputs", {})),
            str(d.get("version", "")),
            d.get("custom"),
        )

    def digest(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class NoKey(Exception):
    """No key can be made for this instance; ``reason`` is shown by ``phloem cache explain``,
    and ``parts`` holds what could be computed."""

    def __init__(self, reason: str, parts: KeyParts | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.parts = parts


class TaskKeys:
    """Makes the keys of one task's instances; the code part is computed once."""

    def __init__(self, spec: TaskSpec, cache: Cache, versions: Versions | None = None) -> None:
        self.spec = spec
        self.cache = cache
        parts = code_parts(spec.fn, versions)
        code = dict(parts.code)
        if spec.is_branch:
            # a branch's stored choice names the tasks after it in this pipeline
            code["(branch targets)"] = ",".join(spec.downstream)
        self.code = code
        self.packages = parts.packages
        self._names = _parameter_names(spec.fn)

    def key(
        self,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        context: Callable[[dict[str, Any], dict[str, str]], CacheContext],
    ) -> tuple[str, KeyParts]:
        """The key of an instance called with ``args``/``kwargs``; raises NoKey."""
        named = self._bind(args, kwargs)
        hashes: dict[str, str] = {}
        problems: list[str] = []
        for name, value in named.items():
            try:
                hashes[name] = value_digest(value, function_digest)[:32]
            except Unhashable as exc:
                problems.append(f"input '{name}': {exc.reason}")
                hashes[name] = "unhashable"
            except Exception as exc:  # a value whose own code fails while it is read
                problems.append(f"input '{name}' could not be hashed: {type(exc).__name__}: {exc}")
                hashes[name] = "unhashable"
        custom: str | None = None
        if self.cache.key is not None:
            try:
                made = self.cache.key(context(named, hashes))
            except Exception as exc:
                raise NoKey(
                    f"the cache key function raised {type(exc).__name__}: {exc}",
                    self._parts(hashes, None),
                ) from None
            if made is None:
                raise NoKey("the cache key function returned None", self._parts(hashes, None))
            custom = str(made)
            hashes = {}  # the function's key replaces the inputs
        elif problems:
            raise NoKey("; ".join(problems), self._parts(hashes, None))
        parts = self._parts(hashes, custom)
        return parts.digest(), parts

    def _parts(self, inputs: dict[str, str], custom: str | None) -> KeyParts:
        return KeyParts(self.code, self.packages, inputs, self.cache.version, custom)

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        names = self._names
        out: dict[str, Any] = {}
        for i, value in enumerate(args):
            out[names[i] if i < len(names) else f"arg{i}"] = value
        out.update(kwargs)
        return out


@functools.lru_cache(maxsize=4096)
def _parameter_names(fn: Callable[..., Any]) -> list[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


__all__ = ["KEY_FORMAT", "CacheContext", "KeyParts", "NoKey", "TaskKeys"]
