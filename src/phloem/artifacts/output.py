"""``phloem.Output``: a task's value with metadata kept beside it, and the metadata phloem
finds by itself (a data frame's row count and schema).

Metadata is small JSON kept in the store with the output (and its artifact, if it has one),
so ``phloem output``, lineage and the API show it without reading the value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from phloem.errors import SerializationError

#: encoded metadata larger than this is refused: it belongs in an artifact of its own
MAX_METADATA_BYTES = 65536
#: a frame with more columns records its column count only, not every column's type
MAX_SCHEMA_COLUMNS = 200


class Output:
    """A task's return value (or one value of the dict, tuple or dataclass it returns) with
    ``metadata``: numbers, text, lists and dicts that describe it.

    ``return phloem.Output(df, metadata={"source": "s3 export", "null_ids": 0})``; data frames
    get ``rows`` and ``schema`` without asking. Downstream tasks receive the value itself.
    """

    __slots__ = ("metadata", "value")

    def __init__(self, value: Any, metadata: Mapping[str, Any] | None = None) -> None:
        if isinstance(value, Output):
            raise SerializationError("Output(...) wraps a value, not another Output")
        self.value = value
        self.metadata = check_metadata(metadata or {})

    def __repr__(self) -> str:
        return f"Output({type(self.value).__name__}, metadata={self.metadata!r})"


def check_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` as plain JSON (NumPy numbers become Python numbers); a clear error naming
    the offending key otherwise."""
    if not isinstance(metadata, Mapping):
        raise SerializationError(
            f"Output metadata must be a dict of names to values, not {type(metadata).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise SerializationError(
                f"Output metadata keys must be strings; got {key!r} ({type(key).__name__})"
            )
        out[key] = _plain(value, key)
    size = len(json.dumps(out, sort_keys=True))
    if size > MAX_METADATA_BYTES:
        raise SerializationError(
            f"Output metadata is {size} bytes of JSON, more than {MAX_METADATA_BYTES}; keep "
            "metadata to a few numbers and names, and return large data as a value"
        )
    return out


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    if depth > 20:
        raise SerializationError(f"Output metadata {where!r} is nested too deeply")
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        if not math.isfinite(value):
            return str(value)  # NaN and infinities are not JSON; keep them readable
        return value
    t = type(value)
    if t.__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _plain(value.item(), where, depth + 1)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if hasattr(value, "isoformat"):  # dates and times
        return value.isoformat()
    raise SerializationError(
        f"Output metadata {where!r} is a {t.__module__}.{t.__qualname__}, which is not JSON; "
        "give numbers, strings, booleans, lists or dicts"
    )


def automatic(value: object) -> dict[str, Any] | None:
    """What phloem records about ``value`` unasked: a pandas or polars frame's row count,
    column count and schema (column -> dtype). None for anything else."""
    tp = type(value)
    if tp.__name__ != "DataFrame":
        return None
    package = tp.__module__.partition(".")[0]
    if package == "pandas":
        rows, cols = value.shape  # type: ignore[attr-defined]
        dtypes = value.dtypes  # type: ignore[attr-defined]
        schema = {str(c): str(t) for c, t in zip(dtypes.index, dtypes, strict=True)}
    elif package == "polars":
        rows, cols = value.height, value.width  # type: ignore[attr-defined]
        schema = {str(c): str(t) for c, t in value.schema.items()}  # type: ignore[attr-defined]
    else:
        return None
    meta: dict[str, Any] = {"rows": int(rows), "columns": int(cols)}
    if len(schema) <= MAX_SCHEMA_COLUMNS:
        meta["schema"] = schema
    return meta


__all__ = ["MAX_METADATA_BYTES", "Output", "automatic", "check_metadata"]
