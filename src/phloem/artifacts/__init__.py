"""Task outputs as values: inline JSON or content-addressed artifacts.

``encode_output`` decides how a return value is kept (:class:`Inline` for small plain data,
an :class:`ArtifactRef` into an :class:`ArtifactStore` otherwise) and ``decode_output`` brings
it back. Importing this package is cheap: pandas, NumPy, pyarrow, joblib, polars and fsspec are
imported only when a value of theirs is stored or loaded.
"""

from __future__ import annotations

from .codec import decode_output, encode_output, from_stored_json, to_stored_json
from .ref import ArtifactRef, Inline
from .store import ArtifactStore

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "Inline",
    "decode_output",
    "encode_output",
    "from_stored_json",
    "to_stored_json",
]
