"""Apply the numbered SQL migrations in ``sql/`` to a database, once each.

Files are named ``NNNN_name.sql`` and are append-only: an applied file is never edited, a
change is a new number. PostgreSQL uses ``sql/*.sql`` and SQLite its twin ``sql/sqlite/*.sql``.
Each migration runs in its own transaction together with the row recording it in
``mcp_schema_migrations``, so a failure leaves the database as it was before that file.
Several processes may start at once: PostgreSQL serialises them with an advisory lock,
SQLite with ``BEGIN IMMEDIATE``; either way the loser sees the winner's rows and skips.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_core.errors import StoreError
from mcp_core.store._engine import DB_ERRORS, check_engine, writer
from mcp_core.store._tables import schema_migrations

__all__ = ["Migration", "default_sql_dir", "discover", "migrate", "pending_migrations", "split_sqlite_script"]

logger = logging.getLogger(__name__)

# Any fixed 64-bit number works as long as every starter of this app uses the same one.
MIGRATION_LOCK_KEY = 0x6D63_705F_6D69_67  # "mcp_mig"

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = {
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS mcp_schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())",
        "ALTER TABLE mcp_schema_migrations ENABLE ROW LEVEL SECURITY",
    ),
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS mcp_schema_migrations ("
        " version INTEGER NOT NULL PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " applied_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))",
    ),
}


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    path: Path


def default_sql_dir() -> Path:
    """The ``sql/`` folder: at the repository root in a checkout, inside the package in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "sql", here / "sql"):
        if (candidate / "0001_initial.sql").is_file() and (candidate / "sqlite").is_dir():
            return candidate
    raise StoreError("The SQL migrations are missing from this installation; reinstall slack-mcp-bot.")


def discover(sql_dir: Path, dialect: str) -> list[Migration]:
    """List the migrations for ``dialect`` in version order.

    Raises:
        StoreError: a file name does not look like ``0001_name.sql``, or a version repeats.
    """
    folder = sql_dir / "sqlite" if dialect == "sqlite" else sql_dir
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise StoreError(f"Migration file {path.name} must be named like 0001_name.sql.")
        version = int(match[1])
        if version in found:
            raise StoreError(f"Migrations {found[version].path.name} and {path.name} share a number.")
        found[version] = Migration(version, match[2], path)
    return [found[v] for v in sorted(found)]


async def migrate(engine: AsyncEngine, *, sql_dir: Path | None = None) -> list[int]:
    """Apply every pending migration for the engine's dialect; return the versions applied.

    Safe to call on every start and from several processes at once; a no-op when up to date.
    ``sql_dir`` defaults to :func:`default_sql_dir` (tests point it elsewhere).

    Raises:
        ConfigError: the engine was not built by :func:`mcp_core.store.create_engine`.
        StoreError: the database is unreachable or a migration failed (that file is rolled back).
    """
    check_engine(engine)
    dialect = engine.dialect.name
    migrations = discover(sql_dir or default_sql_dir(), dialect)
    applied: list[int] = []
    step = "mcp_schema_migrations"
    try:
        async with writer(engine).connect() as conn:
            async with conn.begin():
                await _lock(conn)
                for statement in _BOOTSTRAP[dialect]:
                    await conn.exec_driver_sql(statement)
                recorded = set((await conn.execute(sa.select(schema_migrations.c.version))).scalars())
            unknown = recorded - {m.version for m in migrations}
            if unknown:
                logger.warning("Database has migrations %s this release does not know", sorted(unknown))
            for migration in migrations:
                step = migration.path.name
                async with conn.begin():
                    await _lock(conn)
                    if await _is_recorded(conn, migration.version):
                        continue
                    await _run_script(conn, migration.path.read_text(encoding="utf-8"))
                    await conn.execute(
                        sa.insert(schema_migrations).values(
                            version=migration.version, name=migration.name, applied_at=datetime.now(UTC)
                        )
                    )
                logger.info("Applied migration %s", migration.path.name)
                applied.append(migration.version)
    except DB_ERRORS as exc:
        raise StoreError(f"Could not apply database migration {step}; it was rolled back.") from exc
    return applied


async def pending_migrations(engine: AsyncEngine, *, sql_dir: Path | None = None) -> list[int]:
    """The versions :func:`migrate` would apply, found without changing the database.

    Raises:
        ConfigError: the engine was not built by :func:`mcp_core.store.create_engine`.
        StoreError: the database is unreachable.
    """
    check_engine(engine)
    migrations = discover(sql_dir or default_sql_dir(), engine.dialect.name)
    try:
        async with engine.connect() as conn:
            if not await conn.run_sync(lambda c: sa.inspect(c).has_table(schema_migrations.name)):
                return [m.version for m in migrations]
            recorded = set((await conn.execute(sa.select(schema_migrations.c.version))).scalars())
    except DB_ERRORS as exc:
        raise StoreError("The database is not answering, so its migrations cannot be checked.") from exc
    return [m.version for m in migrations if m.version not in recorded]


async def _lock(conn: AsyncConnection) -> None:
    # SQLite needs nothing here: writer() made this transaction BEGIN IMMEDIATE.
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))


async def _is_recorded(conn: AsyncConnection, version: int) -> bool:
    query = sa.select(schema_migrations.c.version).where(schema_migrations.c.version == version)
    return (await conn.execute(query)).first() is not None


async def _run_script(conn: AsyncConnection, script: str) -> None:
    """Run a multi-statement script inside the connection's open transaction."""
    if conn.dialect.name == "postgresql":
        # asyncpg's simple-query protocol runs a whole script; the SQLAlchemy adapter has
        # already opened the transaction (the advisory lock ran through it).
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute(script)
        return
    # sqlite3.executescript() would COMMIT first, so feed statements one at a time.
    for statement in split_sqlite_script(script):
        await conn.exec_driver_sql(statement)


def split_sqlite_script(script: str) -> list[str]:
    """Split an SQLite script into statements, respecting strings, comments and triggers.

    Raises:
        StoreError: text after the last ``;`` that is more than whitespace and comments.
    """
    statements: list[str] = []
    pending = ""
    *pieces, tail = script.split(";")
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    pending += tail
    if any(line.strip() and not line.strip().startswith("--") for line in pending.splitlines()):
        raise StoreError("An SQLite migration ends with a statement that has no closing “;”.")
    return statements
