"""Parquet (via pyarrow) for pandas and polars data frames.

Each library gets its own serializer name so a frame comes back as the library it left:
``parquet-pandas`` keeps the index and dtypes through pyarrow's pandas metadata,
``parquet-polars`` goes through Arrow without pandas at all. Only exact ``DataFrame`` types are
claimed: a subclass (say a GeoDataFrame) would come back as a plain frame, so pickle keeps it.
"""

from __future__ import annotations

import io

from .base import top_package


def _write(table: object) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _read(data: bytes) -> object:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


class PandasParquet:
    """pandas.DataFrame ↔ Parquet, index included (a RangeIndex is kept as metadata only)."""

    name = "parquet-pandas"
    ext = "parquet"

    def handles(self, value: object) -> bool:
        return type(value).__name__ == "DataFrame" and top_package(value) == "pandas"

    def dumps(self, value: object) -> bytes:
        import pyarrow as pa

        return _write(pa.Table.from_pandas(value))

    def loads(self, data: bytes) -> object:
        return _read(data).to_pandas()  # type: ignore[attr-defined]


class PolarsParquet:
    """polars.DataFrame ↔ Parquet through Arrow."""

    name = "parquet-polars"
    ext = "parquet"

    def handles(self, value: object) -> bool:
        return type(value).__name__ == "DataFrame" and top_package(value) == "polars"

    def dumps(self, value: object) -> bytes:
        return _write(value.to_arrow())  # type: ignore[attr-defined]

    def loads(self, data: bytes) -> object:
        import polars as pl

        return pl.from_arrow(_read(data))


PANDAS = PandasParquet()
POLARS = PolarsParquet()
