"""Fixtures that run every store test on SQLite and on PostgreSQL.

PostgreSQL is the server named by ``TEST_DATABASE_URL`` (see ``tests/support/postgres.py``).
The session creates its own database ``smb_test_<hex>`` and drops it at the end; migration
tests get a blank database each. If the server cannot be reached, the ``postgres`` cases are
skipped locally and fail when ``CI`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.models import Connection, NewConnection
from mcp_core.store import Store, create_engine, migrate
from mcp_core.store._tables import (
    agent_turns,
    answer_feedback,
    audit_log,
    connections,
    credentials,
    slack_events,
    slack_installations,
    slack_oauth_states,
    team_usage_daily,
    tool_usage,
    turn_questions,
    turns,
    turns_daily,
    usage_charts,
    usage_daily,
    usage_errors_daily,
    usage_latency_daily,
    workspace_policy,
    workspace_removals,
)
from tests.support.postgres import PgServer, reachable_pg_server

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

TEAM, USER = "T0001", "U0001"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
async def pg_server(anyio_backend: str) -> PgServer:
    return await reachable_pg_server()


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
        tables = (tool_usage, agent_turns, connections, slack_events, turns, answer_feedback)
        for table in (
            *tables,
            usage_daily,
            usage_latency_daily,
            usage_errors_daily,
            turns_daily,
            usage_charts,
            workspace_policy,
            audit_log,
            team_usage_daily,
            slack_installations,
            slack_oauth_states,
            workspace_removals,
            turn_questions,
            credentials,
        ):
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
