"""Create or upgrade the schema with Alembic, skipping Alembic entirely when already current."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text

from phloem.errors import StoreError

#: The newest migration; a test checks it matches the head of migrations/versions.
HEAD = "0019"
MIGRATIONS = Path(__file__).parent / "migrations"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def ensure_schema(engine: Engine) -> None:
    """Bring the schema to HEAD. Cheap when current: one query, no Alembic import."""
    rev = current_revision(engine)
    if rev == HEAD:
        return
    try:
        if rev is None and _create_fresh(engine):
            return
        upgrade(engine)
    except Exception:
        # another process may have created the schema at the same moment: fine if it is
        # now current (PostgreSQL serializes this with an advisory lock, SQLite with its
        # write lock, so the loser sees the winner's tables)
        if current_revision(engine) != HEAD:
            raise


def _create_fresh(engine: Engine) -> bool:
    """An empty database gets the current schema in one go and is stamped at HEAD: ten times
    faster than replaying the migrations, which a test keeps equal to ``schema.metadata``.
    Returns False when the database is not empty (then the migrations run)."""
    from phloem.store.schema import metadata

    with engine.connect().execution_options(phloem_write=True) as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72957301)")
        existing = set(inspect(conn).get_table_names())
        if existing & set(metadata.tables) or "alembic_version" in existing:
            conn.rollback()
            return False
        # none of its tables exists (just seen); SQLite's DDL is written out (``sqlite_ddl``)
        # rather than compiled again for every new store, and goes straight to the driver's
        # cursor, in the transaction begun above (SQLAlchemy's execution of a statement costs
        # as much as SQLite's creating a table)
        if engine.dialect.name == "sqlite":
            from phloem.store.sqlite_ddl import STATEMENTS

            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                for statement in STATEMENTS:
                    cursor.execute(statement)
            finally:
                cursor.close()
        else:
            metadata.create_all(conn, checkfirst=False)
        conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})
        conn.commit()
    return True


def _config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = _config(engine)
    known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
    rev = current_revision(engine)
    if rev is not None and rev not in known:
        raise StoreError(
            f"the database schema is at revision {rev}, which this phloem version does not "
            "know (it was written by a newer phloem); upgrade phloem to use this store"
        )
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(72957301)")
            try:
                if current_revision(engine) != HEAD or revision != "head":
                    command.upgrade(cfg, revision)
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(72957301)")
                conn.commit()
        return
    command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(_config(engine), revision)
