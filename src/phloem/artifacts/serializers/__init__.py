"""Serializers in priority order, and how a value picks one.

The first serializer whose :meth:`~Serializer.handles` accepts a value is used; if its
``dumps`` fails (a frame pyarrow cannot convert, an int too long for JSON, joblib not
installed), the next one that handles the value is tried, ending with pickle. The serializer's
``name`` is stored in the :class:`~phloem.artifacts.ArtifactRef` and picks the loader back.
"""

from __future__ import annotations

import logging

from phloem.errors import ArtifactError

from .base import Serializer, type_name
from .joblib import JOBLIB
from .json import JSON
from .models import LIGHTGBM, PARTS, RAW, SKOPS, XGBOOST
from .numpy import NUMPY
from .parquet import PANDAS, POLARS
from .pickle import PICKLE

__all__ = ["EXPLICIT", "REGISTRY", "Serializer", "by_name", "choose", "dump", "type_name"]

REGISTRY: tuple[Serializer, ...] = (JSON, PANDAS, POLARS, NUMPY, JOBLIB, PICKLE)

#: formats chosen explicitly (the model registry), never for a task's return value
EXPLICIT: tuple[Serializer, ...] = (XGBOOST, LIGHTGBM, SKOPS, PARTS, RAW)

_BY_NAME: dict[str, Serializer] = {s.name: s for s in (*REGISTRY, *EXPLICIT)}
_log = logging.getLogger("phloem.artifacts")


def choose(value: object) -> Serializer:
    """The first serializer in :data:`REGISTRY` meant for ``value`` (pickle at the latest)."""
    for serializer in REGISTRY:
        if serializer.handles(value):
            return serializer
    return PICKLE


def by_name(name: str) -> Serializer:
    """The serializer stored under ``name`` in an artifact reference."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ArtifactError(
            f"unknown serializer {name!r} (known: {', '.join(_BY_NAME)}); the artifact was "
            "probably written by a newer phloem"
        ) from None


def dump(value: object) -> tuple[Serializer, bytes]:
    """Serialize ``value`` with the first serializer that handles it and succeeds.

    Raises :class:`~phloem.errors.SerializationError` when not even pickle can store it.
    """
    for serializer in REGISTRY:
        if serializer is PICKLE:
            break
        if not serializer.handles(value):
            continue
        try:
            return serializer, serializer.dumps(value)
        except Exception as exc:
            _log.warning(
                "%s could not store a %s (%s: %s); falling back to the next serializer",
                serializer.name,
                type_name(value),
                type(exc).__name__,
                exc,
            )
    return PICKLE, PICKLE.dumps(value)
