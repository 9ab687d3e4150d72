"""What an artifact holds, without handing it to the caller: for ``phloem output`` and the API.

A data frame is described by its shape, schema and first rows read from its Parquet bytes
(pyarrow only, no pandas or polars import); an array by its shape and dtype from the ``.npy``
header; anything else by its type, size and digest.
"""

from __future__ import annotations

import json
from typing import Any

from .ref import ArtifactRef, Inline
from .store import ArtifactStore
from .structured import Node, Structured, path_text

#: rows of a data frame shown by default
HEAD_ROWS = 5


def describe(store: ArtifactStore, ref: ArtifactRef, rows: int = HEAD_ROWS) -> dict[str, Any]:
    """A JSON-able description of the artifact behind ``ref``; its bytes are checked."""
    present = store.exists(ref)
    out: dict[str, Any] = {
        "artifact": ref.type_name,
        "serializer": ref.serializer,
        "size": ref.size,
        "digest": f"sha256:{ref.digest}",
        "location": store.location(ref),
        "present": present,
    }
    if not present:
        return out
    if ref.serializer.startswith("parquet"):
        out.update(_frame(store.read_bytes(ref), rows))
    elif ref.serializer == "numpy":
        out.update(_array(store.read_bytes(ref)))
    return out


def describe_output(
    store: ArtifactStore,
    node: Node,
    metadata: dict[str, dict[str, Any]] | None = None,
    rows: int = HEAD_ROWS,
    path: tuple[str | int, ...] = (),
) -> dict[str, Any]:
    """A JSON-able description of a stored output: an inline value as ``{"value": ...}``, an
    artifact as :func:`describe` gives it, a structured output as its ``structure`` and the
    description of each of its ``values`` (keyed as written: ``['model']``, ``[0]``). Each
    part carries the ``metadata`` kept with it (``metadata`` maps JSON paths to metadata)."""
    out: dict[str, Any]
    if isinstance(node, Inline):
        out = {"value": node.value}
    elif isinstance(node, ArtifactRef):
        out = describe(store, node, rows)
    else:
        assert isinstance(node, Structured)
        out = {"structure": node.kind}
        if node.cls:
            out["class"] = node.cls
        out["values"] = {
            path_text((key,)): describe_output(store, child, metadata, rows, (*path, key))
            for key, child in zip(node.keys, node.items, strict=True)
        }
    meta = (metadata or {}).get(json.dumps(list(path)))
    if meta:
        out["metadata"] = meta
    return out


def _frame(data: bytes, rows: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(pa.BufferReader(data))
    schema = pf.schema_arrow
    hidden = _pandas_index_columns(schema)
    names = [n for n in schema.names if n not in hidden]
    head = pf.read_row_group(0, columns=names).slice(0, rows) if pf.num_row_groups else None
    return {
        "shape": [pf.metadata.num_rows, len(names)],
        "schema": {n: str(schema.field(n).type) for n in names},
        "head": _json_safe(head.to_pylist() if head is not None else []),
    }


def _pandas_index_columns(schema: Any) -> set[str]:
    """pandas stores a named index as columns ``__index_level_0__`` etc.: not data."""
    meta = (schema.metadata or {}).get(b"pandas")
    if not meta:
        return set()
    cols = json.loads(meta).get("index_columns", [])
    return {c for c in cols if isinstance(c, str)}


def _array(data: bytes) -> dict[str, Any]:
    import io

    import numpy as np

    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    reader = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = reader(buf)
    return {"shape": list(shape), "dtype": str(dtype)}


def _json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    safe: list[dict[str, Any]] = json.loads(json.dumps(rows, default=str))
    return safe


__all__ = ["HEAD_ROWS", "describe", "describe_output"]
