"""The change watch reports each person whose connections another process changed, and only them.

The "other process" is a second engine on the same database. Changes are reported in commit
order, so once a later change of someone else's is reported, an earlier one would have been.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.models import NewConnection, UsageRecord
from mcp_core.store import ConnectionChanges, Store, create_engine, watch_connection_changes
from tests.store.conftest import TEAM, USER

pytestmark = pytest.mark.anyio

OTHER = "U0002"
WAIT_S = 10.0
POLL_S = 0.02


@dataclass
class Heard:
    """A listener that writes down what the watch told it."""

    changed: list[tuple[str, str]] = field(default_factory=list)
    states: list[bool] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    def connections_changed(self, team_id: str, user_id: str) -> None:
        self.changed.append((team_id, user_id))
        self.arrived.set()

    def watching(self, complete: bool) -> None:
        self.states.append(complete)

    async def until(self, person: tuple[str, str]) -> None:
        with anyio.fail_after(WAIT_S):
            while person not in self.changed:
                self.arrived = anyio.Event()
                await self.arrived.wait()


@pytest.fixture
async def watched(engine: AsyncEngine) -> AsyncIterator[tuple[Heard, Store]]:
    """What a watch on ``engine`` hears, and a store on another engine of the same database."""
    heard = Heard()
    changes: ConnectionChanges = await watch_connection_changes(engine, heard, poll_s=POLL_S)
    other = create_engine(engine.url)
    try:
        yield heard, Store(other)
    finally:
        await changes.aclose()
        await other.dispose()


def remote(name: str) -> NewConnection:
    return NewConnection(name=name, transport="streamable_http", url="http://127.0.0.1:9/mcp")


async def test_the_watch_starts_complete_and_ends_incomplete(engine: AsyncEngine) -> None:
    heard = Heard()
    changes = await watch_connection_changes(engine, heard, poll_s=POLL_S)
    assert heard.states == [True]
    await changes.aclose()
    assert heard.states == [True, False]


async def test_adding_changing_and_removing_a_connection_is_reported_for_its_owner(
    watched: tuple[Heard, Store],
) -> None:
    heard, other = watched
    connection = await other.create_connection(TEAM, USER, remote("one"))
    await heard.until((TEAM, USER))
    heard.changed.clear()
    await other.save_tools(TEAM, USER, connection.id, [], datetime.now(UTC))
    await heard.until((TEAM, USER))
    heard.changed.clear()
    await other.delete_connection(TEAM, USER, connection.id)
    await heard.until((TEAM, USER))
    assert (TEAM, OTHER) not in heard.changed


async def test_usage_counter_bumps_are_not_reported(watched: tuple[Heard, Store]) -> None:
    heard, other = watched
    mine = await other.create_connection(TEAM, USER, remote("mine"))
    await heard.until((TEAM, USER))
    heard.changed.clear()
    row = UsageRecord(
        team_id=TEAM,
        user_id=USER,
        connection_id=mine.id,
        tool_name="echo",
        latency_ms=1.0,
        success=True,
        created_at=datetime.now(UTC),
    )
    await other.record_usage([row])
    await other.create_connection(TEAM, OTHER, remote("theirs"))  # reported after the usage rows
    await heard.until((TEAM, OTHER))
    assert (TEAM, USER) not in heard.changed


async def test_a_listen_connection_that_hears_no_notifications_is_never_trusted(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As LISTEN through a transaction-mode pooler (Supabase's port 6543): the connection answers
    queries, but nothing it LISTENs for arrives. Its probe notification never comes back, so the
    watch says it is not complete (every catalog is read from the database) instead of caching
    forever."""
    if engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    from mcp_core.store import _changes

    monkeypatch.setattr(_changes, "LISTEN_PING_INTERVAL_S", 0.1)
    monkeypatch.setattr(_changes, "LISTEN_PING_TIMEOUT_S", 0.5)
    monkeypatch.setattr(_changes, "RECONNECT_FIRST_S", 60.0)  # stay down once it is found out
    heard = Heard()
    changes = await watch_connection_changes(engine, heard)
    try:
        assert heard.states == [True]  # its first probe came back
        await changes._conn.execute("UNLISTEN *")  # still connected, deaf from now on
        with anyio.fail_after(WAIT_S):
            while heard.states[-1] is not False:  # noqa: ASYNC110 - the watch sets no event
                await anyio.sleep(POLL_S)
    finally:
        await changes.aclose()
