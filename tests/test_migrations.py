"""The Alembic migrations on SQLite and PostgreSQL: they build exactly ``schema.metadata``, go
down and up again, and refuse a database written by a newer phloem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from phloem.errors import StoreError
from phloem.store import SqlStore, migrate
from phloem.store.schema import metadata
from phloem.store.sql import make_engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'phloem.db'}"
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = make_engine(db_url)
    yield e
    e.dispose()


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate._config(None))


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_head_constant_is_the_script_head() -> None:
    scripts = _scripts()
    assert scripts.get_heads() == [migrate.HEAD]  # one head, no branches
    revisions = list(scripts.walk_revisions())
    assert revisions[-1].down_revision is None  # one base
    for rev in revisions:
        assert Path(rev.path).name.startswith(rev.revision), rev.path


def test_upgrade_from_empty_creates_the_schema(engine: Engine) -> None:
    assert _tables(engine) == set()
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.HEAD
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
    with engine.connect() as conn:
        insp = inspect(conn)
        for name, table in metadata.tables.items():
            reflected = {c["name"]: c for c in insp.get_columns(name)}
            assert list(reflected) == [c.name for c in table.columns], name
            for col in table.columns:
                assert reflected[col.name]["nullable"] == col.nullable, (name, col.name)
            pk = insp.get_pk_constraint(name)["constrained_columns"]
            assert pk == [c.name for c in table.primary_key.columns], name
            indexes = {i["name"] for i in insp.get_indexes(name)}
            assert {i.name for i in table.indexes} <= indexes, name


def test_schema_matches_the_metadata(engine: Engine) -> None:
    """What the migrations built is what the code's tables describe (autogenerate finds no
    difference, types included)."""
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, metadata)
    assert diffs == []


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert _tables(engine) <= {"alembic_version"}
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
    assert migrate.current_revision(engine) == migrate.HEAD


def test_every_revision_steps_up_and_down(engine: Engine) -> None:
    order = [r.revision for r in reversed(list(_scripts().walk_revisions()))]
    for rev in order:
        migrate.upgrade(engine, rev)
        assert migrate.current_revision(engine) == rev
    for i in range(len(order) - 1, 0, -1):
        migrate.downgrade(engine, order[i - 1])
        assert migrate.current_revision(engine) == order[i - 1]
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.HEAD


def test_store_creates_and_reuses_the_schema(db_url: str) -> None:
    first = SqlStore(db_url)
    first.set_pool("gpu", 2)
    first.close()
    again = SqlStore(db_url)  # current already: nothing to do, data kept
    assert again.pools() == {"gpu": 2}
    assert migrate.current_revision(again.engine) == migrate.HEAD
    again.close()


def test_unknown_revision_is_refused(engine: Engine, db_url: str) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StoreError, match="9999_future") as info:
        migrate.upgrade(engine)
    assert "newer phloem" in str(info.value)
    with pytest.raises(StoreError, match="9999_future"):
        SqlStore(db_url)
    # nothing was changed by the attempts
    assert migrate.current_revision(engine) == "9999_future"
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}


def test_fresh_store_is_at_head_and_migrates_like_a_migrated_one(db_url: str) -> None:
    """A new store gets the schema in one step and is stamped at HEAD; from there the
    migrations work on it as on a database they built themselves."""
    store = SqlStore(db_url)
    engine = store.engine
    assert migrate.current_revision(engine) == migrate.HEAD
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []
    migrate.downgrade(engine, "base")
    assert _tables(engine) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.HEAD
    store.close()


def test_the_written_sqlite_ddl_is_the_schema() -> None:
    """A new SQLite store runs ``sqlite_ddl.STATEMENTS``; they are what the code's tables
    compile to (after a schema change: ``python -m phloem.store.sqlite_ddl >
    src/phloem/store/sqlite_ddl.py``)."""
    from phloem.store import sqlite_ddl

    assert sqlite_ddl.render() == sqlite_ddl.STATEMENTS, (
        "src/phloem/store/sqlite_ddl.py is out of date: regenerate it with "
        "`python -m phloem.store.sqlite_ddl > src/phloem/store/sqlite_ddl.py`"
    )


def test_a_fresh_sqlite_store_gets_what_create_all_makes(tmp_path: Path) -> None:
    """The written DDL builds, object for object and text for text, what ``create_all`` builds
    through the store's own engine."""

    def master(engine: Engine) -> set[tuple[str, ...]]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE tbl_name != 'alembic_version'"
            )
            return {tuple(r) for r in rows}

    written, compiled = (make_engine(f"sqlite:///{tmp_path / n}.db") for n in ("w", "c"))
    try:
        migrate.ensure_schema(written)
        metadata.create_all(compiled)
        assert migrate.current_revision(written) == migrate.HEAD
        assert master(written) == master(compiled)
        assert len(master(written)) > len(metadata.tables)  # tables, indexes, autoindexes
    finally:
        written.dispose()
        compiled.dispose()


def test_a_fresh_sqlite_store_is_made_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The written DDL goes to the driver's cursor inside the transaction that checked the
    database was empty: a statement that fails leaves no table behind, and the next opening
    makes the whole schema."""
    from phloem.store import sqlite_ddl

    good = sqlite_ddl.STATEMENTS
    half = len(good) // 2
    monkeypatch.setattr(sqlite_ddl, "STATEMENTS", (*good[:half], "CREATE TABLE (", *good[half:]))
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with pytest.raises(Exception, match="syntax error"):
            migrate.ensure_schema(engine)
        assert _tables(engine) == set()
        monkeypatch.setattr(sqlite_ddl, "STATEMENTS", good)
        migrate.ensure_schema(engine)
        assert migrate.current_revision(engine) == migrate.HEAD
        assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()
