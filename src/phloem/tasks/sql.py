"""``phloem.tasks.sql``: a task that runs SQL on a connection, parameters bound, several
statements in one transaction."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

from phloem.dsl.options import TaskOptions
from phloem.dsl.refs import TaskRef
from phloem.dsl.task import Task
from phloem.errors import PhloemError
from phloem.templating import render


def sql(
    query: str,
    conn: str | TaskRef = "warehouse",
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | TaskRef | None = None,
    *,
    name: str | None = None,
    **task_options: Any,
) -> TaskRef:
    """Add a task that runs ``query`` on connection ``conn`` (call it inside a ``@pipeline``).

    Parameters are bound by the database driver, never pasted into the text: write ``:name``
    in the query and give ``params={"name": value}`` (values may be other tasks' outputs; a
    list of dicts runs the statement once per dict). Several statements separated by ``;``
    run in one transaction. The output is the (last statement's) rows as a list of dicts for
    a query that returns rows, else the number of rows changed. Placeholders such as ``{ds}``
    are filled when the task runs; bind values with ``:name`` rather than templating them.
    Other keywords are task options; the task is named ``sql`` unless ``name``.
    """
    t = _SQL
    if name is not None:
        task_options["name"] = name
    if task_options:
        t = t.with_options(**task_options)
    return t(query, conn=conn, params=params)


def run_query(
    query: str,
    conn: str = "warehouse",
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Any:
    """The body of a SQL task (callable directly, e.g. in a unit test).

    A script of several statements runs in one transaction, in order (the idempotent
    ``DELETE ...; INSERT ...`` of a partition); its output is the last statement's.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from phloem.variables import connection

    if not isinstance(query, str) or not query.strip():
        raise PhloemError("sql task: the query is empty")
    statements = split_statements(render(query))
    if not statements:
        raise PhloemError("sql task: the query holds only comments or semicolons")
    if len(statements) > 1 and params is not None and not isinstance(params, Mapping):
        raise PhloemError(
            f"sql task: a script of {len(statements)} statements takes one dict of params, not "
            "a list (a list runs one statement once per dict); split the script into tasks"
        )
    c = connection(conn)
    engine = create_engine(sqlalchemy_url(c.uri), poolclass=NullPool)
    try:
        with engine.begin() as db:
            for statement in statements:
                if params is None:
                    result = db.execute(text(statement))
                elif isinstance(params, Mapping):
                    result = db.execute(text(statement), dict(params))
                else:
                    result = db.execute(text(statement), [dict(p) for p in params])
                output = (
                    [dict(row) for row in result.mappings()]
                    if result.returns_rows
                    else result.rowcount
                )
            return output
    finally:
        engine.dispose()


def split_statements(script: str) -> list[str]:
    """The statements of a SQL script, without empty ones (semicolons inside strings, quoted
    names and comments do not split)."""
    import sqlparse

    out = []
    for statement in sqlparse.split(script):
        stripped = sqlparse.format(statement, strip_comments=True).strip().rstrip(";").strip()
        if stripped:
            out.append(statement.strip().rstrip(";").rstrip())
    return out


def sqlalchemy_url(uri: str) -> str:
    """``postgresql://`` means psycopg 2 to SQLAlchemy; use psycopg 3 when only it is here."""
    scheme, sep, rest = uri.partition("://")
    if (
        scheme in ("postgresql", "postgres")
        and importlib.util.find_spec("psycopg2") is None
        and importlib.util.find_spec("psycopg") is not None
    ):
        return f"postgresql+psycopg{sep}{rest}"
    return uri


_SQL: Task[Any, Any] = Task(run_query, TaskOptions(name="sql"))
