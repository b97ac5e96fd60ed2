"""Fixtures and helpers for tests that go through ``build_services`` and the ``ToolRegistry``.

    async def test_x(services: Services) -> None:
        await add(services, toy("mine"))
        result = await call(services, await catalog_name(services, "mine", "echo"), text="hi")

``services`` runs on a fresh SQLite file; ``services_on_each_db`` on SQLite and on a fresh
PostgreSQL database (skipped locally when the server is unreachable, failing under ``CI``).
``in_process_services`` and ``in_process_services_on_each_db`` are the same, but serve
toy.py and leaky.py connections in-process (``in_process_servers``; see
tests/support/in_process.py) for tests where a child process adds nothing.
Both use the ``secrets`` fixture (a ``DictSecrets``) as their secret source. Every wait is
bounded: connects by the connection's timeout, everything else by ``WAIT_S`` on top.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_core._transports import OpenTransport
from mcp_core.models import CatalogEntry, Connection, NewConnection, ToolResult
from mcp_core.registry import ConnectOutcome
from mcp_core.services import Services, build_services
from mcp_core.settings import Settings
from tests.support.in_process import InProcessServers
from tests.support.pool import WAIT_S
from tests.support.postgres import reachable_pg_server
from tests.support.secrets import DictSecrets
from tests.support.servers import HANG, TOY, RunningServer, start_http_server_sync

__all__ = [
    "BEARER",
    "CALL_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "CREDENTIAL_REF",
    "MAX_OUTPUT_CHARS",
    "QUERY_KEY",
    "TEAM",
    "TEAM_2",
    "USER",
    "USER_B",
    "add",
    "add_remote",
    "assert_neighbour_served",
    "bearer_server",
    "call",
    "catalog_entry",
    "catalog_name",
    "hang",
    "in_process_servers",
    "in_process_services",
    "in_process_services_on_each_db",
    "make_settings",
    "neighbour",
    "open_services",
    "query_server",
    "remote",
    "secrets",
    "services",
    "services_on_each_db",
    "toy",
    "toy_server",
    "wait_for",
]

TEAM, TEAM_2 = "T0001", "T0002"
USER, USER_B = "U000A", "U000B"
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 5.0
MAX_OUTPUT_CHARS = 10_000
BEARER = "tok-bearer-5f3a9c71"
QUERY_KEY = "qk/7+x9=="
"""A query secret with characters that URL encoding changes (``/``, ``+``, ``=``)."""
POLL_S = 0.02
CREDENTIAL_REF = "dict"
"""Any non-empty ``credential_ref`` makes the registry ask the secret source."""


# --- building services ------------------------------------------------------------------------


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: SQLite in ``tmp_path``, loopback allowed, short timeouts, stdio
    servers under rlimits only, no ``.env``."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": None,
        "mcp_allowed_hosts": ["127.0.0.1", "localhost"],
        "mcp_connect_timeout_s": CONNECT_TIMEOUT_S,
        "mcp_call_timeout_s": CALL_TIMEOUT_S,
        "mcp_max_output_chars": MAX_OUTPUT_CHARS,
        # Tests of other behaviour look at servers' pids and files in /tmp, which bubblewrap
        # hides; tests/test_sandbox.py covers the bwrap path (and `auto` picks it in production).
        "mcp_stdio_sandbox": "rlimits",
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@asynccontextmanager
async def open_services(
    settings: Settings, secrets: DictSecrets | None = None, *, open_transport: OpenTransport | None = None
) -> AsyncIterator[Services]:
    """``build_services`` on ``settings``, closed (children reaped, usage flushed) on exit; its
    pool opens sessions through ``open_transport`` when given."""
    services = await build_services(settings, secrets=secrets, open_transport=open_transport)
    try:
        yield services
    finally:
        await services.aclose()


@pytest.fixture
def secrets() -> DictSecrets:
    return DictSecrets()


@pytest.fixture
async def services(tmp_path: Path, secrets: DictSecrets) -> AsyncIterator[Services]:
    """Real store (SQLite file), pool, usage recorder and registry."""
    async with open_services(make_settings(tmp_path), secrets) as built:
        yield built


EACH_DB = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=EACH_DB)
async def services_on_each_db(
    request: pytest.FixtureRequest, tmp_path: Path, secrets: DictSecrets
) -> AsyncIterator[Services]:
    """As ``services``, once on SQLite and once on a PostgreSQL database of its own."""
    async with _services_on(request.param, tmp_path, secrets) as built:
        yield built


@pytest.fixture
def in_process_servers() -> InProcessServers:
    """Serves the toy.py and leaky.py connections of ``in_process_services*`` in this process."""
    return InProcessServers()


@pytest.fixture
async def in_process_services(
    tmp_path: Path, secrets: DictSecrets, in_process_servers: InProcessServers
) -> AsyncIterator[Services]:
    """As ``services``, with toy.py and leaky.py connections served in-process."""
    async with open_services(make_settings(tmp_path), secrets, open_transport=in_process_servers) as built:
        yield built


@pytest.fixture(params=EACH_DB)
async def in_process_services_on_each_db(
    request: pytest.FixtureRequest, tmp_path: Path, secrets: DictSecrets, in_process_servers: InProcessServers
) -> AsyncIterator[Services]:
    """As ``services_on_each_db``, with toy.py and leaky.py connections served in-process."""
    async with _services_on(request.param, tmp_path, secrets, in_process_servers) as built:
        yield built


@asynccontextmanager
async def _services_on(
    db: str, tmp_path: Path, secrets: DictSecrets, open_transport: OpenTransport | None = None
) -> AsyncIterator[Services]:
    if db == "sqlite":
        async with open_services(make_settings(tmp_path), secrets, open_transport=open_transport) as built:
            yield built
        return
    server = await reachable_pg_server()
    database = await server.create_database()
    try:
        settings = make_settings(tmp_path, database_url=server.url_for(database))
        async with open_services(settings, secrets, open_transport=open_transport) as built:
            yield built
    finally:
        await server.drop_database(database)


# --- HTTP servers shared by the session -------------------------------------------------------


@pytest.fixture(scope="session")
def toy_server() -> Iterator[RunningServer]:
    """A streamable HTTP toy server without auth; its ``/stats`` count the requests it saw."""
    with start_http_server_sync() as server:
        yield server


@pytest.fixture(scope="session")
def bearer_server() -> Iterator[RunningServer]:
    """A streamable HTTP toy server that wants ``Authorization: Bearer BEARER``."""
    with start_http_server_sync("--bearer", BEARER) as server:
        yield server


@pytest.fixture(scope="session")
def query_server() -> Iterator[RunningServer]:
    """A streamable HTTP toy server that wants ``?api_key=QUERY_KEY`` on every request."""
    with start_http_server_sync("--require-query", f"api_key={QUERY_KEY}") as server:
        yield server


@pytest.fixture
async def neighbour(services: Services, toy_server: RunningServer) -> str:
    """Another user's healthy connection (same team) in ``services``: the catalog name of their echo."""
    outcome = await add(services, remote("theirs", toy_server.url), user=USER_B)
    assert outcome.error is None, outcome.error
    return "theirs__echo"


async def assert_neighbour_served(services: Services, neighbour: str) -> None:
    """The neighbour's connection still answers: one failing connection did not break the pool."""
    result = await call(services, neighbour, user=USER_B, text="still here")
    assert (result.text, result.is_error) == ("still here", False)


# --- connections ------------------------------------------------------------------------------


def toy(name: str, *flags: str, **config: Any) -> NewConnection:
    """tests/servers/toy.py over stdio; ``config`` as in ``NewConnection.config``."""
    return NewConnection(
        name=name, transport="stdio", command=sys.executable, args=[str(TOY), *flags], config=config
    )


def hang(name: str, *, connect_timeout_s: float) -> NewConnection:
    """tests/servers/hang.py over stdio: never answers initialize; exits when its stdin closes."""
    return NewConnection(
        name=name,
        transport="stdio",
        command=sys.executable,
        args=[str(HANG), "--exit-on-eof"],
        config={"connect_timeout_s": connect_timeout_s},
    )


def remote(name: str, url: str, **config: Any) -> NewConnection:
    """A streamable HTTP connection whose secrets come from the secret source."""
    return NewConnection(
        name=name, transport="streamable_http", url=url, config=config, credential_ref=CREDENTIAL_REF
    )


def _deadline(new: NewConnection, settings: Settings) -> float:
    connect = float(new.config.get("connect_timeout_s") or settings.mcp_connect_timeout_s)
    return connect + settings.mcp_call_timeout_s + WAIT_S


async def add(
    services: Services, new: NewConnection, *, team: str = TEAM, user: str = USER
) -> ConnectOutcome:
    """``registry.add_connection``, bounded so that a registry bug cannot hang the test."""
    with anyio.fail_after(_deadline(new, services.settings)):
        return await services.registry.add_connection(team, user, new)


async def add_remote(
    services: Services,
    secrets: DictSecrets,
    new: NewConnection,
    values: Mapping[str, str],
    *,
    team: str = TEAM,
    user: str = USER,
) -> Connection:
    """Store the secrets under the connection's credential_ref first, then add it: the order
    of the real flow (credentials.put, then create the connection)."""
    secrets.put(team, user, new.credential_ref or CREDENTIAL_REF, values)
    outcome = await add(services, new, team=team, user=user)
    assert outcome.error is None, outcome.error
    return outcome.connection


async def catalog_entry(
    services: Services, connection: str, tool: str, *, team: str = TEAM, user: str = USER
) -> CatalogEntry:
    """The user's catalog entry for ``tool`` of ``connection``."""
    entries = await services.registry.catalog(team, user)
    matches = [e for e in entries if e.connection_name == connection and e.tool.name == tool]
    assert len(matches) == 1, f"{connection}/{tool} in {[e.name for e in entries]}"
    return matches[0]


async def catalog_name(
    services: Services, connection: str, tool: str, *, team: str = TEAM, user: str = USER
) -> str:
    return (await catalog_entry(services, connection, tool, team=team, user=user)).name


async def call(
    services: Services, tool: str, *, team: str = TEAM, user: str = USER, **arguments: Any
) -> ToolResult:
    """``registry.call`` with keyword arguments, bounded by connect + call timeouts + ``WAIT_S``."""
    settings = services.settings
    with anyio.fail_after(settings.mcp_connect_timeout_s + settings.mcp_call_timeout_s + WAIT_S):
        return await services.registry.call(team, user, tool, arguments)


async def wait_for(check: Callable[[], Awaitable[bool]], *, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll the async ``check`` until it holds; fail with ``what`` after ``timeout_s``."""
    try:
        with anyio.fail_after(timeout_s):
            while not await check():  # noqa: ASYNC110 - a database condition has no event to await
                await anyio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s} s: {what}") from None
