"""The few questions checks ask of a data frame, answered for pandas and for polars.

Neither library is imported here: a frame is recognised by the module of its type, and each
adapter uses the frame's own methods, so checking a polars frame never imports pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

from phloem.errors import ConditionError

#: dtype families a schema may name, and what each accepts
FAMILIES = ("int", "float", "number", "bool", "str", "datetime", "date", "category", "any")


class Frame:
    """What checks need of a frame (see the pandas and polars subclasses)."""

    def __init__(self, df: Any) -> None:
        self.df = df

    @property
    def columns(self) -> list[str]:
        raise NotImplementedError

    @property
    def rows(self) -> int:
        raise NotImplementedError

    def nulls(self, column: str) -> int:
        raise NotImplementedError

    def duplicates(self, columns: Sequence[str]) -> tuple[int, list[Any]]:
        """Rows whose key repeats an earlier row's (nulls count as values), with examples."""
        raise NotImplementedError

    def outside(
        self, column: str, lo: float | None, hi: float | None, inclusive: bool
    ) -> tuple[int, list[Any]]:
        """Non-null values outside the range, with examples."""
        raise NotImplementedError

    def not_in(self, column: str, allowed: Collection[Any]) -> tuple[int, list[Any]]:
        """Non-null values not among ``allowed``, with examples."""
        raise NotImplementedError

    def family(self, column: str) -> str:
        """The dtype family of a column (one of :data:`FAMILIES` but number/any)."""
        raise NotImplementedError

    def dtype(self, column: str) -> str:
        raise NotImplementedError

    def values(self, column: str) -> list[Any]:
        """The non-null values of a column, as Python objects (for drift statistics)."""
        raise NotImplementedError

    def numeric(self, column: str) -> Any:
        """The non-null values of a numeric column as a float64 NumPy array."""
        raise NotImplementedError

    def failing_rows(self, result: Any) -> tuple[int, list[int]]:
        """How many rows a predicate's result fails (False), and the first row numbers."""
        if isinstance(result, bool):
            return (0 if result else self.rows), []
        import numpy as np

        arr = np.asarray(self._to_numpy(result))
        if arr.shape == () and arr.dtype == np.bool_:  # a NumPy bool scalar (np.bool_)
            return (0 if bool(arr) else self.rows), []
        if arr.shape != (self.rows,):
            raise ConditionError(
                f"a predicate must return a bool or one bool per row ({self.rows}), not "
                f"{type(result).__name__} of shape {arr.shape}"
            )
        bad = ~arr.astype(bool)
        return int(bad.sum()), [int(i) for i in np.flatnonzero(bad)[:5]]

    def _to_numpy(self, result: Any) -> Any:
        to = getattr(result, "to_numpy", None)
        return to() if callable(to) else result


class PandasFrame(Frame):
    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.df.columns]

    @property
    def rows(self) -> int:
        return len(self.df)

    def nulls(self, column: str) -> int:
        return int(self.df[column].isna().sum())

    def duplicates(self, columns: Sequence[str]) -> tuple[int, list[Any]]:
        dup = self.df.duplicated(subset=list(columns), keep="first")
        examples = self.df.loc[dup, list(columns)].head(5)
        shown = examples[columns[0]].tolist() if len(columns) == 1 else [
            tuple(r) for r in examples.itertuples(index=False)
        ]
        return int(dup.sum()), _plain(shown)

    def outside(
        self, column: str, lo: float | None, hi: float | None, inclusive: bool
    ) -> tuple[int, list[Any]]:
        s = self.df[column].dropna()
        bad = s.isna()  # all False: nulls were dropped
        if lo is not None:
            bad |= (s < lo) if inclusive else (s <= lo)
        if hi is not None:
            bad |= (s > hi) if inclusive else (s >= hi)
        return int(bad.sum()), _plain(s[bad].head(5).tolist())

    def not_in(self, column: str, allowed: Collection[Any]) -> tuple[int, list[Any]]:
        s = self.df[column].dropna()
        bad = ~s.isin(list(allowed))
        return int(bad.sum()), _plain(s[bad].head(5).tolist())

    def dtype(self, column: str) -> str:
        return str(self.df[column].dtype)

    def family(self, column: str) -> str:
        import pandas as pd

        t = self.df[column].dtype
        api = pd.api.types
        if api.is_bool_dtype(t):
            return "bool"
        if api.is_integer_dtype(t):
            return "int"
        if api.is_float_dtype(t):
            return "float"
        if api.is_datetime64_any_dtype(t):
            return "datetime"
        if isinstance(t, pd.CategoricalDtype):
            return "category"
        if api.is_string_dtype(t):
            return "str"
        return "object"

    def values(self, column: str) -> list[Any]:
        return list(_plain(self.df[column].dropna().tolist()))

    def numeric(self, column: str) -> Any:
        return self.df[column].dropna().to_numpy(dtype="float64")


class PolarsFrame(Frame):
    @property
    def columns(self) -> list[str]:
        return list(self.df.columns)

    @property
    def rows(self) -> int:
        return int(self.df.height)

    def nulls(self, column: str) -> int:
        s = self.df.get_column(column)
        n = s.null_count()
        if s.dtype.is_float():
            n += int(s.is_nan().sum() or 0)
        return int(n)

    def duplicates(self, columns: Sequence[str]) -> tuple[int, list[Any]]:
        key = self.df.select(list(columns))
        series = key.get_column(columns[0]) if len(columns) == 1 else key.to_struct("key")
        dup = ~series.is_first_distinct()
        bad = key.filter(dup).head(5)
        shown = bad.get_column(columns[0]).to_list() if len(columns) == 1 else bad.rows()
        return int(dup.sum()), _plain(shown)

    def outside(
        self, column: str, lo: float | None, hi: float | None, inclusive: bool
    ) -> tuple[int, list[Any]]:
        s = self.df.get_column(column).drop_nulls()
        if s.dtype.is_float():
            s = s.drop_nans()
        bad = s.is_null()  # all False: nulls were dropped
        if lo is not None:
            bad = bad | ((s < lo) if inclusive else (s <= lo))
        if hi is not None:
            bad = bad | ((s > hi) if inclusive else (s >= hi))
        return int(bad.sum()), _plain(s.filter(bad).head(5).to_list())

    def not_in(self, column: str, allowed: Collection[Any]) -> tuple[int, list[Any]]:
        s = self.df.get_column(column).drop_nulls()
        bad = ~s.is_in(list(allowed))
        return int(bad.sum()), _plain(s.filter(bad).head(5).to_list())

    def dtype(self, column: str) -> str:
        return str(self.df.schema[column])

    def family(self, column: str) -> str:
        import polars as pl

        t = self.df.schema[column]
        if t == pl.Boolean:
            return "bool"
        if t.is_integer():
            return "int"
        if t.is_float():
            return "float"
        if t == pl.Datetime or isinstance(t, pl.Datetime):
            return "datetime"
        if t == pl.Date:
            return "date"
        if t in (pl.Categorical, pl.Enum) or isinstance(t, (pl.Categorical, pl.Enum)):
            return "category"
        if t in (pl.Utf8, pl.String):
            return "str"
        return "object"

    def values(self, column: str) -> list[Any]:
        return list(_plain(self.df.get_column(column).drop_nulls().to_list()))

    def numeric(self, column: str) -> Any:
        s = self.df.get_column(column).drop_nulls().cast(float)
        return s.drop_nans().to_numpy()


def frame(df: Any, *, what: str) -> Frame:
    """The adapter for ``df``; anything but a pandas or polars DataFrame is refused."""
    module = type(df).__module__.split(".")[0]
    name = type(df).__name__
    if module == "pandas" and name == "DataFrame":
        return PandasFrame(df)
    if module == "polars" and name == "DataFrame":
        return PolarsFrame(df)
    if module == "polars" and name == "LazyFrame":
        raise ConditionError(f"{what} takes a DataFrame; call .collect() on the LazyFrame first")
    raise ConditionError(
        f"{what} takes a pandas or polars DataFrame, not {type(df).__module__}.{name}"
    )


def _plain(values: Any) -> Any:
    """Values as JSON-able Python objects (NaN as None, times as ISO text)."""
    if isinstance(values, list):
        return [_plain(v) for v in values]
    if isinstance(values, tuple):
        return [_plain(v) for v in values]
    item = getattr(values, "item", None)
    if callable(item) and type(values).__module__ == "numpy":
        values = item()
    if isinstance(values, float) and math.isnan(values):
        return None
    if hasattr(values, "isoformat"):
        return values.isoformat()
    if values is None or isinstance(values, (bool, int, float, str)):
        return values
    return str(values)


def predicate_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "custom" if name == "<lambda>" else name


__all__ = ["FAMILIES", "Frame", "PandasFrame", "PolarsFrame", "frame", "predicate_name"]
