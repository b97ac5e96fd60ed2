"""Building the one ``AsyncEngine`` the app shares, tuned per backend.

SQLite needs two fixes before the store can trust it: foreign keys are off unless each
connection turns them on, and Python's ``sqlite3`` does not open a transaction before DDL,
so a migration would commit statement by statement. The listeners below fix both; the store
and the migrator refuse an SQLite engine that lacks them (:func:`check_engine`).

asyncpg, PostgreSQL's driver, is the optional ``[postgres]`` extra: without it only SQLite
engines can be built, and asking for PostgreSQL is a ``ConfigError`` saying what to install.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mcp_core.errors import ConfigError, McpCoreError, StoreError
from mcp_core.settings import Settings

try:
    from asyncpg import PostgresError
except ModuleNotFoundError:  # no [postgres] extra: no asyncpg errors can arise either
    PostgresError = None

__all__ = ["BEGIN_IMMEDIATE", "DB_ERRORS", "check_engine", "create_engine", "transaction", "writer"]

DB_ERRORS: tuple[type[Exception], ...] = (
    (sa.exc.SQLAlchemyError, OSError)
    if PostgresError is None
    else (sa.exc.SQLAlchemyError, PostgresError, OSError)
)
"""What a failing database raises: SQLAlchemy's errors, asyncpg's own (raw connection use), sockets."""
POSTGRES_EXTRA_MISSING = (
    "DATABASE_URL points at PostgreSQL, which needs the postgres extra: "
    "pip install 'slack-mcp-bot[postgres]'."
)

# How long an SQLite writer waits for another connection's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 5.0
# PostgreSQL: connecting, and any single statement, must finish within these.
PG_CONNECT_TIMEOUT_S = 10.0
PG_COMMAND_TIMEOUT_S = 30.0
# A handful of connections is plenty: the bot's queries are short and few per Slack event.
PG_POOL_SIZE = 5
PG_MAX_OVERFLOW = 5
PG_POOL_TIMEOUT_S = 10.0
# Recycle before typical server or pooler idle limits cut connections under us.
PG_POOL_RECYCLE_S = 30 * 60

# Execution option read by the SQLite "begin" listener: take the write lock up front, so a
# transaction that reads before it writes cannot fail half-way with "database is locked".
BEGIN_IMMEDIATE = "mcp_sqlite_begin_immediate"

_UNAVAILABLE = "The database is not answering right now. Try again in a minute."
_REFUSED = "The database refused this change because it breaks a rule of the schema."


def create_engine(settings_or_url: Settings | str | sa.URL) -> AsyncEngine:
    """Build the async engine for ``DATABASE_URL`` (PostgreSQL via asyncpg, else SQLite).

    A plain ``postgresql://`` or ``sqlite://`` URL gets its async driver filled in. For an
    SQLite file, missing parent folders (``DATA_DIR``) are created. The caller owns the engine
    and disposes of it; :class:`~mcp_core.store.Store` only borrows it.

    Raises:
        ConfigError: the URL names a database other than PostgreSQL or SQLite, or PostgreSQL
            without the postgres extra (asyncpg) installed.
    """
    url = _async_url(settings_or_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        if PostgresError is None:
            raise ConfigError(POSTGRES_EXTRA_MISSING)
        return create_async_engine(
            url,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_MAX_OVERFLOW,
            pool_timeout=PG_POOL_TIMEOUT_S,
            pool_recycle=PG_POOL_RECYCLE_S,
            pool_pre_ping=True,
            connect_args={
                "timeout": PG_CONNECT_TIMEOUT_S,
                "command_timeout": PG_COMMAND_TIMEOUT_S,
                "server_settings": {"application_name": "slack-mcp-bot"},
            },
        )
    if backend == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    raise ConfigError("DATABASE_URL must point to PostgreSQL (postgresql://…) or SQLite (sqlite://…).")


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, with SQLite write transactions taking their lock up front."""
    return engine.execution_options(**{BEGIN_IMMEDIATE: True})


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction on ``engine`` (pass :func:`writer` for writes), committed on success.

    Our own errors pass through; SQLAlchemy, driver and socket errors become ``StoreError``
    with a text fit for users.
    """
    try:
        async with engine.begin() as conn:
            yield conn
    except McpCoreError:
        raise
    except sa.exc.IntegrityError as exc:
        raise StoreError(_REFUSED) from exc
    except DB_ERRORS as exc:
        raise StoreError(_UNAVAILABLE) from exc


def check_engine(engine: AsyncEngine) -> None:
    """Refuse engines this package cannot work with safely.

    Raises:
        ConfigError: not PostgreSQL/SQLite, or an SQLite engine not built by :func:`create_engine`.
    """
    name = engine.dialect.name
    if name == "sqlite" and not event.contains(engine.sync_engine, "begin", _sqlite_on_begin):
        raise ConfigError(
            "Build SQLite engines with mcp_core.store.create_engine (foreign keys, transactions)."
        )
    if name not in ("postgresql", "sqlite"):
        raise ConfigError(f"The store supports PostgreSQL and SQLite, not {name}.")


def _async_url(settings_or_url: Settings | str | sa.URL) -> sa.URL:
    if isinstance(settings_or_url, Settings):
        try:
            raw: str | sa.URL = settings_or_url.sqlalchemy_url
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    else:
        raw = settings_or_url
    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError as exc:
        raise ConfigError("DATABASE_URL is not a valid database URL.") from exc
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+asyncpg")
    if url.drivername == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Stop sqlite3 from managing transactions (it skips BEGIN before DDL); _sqlite_on_begin
    # emits BEGIN instead. Foreign keys are per connection and off by default.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get(BEGIN_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
