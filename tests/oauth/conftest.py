"""An engine on SQLite and PostgreSQL, a local credential store on it, and a stored connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials import LocalCredentialStore, parse_keyring
from mcp_core.models import Connection, NewConnection
from mcp_core.oauth import GrantStore
from mcp_core.store import Store, create_engine, migrate
from tests.credentials.conftest import KEY_1, pg_database

TEAM, USER = "T0001", "U000A"
OTHER_USER = "U000B"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def engine(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}")
        await migrate(engine)
        yield engine
        await engine.dispose()
        return
    async with pg_database() as url:
        engine = create_engine(url)
        await migrate(engine)
        yield engine
        await engine.dispose()


@pytest.fixture
def credentials(engine: AsyncEngine) -> LocalCredentialStore:
    return LocalCredentialStore(engine, parse_keyring(f"k1:{KEY_1}"))


@pytest.fixture
def grants(engine: AsyncEngine, credentials: LocalCredentialStore) -> GrantStore:
    return GrantStore(engine, credentials)


@pytest.fixture
async def connection(engine: AsyncEngine) -> Connection:
    new = NewConnection(name="linear", transport="streamable_http", url="https://mcp.example.com/mcp")
    return await Store(engine).create_connection(TEAM, USER, new)
