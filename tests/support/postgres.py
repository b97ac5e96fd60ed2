"""Throwaway PostgreSQL databases for tests, on the server named by ``TEST_DATABASE_URL``.

    server = await reachable_pg_server()        # skips locally / fails under CI if unreachable
    name = await server.create_database()       # smb_test_<hex>
    url = server.url_for(name)                  # postgresql+asyncpg://…/smb_test_<hex>
    await server.drop_database(name)

The default is the ``postgres`` database on 127.0.0.1:5432, used only as the admin database.
"""

from __future__ import annotations

import os
import secrets

import asyncpg
import pytest
import sqlalchemy as sa

__all__ = ["PG_ADMIN_URL", "PgServer", "reachable_pg_server"]

PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_CONNECT_TIMEOUT_S = 5.0


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


async def reachable_pg_server(admin_url: str = PG_ADMIN_URL) -> PgServer:
    """The test server, checked to answer: skip the test if it does not, fail when ``CI`` is set."""
    server = PgServer(admin_url)
    try:
        await server._admin_execute("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        where = sa.make_url(admin_url).render_as_string(hide_password=True)
        reason = f"PostgreSQL at {where} (TEST_DATABASE_URL) is unreachable: {exc!r}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return server
