"""NumPy arrays as ``.npy`` files, never with pickle inside.

Arrays of objects (or structured dtypes holding objects) are left to the pickle serializer:
``.npy`` could only store them by pickling, and ``allow_pickle=False`` keeps loading safe.
Only exact ``ndarray`` is claimed; subclasses (masked arrays, matrices) would lose their type.
"""

from __future__ import annotations

import io


class NumpySerializer:
    """numpy.ndarray ↔ .npy (dtype, shape and memory order preserved)."""

    name = "numpy"
    ext = "npy"

    def handles(self, value: object) -> bool:
        tp = type(value)
        if tp.__name__ != "ndarray" or tp.__module__ != "numpy":
            return False
        return not value.dtype.hasobject  # type: ignore[attr-defined]

    def dumps(self, value: object) -> bytes:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)  # type: ignore[arg-type]
        return buf.getvalue()

    def loads(self, data: bytes) -> object:
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)


NUMPY = NumpySerializer()
