"""Task caching: keys made of a task's code, libraries and inputs; lookups when instances
become ready; entries written with the success that made them; explanations of misses.

Only ``CacheMode`` is imported with the package: the rest (code fingerprints, keys, lookups)
loads when first asked for, as a run with no cached task never needs it."""

from typing import TYPE_CHECKING, Any

from phloem.caching.mode import CacheMode, uses_cache

if TYPE_CHECKING:
    from phloem.caching.fingerprint import CodeParts, Versions, code_parts
    from phloem.caching.keys import CacheContext, KeyParts, NoKey, TaskKeys
    from phloem.caching.lookup import RunCache

#: name -> the module that defines it, for the names imported on first use
_LAZY = {
    "CodeParts": "fingerprint",
    "Versions": "fingerprint",
    "code_parts": "fingerprint",
    "CacheContext": "keys",
    "KeyParts": "keys",
    "NoKey": "keys",
    "TaskKeys": "keys",
    "RunCache": "lookup",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CacheContext",
    "CacheMode",
    "CodeParts",
    "KeyParts",
    "NoKey",
    "RunCache",
    "TaskKeys",
    "Versions",
    "code_parts",
    "uses_cache",
]
