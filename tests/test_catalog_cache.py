"""The catalog is cached until it changes, and a warm call reads nothing from the database.

"Another process" is a second engine and ``Store`` on the same database: its commits reach
this process only through the change watch (migration 0007's triggers; LISTEN/NOTIFY on
PostgreSQL, ``PRAGMA data_version`` on SQLite). SELECTs are counted with SQLAlchemy's engine
events on the services' own engine (the watch's connection is its own, outside that engine).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from mcp_core import errors
from mcp_core.models import NewConnection, ToolInfo
from mcp_core.services import Services
from mcp_core.store import Store, create_engine
from tests.support.registry import TEAM, USER, add, call, catalog_name, toy, wait_for

pytestmark = pytest.mark.anyio

ECHO = ToolInfo(name="echo", input_schema={"type": "object", "properties": {"text": {"type": "string"}}})


@contextmanager
def counted_selects(services: Services) -> Iterator[list[str]]:
    """Every SELECT the services' engine runs inside the block."""
    seen: list[str] = []

    def before(_conn, _cursor, statement: str, *_rest) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    engine = services.store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.fixture
async def other_process(in_process_services_on_each_db: Services) -> AsyncIterator[Store]:
    """A store on a second engine of the same database, as another bot process has."""
    engine = create_engine(in_process_services_on_each_db.store.engine.url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


async def names(services: Services, user: str = USER) -> set[str]:
    return {entry.name for entry in await services.registry.catalog(TEAM, user)}


async def test_a_warm_call_and_catalog_make_no_database_read(
    in_process_services_on_each_db: Services,
) -> None:
    services = in_process_services_on_each_db
    await add(services, toy("mine"))
    echo = await catalog_name(services, "mine", "echo")
    assert (await call(services, echo, text="warm")).text == "warm"  # the session is open now

    with counted_selects(services) as selects:
        await services.registry.catalog(TEAM, USER)
        result = await call(services, echo, text="again")
    assert result.text == "again"
    assert selects == []


async def test_a_connection_another_process_adds_changes_or_removes_is_in_the_next_catalog(
    in_process_services_on_each_db: Services, other_process: Store
) -> None:
    services = in_process_services_on_each_db
    await add(services, toy("mine"))
    before = await names(services)

    theirs = await other_process.create_connection(
        TEAM, USER, NewConnection(name="added", transport="streamable_http", url="http://127.0.0.1:9/mcp")
    )
    await other_process.save_tools(TEAM, USER, theirs.id, [ECHO], datetime.now(UTC))
    await wait_for(lambda: _has(services, "added__echo"), what="the other process's new connection")

    await other_process.update_connection(TEAM, USER, theirs.id, name="renamed")
    await wait_for(lambda: _has(services, "renamed__echo"), what="the other process's rename")
    assert "added__echo" not in await names(services)

    await other_process.delete_connection(TEAM, USER, theirs.id)
    await wait_for(lambda: _lacks(services, "renamed__echo"), what="the other process's removal")
    assert await names(services) == before


async def test_arguments_are_checked_against_the_schema_another_process_rediscovered(
    in_process_services_on_each_db: Services, other_process: Store
) -> None:
    services = in_process_services_on_each_db
    mine = (await add(services, toy("mine"))).connection
    echo = await catalog_name(services, "mine", "echo")
    assert (await call(services, echo, text="fits")).text == "fits"  # its validator is built now

    stricter = ECHO.model_copy(
        update={
            "input_schema": {**ECHO.input_schema, "properties": {"text": {"type": "string", "maxLength": 3}}}
        }
    )
    await other_process.save_tools(TEAM, USER, mine.id, [stricter], datetime.now(UTC))

    async def stricter_listed() -> bool:
        entries = await services.registry.catalog(TEAM, USER)
        return any(e.tool.input_schema == stricter.input_schema for e in entries)

    await wait_for(stricter_listed, what="the other process's rediscovered schema")
    with pytest.raises(errors.ToolArgumentsError):
        await call(services, echo, text="too long now")


async def test_a_lost_change_watch_stops_caching_until_it_is_back(
    in_process_services_on_each_db: Services, other_process: Store
) -> None:
    services = in_process_services_on_each_db
    await add(services, toy("mine"))
    await names(services)
    changes = services.changes
    assert changes is not None

    services.registry.watching(False)  # what the watch says when its connection is lost
    with counted_selects(services) as selects:
        await names(services)
        await names(services)
    assert len(selects) == 2, "a catalog was cached while changes could be missed"

    services.registry.watching(True)
    await names(services)
    with counted_selects(services) as selects:
        await names(services)
    assert selects == []


@pytest.mark.postgres
async def test_the_postgres_listener_reconnects_after_its_connection_is_killed(
    in_process_services_on_each_db: Services, other_process: Store
) -> None:
    services = in_process_services_on_each_db
    if services.store.engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    await add(services, toy("mine"))
    await names(services)
    killed = await _kill_listener(other_process)
    assert killed == 1

    theirs = await other_process.create_connection(
        TEAM, USER, NewConnection(name="later", transport="streamable_http", url="http://127.0.0.1:9/mcp")
    )
    await other_process.save_tools(TEAM, USER, theirs.id, [ECHO], datetime.now(UTC))
    await wait_for(lambda: _has(services, "later__echo"), what="a change made while the listener was down")
    await wait_for(lambda: _listeners(other_process, 1), what="a new LISTEN connection")

    await other_process.delete_connection(TEAM, USER, theirs.id)
    await wait_for(lambda: _lacks(services, "later__echo"), what="a change after the reconnect")


async def _has(services: Services, name: str) -> bool:
    return name in await names(services)


async def _lacks(services: Services, name: str) -> bool:
    return name not in await names(services)


_LISTENERS = (
    "SELECT {what} FROM pg_stat_activity WHERE application_name = 'slack-mcp-bot-listener' "
    "AND datname = current_database()"
)


async def _kill_listener(store: Store) -> int:
    async with store.engine.begin() as conn:
        query = sa.text(_LISTENERS.format(what="pg_terminate_backend(pid)"))
        return len((await conn.execute(query)).all())


async def _listeners(store: Store, expected: int) -> bool:
    async with store.engine.begin() as conn:
        return len((await conn.execute(sa.text(_LISTENERS.format(what="pid")))).all()) == expected
