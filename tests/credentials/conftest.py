"""Fixtures for the credential manager's tests: master keys, and an engine on each database.

The environment's own CREDENTIAL_KEYS / CREDENTIAL_BACKEND never reach these tests; each sets
what it needs. ``engine`` is a migrated SQLite file, or a PostgreSQL database of its own
(skipped locally when the server is unreachable, failing under ``CI``). ``tcp_proxy`` puts a
real TCP hop in front of a server that a test can take away (an outage mid-life), and
``closed_port`` is a loopback port nothing listens on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.store import create_engine, migrate
from tests.support.aws import moto_url  # noqa: F401  (a session fixture for every credentials test)
from tests.support.postgres import reachable_pg_server

__all__ = ["KEY_1", "KEY_2", "TcpProxy", "closed_port", "pg_database", "tcp_proxy"]

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


def closed_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to a server until :meth:`close`, which refuses new
    connections and cuts the open ones, as a server going away does."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def url_for(self, url: str) -> str:
        """``url`` (a database URL on the target) pointed at the proxy instead."""
        moved = sa.make_url(url).set(host="127.0.0.1", port=self.port)
        return moved.render_as_string(hide_password=False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(_pump(reader, up_writer)), asyncio.create_task(_pump(up_reader, writer))]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for stream in (writer, up_writer):
            stream.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@asynccontextmanager
async def tcp_proxy(url: str) -> AsyncIterator[TcpProxy]:
    """A running :class:`TcpProxy` to the host and port of database ``url``; closed on exit."""
    parsed = sa.make_url(url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


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
