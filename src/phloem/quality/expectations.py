"""``phloem.expect(df)``: expectations on a pandas or polars frame, checked in one go.

::

    report = (
        phloem.expect(orders, name="orders")
        .row_count(min=1)
        .schema({"id": "int", "amount": "float", "country": "str"})
        .not_null("id", "amount")
        .unique("id")
        .between("amount", 0, 10_000)
        .isin("country", {"FR", "DE", "ES"})
        .max_null_fraction("email", 0.1)
        .satisfies(lambda df: df["amount"] < df["limit"], name="amount under limit")
        .check(on_fail="fail")
    )

``check`` runs every expectation (none stops the others), keeps a report artifact (JSON with
a readable table) used by the task for lineage, writes the table to the task's log, logs the
frame's row count and each column's null fraction as run metrics (``rows``,
``null_fraction.<column>``, prefixed by ``name.`` when a name is given), then fails the task
with :class:`~phloem.errors.ValidationFailed` (not retried) or, with ``on_fail="warn"``, only
warns. A column that is missing fails the expectations about it; an expectation written
wrongly (a range with min above max, an unknown type name) is a
:class:`~phloem.errors.ConditionError` when it is written.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from phloem.artifacts.ref import ArtifactRef
from phloem.context import current
from phloem.errors import ConditionError, ValidationFailed
from phloem.quality import reports
from phloem.quality.frames import FAMILIES, Frame, frame, predicate_name


@dataclass(frozen=True, slots=True)
class Outcome:
    """One expectation, checked."""

    expectation: str
    column: str | None
    passed: bool
    failing: int  # rows (or columns, for a schema) that broke it
    detail: str
    examples: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "passed": self.passed,
            "failing": self.failing,
            "detail": self.detail,
            "examples": list(self.examples),
        }


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every expectation's outcome, with the frame's shape; truthy when all passed."""

    name: str | None
    rows: int
    columns: tuple[str, ...]
    null_fractions: Mapping[str, float]
    outcomes: tuple[Outcome, ...]
    artifact: ArtifactRef | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.passed)

    def __bool__(self) -> bool:
        return self.passed

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def summary(self) -> str:
        what = f"validation of '{self.name}'" if self.name else "validation"
        n, bad = len(self.outcomes), self.failed
        shape = f"{self.rows} rows, {len(self.columns)} columns"
        if not bad:
            return f"{what} passed: {n} of {n} expectations ({shape})"
        listed = "; ".join(f"{o.expectation}: {o.detail}" for o in bad)
        return f"{what} failed: {len(bad)} of {n} expectations broken ({shape}): {listed}"

    def table(self) -> str:
        rows = [
            (
                "ok" if o.passed else "FAIL",
                o.expectation,
                o.column,
                o.failing,
                o.detail + (f" (e.g. {', '.join(map(repr, o.examples))})" if o.examples else ""),
            )
            for o in self.outcomes
        ]
        body = reports.table(("", "EXPECTATION", "COLUMN", "FAILING", "DETAIL"), rows)
        return f"{self.summary()}\n{body}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "validation",
            "name": self.name,
            "passed": self.passed,
            "rows": self.rows,
            "columns": list(self.columns),
            "null_fractions": {
                k: reports.finite_or_none(v) for k, v in self.null_fractions.items()
            },
            "expectations": [o.to_dict() for o in self.outcomes],
            "table": self.table(),
        }

    def __str__(self) -> str:
        return self.table()


#: an expectation, as ``check`` runs it
Rule = Callable[[Frame], Outcome]


@dataclass
class Expectations:
    """The chainable builder ``phloem.expect`` returns (see the module docstring)."""

    df: Any
    name: str | None = None
    _rules: list[Rule] = field(default_factory=list)

    # -- expectations ---------------------------------------------------------------------

    def not_null(self, *columns: str) -> Expectations:
        """No nulls (None, NaN, NaT) in these columns."""
        for col in _columns(columns, "not_null"):
            self._rules.append(_not_null(col))
        return self

    def unique(self, *columns: str, together: bool = False) -> Expectations:
        """No repeated values in each column (or, ``together=True``, no repeated
        combination of them, as a composite key)."""
        cols = _columns(columns, "unique")
        groups = [cols] if together else [[c] for c in cols]
        for group in groups:
            self._rules.append(_unique(group))
        return self

    def between(
        self,
        column: str,
        min: float | None = None,
        max: float | None = None,
        *,
        inclusive: bool = True,
    ) -> Expectations:
        """Every non-null value within ``[min, max]`` (open ends with ``None``;
        ``inclusive=False`` for ``(min, max)``)."""
        _columns([column], "between")
        lo = _num(min, "between", "min")
        hi = _num(max, "between", "max")
        if lo is None and hi is None:
            raise ConditionError(f"between('{column}'): give min, max or both")
        if lo is not None and hi is not None and lo > hi:
            raise ConditionError(f"between('{column}'): min {lo:g} is above max {hi:g}")
        self._rules.append(_between(column, lo, hi, inclusive))
        return self

    def isin(self, column: str, values: Collection[Any]) -> Expectations:
        """Every non-null value among ``values``."""
        _columns([column], "isin")
        if isinstance(values, (str, bytes)) or not isinstance(values, Collection) or not values:
            raise ConditionError(
                f"isin('{column}', ...): give the allowed values as a non-empty list or set, "
                f"not {values!r}"
            )
        allowed = list(values)
        if isinstance(values, (set, frozenset)):  # a stable order for the report
            try:
                allowed = sorted(allowed)
            except TypeError:
                allowed.sort(key=repr)
        self._rules.append(_isin(column, allowed))
        return self

    def row_count(self, min: int | None = None, max: int | None = None) -> Expectations:
        """Between ``min`` and ``max`` rows (either end open)."""
        for what, v in (("min", min), ("max", max)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConditionError(f"row_count({what}=...) must be an int >= 0, not {v!r}")
        if min is None and max is None:
            raise ConditionError("row_count(): give min, max or both")
        if min is not None and max is not None and min > max:
            raise ConditionError(f"row_count(): min {min} is above max {max}")
        self._rules.append(_row_count(min, max))
        return self

    def schema(self, columns: Mapping[str, str], *, strict: bool = False) -> Expectations:
        """These columns exist with these types: ``int``, ``float``, ``number``, ``bool``,
        ``str``, ``datetime``, ``date``, ``category`` or ``any``. ``strict=True``: and no
        other columns."""
        if not isinstance(columns, Mapping) or not columns:
            raise ConditionError("schema(): give {column: type}, as {'id': 'int'}")
        for col, fam in columns.items():
            if fam not in FAMILIES:
                raise ConditionError(
                    f"schema(): column '{col}' has unknown type {fam!r}; use one of "
                    f"{', '.join(FAMILIES)}"
                )
        self._rules.append(_schema(dict(columns), strict))
        return self

    def max_null_fraction(self, column: str, fraction: float) -> Expectations:
        """At most ``fraction`` (0 to 1) of the column's values are null."""
        _columns([column], "max_null_fraction")
        f = _num(fraction, "max_null_fraction", "fraction")
        if f is None or not 0 <= f <= 1:
            raise ConditionError(
                f"max_null_fraction('{column}', {fraction!r}): the fraction must be between 0 "
                "and 1"
            )
        self._rules.append(_max_null_fraction(column, f))
        return self

    def satisfies(
        self,
        predicate: Callable[[Any], Any],
        *,
        name: str | None = None,
        column: str | None = None,
    ) -> Expectations:
        """A predicate of your own: called with the frame (or with ``column``'s series), it
        returns a bool or one bool per row; each False row fails it."""
        if not callable(predicate):
            raise ConditionError(f"satisfies() takes a function, not {predicate!r}")
        label = name or predicate_name(predicate)
        self._rules.append(_custom(predicate, label, column))
        return self

    # -- checking ---------------------------------------------------------------------------

    def check(self, on_fail: str = "fail") -> ValidationReport:
        """Check every expectation; keep and log the report; fail or warn (see the module
        docstring). Returns the report."""
        if on_fail not in ("fail", "warn"):
            raise ConditionError(f"check(on_fail={on_fail!r}): use 'fail' or 'warn'")
        f = frame(self.df, what="phloem.expect()")
        outcomes = tuple(_run(rule, f) for rule in self._rules)
        nulls = {c: (f.nulls(c) / f.rows if f.rows else 0.0) for c in f.columns}
        report = ValidationReport(self.name, f.rows, tuple(f.columns), nulls, outcomes)
        prefix = f"{self.name}." if self.name else ""
        reports.metrics(
            {
                f"{prefix}rows": f.rows,
                **{f"{prefix}null_fraction.{c}": v for c, v in nulls.items()},
                f"{prefix}validation.failed": len(report.failed),
            }
        )
        ref = reports.save(report.to_dict(), reports.VALIDATION)
        if ref is not None:
            report = ValidationReport(
                report.name, report.rows, report.columns, nulls, outcomes, ref
            )
        ctx = current()
        if ctx is not None:
            where = f" (report: artifact {ref.digest[:12]})" if ref is not None else ""
            (ctx.log.info if report.passed else ctx.log.warning)("%s%s", report.table(), where)
        if not report.passed and on_fail == "fail":
            raise ValidationFailed(report.summary(), report)
        return report


def expect(df: Any, *, name: str | None = None) -> Expectations:
    """Expectations on ``df`` (pandas or polars), checked by ``.check()``; ``name`` labels the
    report and prefixes its metrics."""
    frame(df, what="phloem.expect()")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConditionError(f"phloem.expect(name=...) must be a non-empty string, not {name!r}")
    return Expectations(df, name)


# -- the rules ------------------------------------------------------------------------------


def _columns(columns: Any, what: str) -> list[str]:
    cols = list(columns)
    if not cols or not all(isinstance(c, str) and c for c in cols):
        raise ConditionError(f"{what}() takes column names, not {columns!r}")
    return cols


def _num(value: Any, what: str, arg: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConditionError(f"{what}({arg}=...) must be a number, not {value!r}")
    return float(value)


def _run(rule: Rule, f: Frame) -> Outcome:
    return rule(f)


def _missing(f: Frame, expectation: str, columns: list[str]) -> Outcome | None:
    gone = [c for c in columns if c not in f.columns]
    if not gone:
        return None
    listed = ", ".join(f.columns) or "none"
    return Outcome(
        expectation,
        columns[0] if len(columns) == 1 else ",".join(columns),
        False,
        f.rows,
        f"column {', '.join(repr(c) for c in gone)} is missing (columns: {listed})",
    )


def _not_null(col: str) -> Rule:
    def rule(f: Frame) -> Outcome:
        if (gone := _missing(f, "not_null", [col])) is not None:
            return gone
        n = f.nulls(col)
        return Outcome("not_null", col, n == 0, n, f"{n} null values" if n else "no nulls")

    return rule


def _unique(cols: list[str]) -> Rule:
    label = "unique" if len(cols) == 1 else f"unique({', '.join(cols)})"

    def rule(f: Frame) -> Outcome:
        if (gone := _missing(f, label, cols)) is not None:
            return gone
        n, examples = f.duplicates(cols)
        detail = f"{n} repeated values" if n else "all distinct"
        return Outcome(label, ",".join(cols), n == 0, n, detail, tuple(examples))

    return rule


def _between(col: str, lo: float | None, hi: float | None, inclusive: bool) -> Rule:
    left, right = ("[", "]") if inclusive else ("(", ")")
    low = "-inf" if lo is None else f"{lo:g}"
    high = "inf" if hi is None else f"{hi:g}"
    span = f"{left}{low}, {high}{right}"
    label = f"between {span}"

    def rule(f: Frame) -> Outcome:
        if (gone := _missing(f, label, [col])) is not None:
            return gone
        if f.family(col) not in ("int", "float"):
            return Outcome(label, col, False, f.rows, f"is {f.dtype(col)}, not numbers")
        n, examples = f.outside(col, lo, hi, inclusive)
        detail = f"{n} values outside {span}" if n else f"all within {span}"
        return Outcome(label, col, n == 0, n, detail, tuple(examples))

    return rule


def _isin(col: str, allowed: list[Any]) -> Rule:
    shown = ", ".join(map(repr, allowed[:5])) + (", ..." if len(allowed) > 5 else "")
    label = f"isin {{{shown}}}"

    def rule(f: Frame) -> Outcome:
        if (gone := _missing(f, label, [col])) is not None:
            return gone
        n, examples = f.not_in(col, allowed)
        detail = f"{n} values not allowed" if n else "all allowed"
        return Outcome(label, col, n == 0, n, detail, tuple(examples))

    return rule


def _row_count(lo: int | None, hi: int | None) -> Rule:
    span = f"[{0 if lo is None else lo}, {'inf' if hi is None else hi}]"

    def rule(f: Frame) -> Outcome:
        ok = (lo is None or f.rows >= lo) and (hi is None or f.rows <= hi)
        detail = f"{f.rows} rows, expected {span}"
        return Outcome(f"row_count {span}", None, ok, 0 if ok else f.rows, detail)

    return rule


def _fits(family: str, want: str) -> bool:
    if want == "any":
        return True
    if want == "number":
        return family in ("int", "float")
    if want == "str":
        return family in ("str", "object")  # pandas keeps text in object columns
    return family == want


def _schema(want: dict[str, str], strict: bool) -> Rule:
    def rule(f: Frame) -> Outcome:
        problems = []
        for col, fam in want.items():
            if col not in f.columns:
                problems.append(f"'{col}' is missing")
            elif not _fits(f.family(col), fam):
                problems.append(f"'{col}' is {f.dtype(col)}, not {fam}")
        if strict:
            problems += [f"'{c}' is not expected" for c in f.columns if c not in want]
        detail = "; ".join(problems) if problems else f"{len(want)} columns as expected"
        return Outcome("schema", None, not problems, len(problems), detail)

    return rule


def _max_null_fraction(col: str, limit: float) -> Rule:
    label = f"max_null_fraction {limit:g}"

    def rule(f: Frame) -> Outcome:
        if (gone := _missing(f, label, [col])) is not None:
            return gone
        n = f.nulls(col)
        frac = n / f.rows if f.rows else 0.0
        detail = f"{frac:.2%} null ({n} of {f.rows})"
        return Outcome(label, col, frac <= limit, n if frac > limit else 0, detail)

    return rule


def _custom(predicate: Callable[[Any], Any], label: str, column: str | None) -> Rule:
    def rule(f: Frame) -> Outcome:
        if column is not None and (gone := _missing(f, label, [column])) is not None:
            return gone
        arg = f.df if column is None else f.df[column]
        try:
            result = predicate(arg)
        except Exception as exc:
            return Outcome(label, column, False, f.rows, f"raised {type(exc).__name__}: {exc}")
        n, rows = f.failing_rows(result)
        detail = f"{n} rows fail it" if n else "holds"
        return Outcome(label, column, n == 0, n, detail, tuple(f"row {i}" for i in rows))

    return rule


__all__ = ["Expectations", "Outcome", "ValidationReport", "expect"]
