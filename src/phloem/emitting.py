"""``phloem.emit``: a task announces, when it chooses to, that an asset changed.

A task with ``outputs=[Asset(...)]`` updates its assets every time it succeeds; ``emit`` is
for the times a task decides, as a monitoring task that finds drift above its threshold::

    if report.drifted:
        phloem.emit(Asset("drift:fraud"), metadata={"psi": report.max_psi})

The event is an attempt effect (``phloem.effects``): it is committed with the attempt's
success, in the same transaction, so a failed or retried attempt never emits twice and a
pipeline scheduled on ``[Asset("drift:fraud")]`` starts exactly once per event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from phloem.dsl.assets import Asset
from phloem.effects import AssetEmitted, record
from phloem.errors import PhloemError

#: the metadata of one event, as JSON text, at most this long
MAX_METADATA = 65_536


def emit(asset: Asset | str, metadata: Mapping[str, Any] | None = None) -> None:
    """Record an event of ``asset`` (with JSON-able ``metadata``: numbers, text, lists,
    dicts; NumPy numbers too) when this attempt succeeds."""
    if isinstance(asset, Asset):
        name = asset.name
    elif isinstance(asset, str) and asset.strip():
        name = asset
    else:
        raise PhloemError(f"phloem.emit() takes an Asset('name'), not {asset!r}")
    if len(name) > 500:
        raise PhloemError(f"asset name {name[:40]!r}... is longer than 500 characters")
    text = None if metadata is None else _metadata_json(name, metadata)
    record(AssetEmitted(name, text), what="phloem.emit()")


def _metadata_json(asset: str, metadata: Mapping[str, Any]) -> str:
    if not isinstance(metadata, Mapping):
        raise PhloemError(
            f"phloem.emit({asset!r}): metadata must be a dict, not {type(metadata).__name__}"
        )
    try:
        text = json.dumps(_plain(metadata), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise PhloemError(
            f"phloem.emit({asset!r}): metadata is not JSON ({exc}); give numbers, text, lists "
            "and dicts (NaN and infinities are refused)"
        ) from None
    if len(text) > MAX_METADATA:
        raise PhloemError(
            f"phloem.emit({asset!r}): metadata is {len(text)} characters of JSON, more than "
            f"{MAX_METADATA}; store large results as a task output and put its summary here"
        )
    return text


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers; keys as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("NaN is not JSON")
    return value


__all__ = ["MAX_METADATA", "emit"]
