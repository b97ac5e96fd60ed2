"""Fixtures for the credential manager's tests: master keys, and an engine on each database.

The environment's own CREDENTIAL_KEYS / CREDENTIAL_BACKEND never reach these tests; each sets
what it needs. ``engine`` is a migrated SQLite file, or a PostgreSQL database of its own
(skipped locally when the server is unreachable, failing under ``CI``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.store import create_engine, migrate
from tests.support.aws import moto_url  # noqa: F401  (a session fixture for every credentials test)
from tests.support.postgres import reachable_pg_server

__all__ = ["KEY_1", "KEY_2", "pg_database"]

KEY_1 = base64.b64encode(os.urandom(32)).decode()
KEY_2 = base64.b64encode(os.urandom(32)).decode()


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """The URL of a fresh PostgreSQL database, dropped on exit (skips if the server is down)."""
    server = await reachable_pg_server()
    name = await server.create_database()
    try:
        yield server.url_for(name)
    finally:
        await server.drop_database(name)


@pytest.fixture(autouse=True)
def _no_credential_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CREDENTIAL_KEYS", "CREDENTIAL_BACKEND"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'credentials.db'}"
        return
    async with pg_database() as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()
