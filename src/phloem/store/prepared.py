"""The statements of every commit, run on the database driver's own cursor.

SQLAlchemy compiles a statement once and caches it, but each ``Connection.execute`` still
costs some 20 µs of Python before the driver is called (execution context, parameter
processing, result set-up): several times what SQLite takes to run a one-row write. A loop
turn runs five of them. ``Prepared`` compiles a statement with SQLAlchemy, once per set of
columns, and hands the SQL and the rows straight to the driver's cursor in the caller's
transaction. The SQL is SQLAlchemy's, so the statement is the same either way; a statement
this cannot run as it is (a column default computed in Python, a bind that must be expanded
or escaped) goes through ``Connection.execute`` as before. Errors are wrapped as
SQLAlchemy wraps them, so the store's resilience sees the same exceptions either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

Row = Mapping[str, Any]

#: a plain INSERT of at least this many rows goes to PostgreSQL by COPY, one stream for all
#: of them: the server then parses and plans no statement per row (a 1,000-wide fan-out's
#: turn inserts 1,000-3,000 rows at once; by COPY in about a third of executemany's time)
COPY_MIN_ROWS = 64


class _Plan:
    """A statement compiled for one set of columns: its SQL, and how a row becomes the
    driver's parameters (a tuple in bind order for positional styles, a mapping for named
    ones), each value converted as SQLAlchemy would (``to_float`` for a float on SQLite)."""

    __slots__ = ("convert", "copy", "copy_names", "names", "sql", "statement")

    def __init__(
        self,
        statement: Any,
        sql: str | None,
        names: tuple[str, ...] | None,
        convert: dict[str, Callable[[Any], Any]] | None = None,
        copy: str | None = None,
        copy_names: tuple[str, ...] = (),
    ) -> None:
        self.statement = statement  # held, so its id is never another statement's
        self.sql = sql  # None: SQLAlchemy must run it
        self.names = names
        self.convert = convert or {}
        #: ``COPY table (columns) FROM STDIN`` for a plain INSERT on PostgreSQL, else None;
        #: its rows are written in ``copy_names`` order
        self.copy = copy
        self.copy_names = copy_names

    def copy_row(self, row: Row) -> tuple[Any, ...]:
        convert = self.convert
        return tuple([convert[n](row[n]) if n in convert else row[n] for n in self.copy_names])

    def params(self, row: Row) -> Any:
        convert = self.convert
        names = self.names
        if names is None:
            if not convert:
                return row
            return {k: (convert[k](v) if k in convert else v) for k, v in row.items()}
        if not convert:
            return tuple([row[n] for n in names])
        return tuple([convert[n](row[n]) if n in convert else row[n] for n in names])


class Sent:
    """A statement sent, whose row count is read later: in a pipeline (``pipelines``) it is
    known only once the pipeline has ended."""

    __slots__ = ("_count", "_cursor")

    def __init__(self, cursor: Any = None, count: int = 0) -> None:
        self._cursor = cursor
        self._count = count

    def rowcount(self) -> int:
        if self._cursor is not None:
            self._count = int(self._cursor.rowcount)
            self._cursor.close()
            self._cursor = None
        return self._count


class Prepared:
    """Runs prebuilt statements on the driver's cursor for one dialect (see the module)."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._plans: dict[tuple[int, tuple[str, ...]], _Plan] = {}
        self._error = dialect.loaded_dbapi.Error
        #: the driver can send statements whose row counts are read later, together in one
        #: round trip (psycopg's pipeline, ``engine.one_round_trip``)
        self.pipelines = dialect.name == "postgresql" and dialect.driver == "psycopg"

    def run(self, conn: Connection, statement: Any, rows: Sequence[Row] | Row) -> int:
        """Run ``statement`` once per row (one driver call: ``executemany`` for several) in
        ``conn``'s transaction; returns the driver's row count (the rows matched, summed
        over the rows on drivers that report it so). ``statement`` is one built once (a
        module's constant): a plan is kept for each statement and set of columns."""
        return self.send(conn, statement, rows).rowcount()

    def send(self, conn: Connection, statement: Any, rows: Sequence[Row] | Row) -> Sent:
        """``run``, with the row count read when asked for: inside a pipeline, after it."""
        many: Sequence[Row] = [rows] if isinstance(rows, Mapping) else rows
        if not many:
            return Sent()
        first = many[0]
        plan = self._plan_for(statement, first)
        sql = plan.sql
        if sql is None:
            return Sent(count=int(conn.execute(statement, list(many)).rowcount))
        raw = conn.connection.driver_connection
        assert raw is not None  # an open connection in a transaction
        if plan.copy is not None and len(many) >= COPY_MIN_ROWS and not _in_pipeline(raw):
            return Sent(count=self._copy(conn, raw, plan, many))
        cursor = raw.cursor()
        try:
            if len(many) == 1:
                cursor.execute(sql, plan.params(first))
            else:
                cursor.executemany(sql, [plan.params(r) for r in many])
        except self._error as exc:
            cursor.close()
            raise self._wrapped(conn, raw, sql, exc) from exc
        except BaseException:
            cursor.close()
            raise
        return Sent(cursor)

    def copies(self, statement: Any, rows: Sequence[Row] | Row) -> bool:
        """Whether ``send`` would write these rows by COPY, which cannot run inside a
        pipeline: ``engine.send_writes`` sends it between its pipelines."""
        if not self.pipelines or isinstance(rows, Mapping) or len(rows) < COPY_MIN_ROWS:
            return False
        return self._plan_for(statement, rows[0]).copy is not None

    def _plan_for(self, statement: Any, first: Row) -> _Plan:
        """The plan of ``statement`` for the columns of ``first`` (every row has the same)."""
        key = (id(statement), tuple(first))
        plan = self._plans.get(key)
        if plan is None or plan.statement is not statement:
            plan = self._plans[key] = self._plan(statement, tuple(first))
        return plan

    def _copy(self, conn: Connection, raw: Any, plan: _Plan, rows: Sequence[Row]) -> int:
        assert plan.copy is not None
        try:
            with raw.cursor() as cursor, cursor.copy(plan.copy) as stream:
                for row in rows:
                    stream.write_row(plan.copy_row(row))
        except self._error as exc:
            raise self._wrapped(conn, raw, plan.copy, exc) from exc
        return len(rows)

    def _plan(self, statement: Any, columns: tuple[str, ...]) -> _Plan:
        dialect = self._dialect
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(columns))
        if (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.literal_execute_params
            or compiled.post_compile_params
            or getattr(compiled, "escaped_bind_names", None)
            or set(compiled.binds) - set(columns)
        ):
            return _Plan(statement, None, None)  # needs SQLAlchemy's execution
        convert = {}
        for name, bind in compiled.binds.items():
            fn = _processor(bind, dialect)
            if fn is not None:
                convert[name] = fn
        positional = compiled.positiontup
        names = tuple(positional) if positional is not None else None
        sql = str(compiled)
        copy = self._copy_sql(statement, sql, columns) if self.pipelines else None
        return _Plan(statement, sql, names, convert, copy, columns)

    def _copy_sql(self, statement: Any, sql: str, columns: tuple[str, ...]) -> str | None:
        """COPY for an INSERT that compiles exactly as its table's plain INSERT of these
        columns does: each column set to the row's value, nothing else (no RETURNING, no ON
        CONFLICT, no SQL expression for a value)."""
        table = getattr(statement, "table", None)
        if not getattr(statement, "is_insert", False) or table is None:
            return None
        plain = table.insert().inline().compile(dialect=self._dialect, column_keys=list(columns))
        if str(plain) != sql:
            return None
        quote = self._dialect.identifier_preparer
        names = ", ".join(quote.quote(table.c[c].name) for c in columns)
        return f"COPY {quote.format_table(table)} ({names}) FROM STDIN"

    def _wrapped(self, conn: Connection, raw: Any, sql: str, exc: Any) -> Exception:
        dialect = self._dialect
        gone = dialect.is_disconnect(exc, raw, None)
        if gone:
            conn.invalidate(exc)
        wrapped: Exception = DBAPIError.instance(
            sql, None, exc, self._error, connection_invalidated=gone, dialect=dialect
        )
        return wrapped


def _in_pipeline(raw: Any) -> bool:
    """``raw`` (a psycopg connection) is in pipeline mode, where COPY cannot run."""
    return bool(raw.pgconn.pipeline_status)


def _processor(bind: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The conversion SQLAlchemy would apply to a bind's value on this dialect, if any."""
    return bind.type.dialect_impl(dialect).bind_processor(dialect)  # type: ignore[no-any-return]
