"""A Stop that lands on a process not running the turn, on SQLite and PostgreSQL: the asker is
checked against the turn's row, the row is marked, and the owner's journal hears it once —
only for turns old enough to look for, so a quick turn never reads the database for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core import turn_journal
from mcp_core.store import create_engine
from mcp_core.store._tables import turns
from mcp_core.store._turns import TurnStore
from mcp_core.turn_journal import TurnJournal

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

OTHER_USER = "U0OTHER"
WAIT_S = 10.0


@pytest.fixture
async def second_engine(database_url: str, engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The same database through its own engine: the process the Stop landed on."""
    other = create_engine(database_url)
    yield other
    await other.dispose()


def journal(engine: AsyncEngine, owner: str) -> TurnJournal:
    return TurnJournal(TurnStore(engine), lease_s=30.0, owner=owner)


async def running(j: TurnJournal, turn_id: str, thread_ts: str = "1.0") -> None:
    j.begin(turn_id, TEAM, USER, "C1", thread_ts)
    await j.durable(turn_id)


async def test_a_stop_by_the_asker_elsewhere_reaches_the_owner_once(
    engine, second_engine, monkeypatch
) -> None:
    monkeypatch.setattr(turn_journal, "STOP_POLL_S", 0.05)
    owner, elsewhere = journal(engine, "host-a:1:x"), journal(second_engine, "host-b:2:y")
    heard: list[str] = []
    owner.on_stop_requested = heard.append
    try:
        await running(owner, "t1")
        await running(owner, "t2", thread_ts="2.0")

        assert await elsewhere.request_stop(TEAM, USER, turn_id="t1") == ("asked", None)
        with anyio.fail_after(WAIT_S):
            while not heard:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # several more polls: still heard once
    finally:
        await owner.aclose()
        await elsewhere.aclose()
    assert heard == ["t1"]


async def test_a_stop_by_someone_else_marks_nothing_and_names_the_asker(engine, second_engine) -> None:
    owner, elsewhere = journal(engine, "host-a:1:x"), journal(second_engine, "host-b:2:y")
    try:
        await running(owner, "t1")
        by_turn = await elsewhere.request_stop(TEAM, OTHER_USER, turn_id="t1")
        by_thread = await elsewhere.request_stop(TEAM, OTHER_USER, thread=("C1", "1.0"))
        other_team = await elsewhere.request_stop("T0OTHER", USER, turn_id="t1")
        marked = await TurnStore(engine).stops_requested(owner=owner.owner)
    finally:
        await owner.aclose()
        await elsewhere.aclose()
    assert by_turn == by_thread == ("not_yours", USER)
    assert other_team == ("gone", None)  # another workspace's Stop finds nothing
    assert marked == set()


async def test_slacks_stop_in_a_thread_marks_the_askers_live_turn_there(engine, second_engine) -> None:
    owner, elsewhere = journal(engine, "host-a:1:x"), journal(second_engine, "host-b:2:y")
    try:
        await running(owner, "t1")
        await running(owner, "t2", thread_ts="2.0")
        outcome = await elsewhere.request_stop(TEAM, USER, thread=("C1", "2.0"))
        marked = await TurnStore(engine).stops_requested(owner=owner.owner)
    finally:
        await owner.aclose()
        await elsewhere.aclose()
    assert outcome == ("asked", None)
    assert marked == {"t2"}


async def test_an_ended_turn_or_a_parked_question_is_not_marked(engine, second_engine) -> None:
    owner, elsewhere = journal(engine, "host-a:1:x"), journal(second_engine, "host-b:2:y")
    store = TurnStore(engine)
    try:
        await running(owner, "done")
        await owner.end("done")
        await running(owner, "asking", thread_ts="2.0")
        now = datetime.now(UTC)
        await owner.suspend("asking", "q1", now + timedelta(minutes=5), {"sealed": "x"})
        async with engine.begin() as conn:  # its owner died; a sweeper parked it
            await conn.execute(sa.update(turns).where(turns.c.turn_id == "asking").values(owner=""))
        ended = await elsewhere.request_stop(TEAM, USER, turn_id="done")
        parked = await elsewhere.request_stop(TEAM, USER, turn_id="asking")
        taken = await store.take_question(
            "q1", owner="host-b:2:y", lease_until=now + timedelta(minutes=1), now=now
        )
        read = await store.read("asking")
    finally:
        await owner.aclose()
        await elsewhere.aclose()
    assert ended == ("gone", None)
    assert parked == ("parked", None)
    assert taken is not None
    assert read is not None
    async with engine.connect() as conn:
        stop_at = (await conn.execute(sa.select(turns.c.stop_requested_at))).scalars().all()
    assert stop_at == [None, None]


async def test_a_young_turn_is_not_looked_for_and_a_marked_one_taken_over_is_unmarked(
    engine, second_engine, monkeypatch
) -> None:
    monkeypatch.setattr(turn_journal, "STOP_POLL_S", 0.2)
    owner = journal(engine, "host-a:1:x")
    owner.on_stop_requested = lambda turn_id: None
    selects: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "mcp_turns" in statement:
            selects.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        for n in range(5):  # quick turns, each over before it is old enough to look for
            await running(owner, f"quick{n}")
            await owner.end(f"quick{n}")
            await asyncio.sleep(0.05)
        quick_selects = list(selects)
        await running(owner, "slow")
        with anyio.fail_after(WAIT_S):
            while not selects:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
        await owner.aclose()
    assert quick_selects == []
