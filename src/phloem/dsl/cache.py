"""``phloem.Cache``: how a task reuses the output of an earlier run with the same code and
inputs. ``@task(cache=True)`` is ``Cache()``; the key's parts are built by ``phloem.caching``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from phloem.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Cache:
    """Cache a task's output by its code and inputs.

    - ``expire``: an entry older than this (seconds or a timedelta) is not reused.
    - ``version``: a salt; change it to invalidate every earlier entry of the task.
    - ``key``: a function of a :class:`phloem.caching.CacheContext` returning text that
      replaces the inputs' part of the key (the code, libraries and ``version`` still count);
      returning None runs the task without caching.
    """

    expire: float | None = None
    version: str = ""
    key: Callable[[Any], str | None] | None = None

    def __init__(
        self,
        expire: float | timedelta | None = None,
        version: str | int = "",
        key: Callable[[Any], str | None] | None = None,
    ) -> None:
        if isinstance(expire, timedelta):
            expire = expire.total_seconds()
        if expire is not None and (
            isinstance(expire, bool) or not isinstance(expire, (int, float)) or expire <= 0
        ):
            raise DefinitionError(
                f"phloem.Cache: expire must be a positive number of seconds or a timedelta, "
                f"got {expire!r}"
            )
        if not isinstance(version, (str, int)) or isinstance(version, bool):
            raise DefinitionError(f"phloem.Cache: version must be text, got {version!r}")
        if key is not None and not callable(key):
            raise DefinitionError(f"phloem.Cache: key must be a function, got {key!r}")
        object.__setattr__(self, "expire", None if expire is None else float(expire))
        object.__setattr__(self, "version", str(version))
        object.__setattr__(self, "key", key)


def cache_option(value: Any, option: str, where: str) -> Cache | None:
    """``True`` -> ``Cache()``, ``False``/None -> no caching, a ``Cache`` as it is."""
    if value is None or value is False:
        return None
    if value is True:
        return Cache()
    if isinstance(value, Cache):
        return value
    raise DefinitionError(
        f"{where}: option '{option}' must be True, False or phloem.Cache(expire=..., "
        f"version=..., key=...), got {value!r}"
    )


__all__ = ["Cache", "cache_option"]
