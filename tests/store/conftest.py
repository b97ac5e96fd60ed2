"""Fixtures that run every store test on SQLite and on PostgreSQL.

PostgreSQL is the server named by ``TEST_DATABASE_URL`` (default: the ``postgres`` database on
127.0.0.1:5432, used only as the admin database). The session creates its own database
``smb_test_<hex>`` and drops it at the end; migration tests get a blank database each. If the
server cannot be reached, the ``postgres`` cases are skipped locally and fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.models import Connection, NewConnection
from mcp_core.store import Store, create_engine, migrate
from mcp_core.store._tables import connections, run_cards, slack_events, tool_usage

PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_CONNECT_TIMEOUT_S = 5.0

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

TEAM, USER = "T0001", "U0001"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


class PgServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self._admin = sa.make_url(admin_url).set(drivername="postgresql")

    def url_for(self, database: str) -> str:
        url = self._admin.set(drivername="postgresql+asyncpg", database=database)
        return url.render_as_string(hide_password=False)

    async def create_database(self) -> str:
        name = f"smb_test_{secrets.token_hex(6)}"
        await self._admin_execute(f'CREATE DATABASE "{name}"')
        return name

    async def drop_database(self, name: str) -> None:
        await self._admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _admin_execute(self, statement: str) -> None:
        # asyncpg runs statements outside a transaction unless asked, as CREATE DATABASE needs.
        dsn = self._admin.render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT_S)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()


@pytest.fixture(scope="session")
async def pg_server(anyio_backend: str) -> PgServer:
    server = PgServer(PG_ADMIN_URL)
    try:
        await server._admin_execute("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        where = sa.make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        reason = f"PostgreSQL at {where} (TEST_DATABASE_URL) is unreachable: {exc!r}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return server


@pytest.fixture(scope="session")
async def pg_session_url(pg_server: PgServer) -> AsyncIterator[str]:
    name = await pg_server.create_database()
    yield pg_server.url_for(name)
    await pg_server.drop_database(name)


@pytest.fixture
async def pg_blank_url(pg_server: PgServer) -> AsyncIterator[str]:
    name = await pg_server.create_database()
    yield pg_server.url_for(name)
    await pg_server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database shared by the test session (PostgreSQL) or a fresh file (SQLite)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_session_url")


@pytest.fixture(params=BACKENDS)
def blank_database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database with no tables at all."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"
    return request.getfixturevalue("pg_blank_url")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    async with engine.begin() as conn:  # the PostgreSQL database is shared by the session
        for table in (tool_usage, connections, run_cards, slack_events):
            await conn.execute(sa.delete(table))
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> Store:
    return Store(engine)


@pytest.fixture
def connect(store: Store) -> Callable[..., Awaitable[Connection]]:
    """``await connect("name", team=…, user=…)`` stores a remote connection."""

    async def connect(name: str = "github", *, team: str = TEAM, user: str = USER) -> Connection:
        new = NewConnection(name=name, transport="streamable_http", url=f"https://{name}.example.com/mcp")
        return await store.create_connection(team, user, new)

    return connect
