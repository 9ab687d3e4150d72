"""Task caching: keys made of a task's code, libraries and inputs; lookups when instances
become ready; entries written with the success that made them; explanations of misses."""

from phloem.caching.fingerprint import CodeParts, Versions, code_parts
from phloem.caching.keys import CacheContext, KeyParts, NoKey, TaskKeys
from phloem.caching.lookup import CacheMode, RunCache

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
]
