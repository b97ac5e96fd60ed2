"""A turn's open question in the database, on SQLite and PostgreSQL: exactly one process takes
an answered question, an expired one only the asker's own timeout takes, and a turn whose
process died while it asked is parked (kept waiting) until its question expires."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.errors import TurnTakenOverError
from mcp_core.store._tables import turns
from mcp_core.store._turns import TurnRow

from .conftest import TEAM, USER
from .test_turn_journal import ELSEWHERE, expire_all, journal, row, second_engine

pytestmark = pytest.mark.anyio
__all__ = ["second_engine"]

SEALED = {"v": 1, "sealed": "opaque envelope"}


async def asking(engine: AsyncEngine, *, expires_in_s: float = 60.0, name: str = "asker"):
    """A turn of another host's process that waits on question ``q1``."""
    asker = journal(engine, owner=ELSEWHERE.format(name))
    asker.begin("t1", TEAM, USER, "C1", "1.0")
    await asker.suspend("t1", "q1", datetime.now(UTC) + timedelta(seconds=expires_in_s), SEALED)
    return asker


async def test_a_suspended_turn_holds_its_question_and_checkpoint_for_any_process(
    engine, second_engine
) -> None:
    await asking(engine)

    found = await journal(second_engine, owner=ELSEWHERE.format("b")).find_question("q1")

    assert found is not None
    assert (found.turn_id, found.state, found.question) == ("t1", "waiting", "q1")
    assert found.checkpoint == SEALED


async def test_many_clicks_at_once_on_two_processes_take_the_question_exactly_once(
    engine, second_engine
) -> None:
    await asking(engine)
    takers = [journal(e, owner=ELSEWHERE.format(f"p{n}")) for n, e in enumerate([engine, second_engine] * 4)]

    taken = await asyncio.gather(*(j.take_question("q1") for j in takers))

    winners = [(j.owner, t) for j, t in zip(takers, taken, strict=True) if t is not None]
    assert len(winners) == 1
    owner, turn = winners[0]
    stored, who, _ = await row(engine, "t1")
    assert who == owner
    assert (stored.state, stored.question) == ("running", None)
    assert turn.checkpoint == SEALED


async def test_an_expired_question_is_taken_only_by_the_askers_own_timeout(engine) -> None:
    asker = await asking(engine, expires_in_s=-1)
    other = journal(engine, owner=ELSEWHERE.format("b"))

    assert await other.take_question("q1") is None  # a late click elsewhere: no longer open
    assert await asker.take_own("t1", "q1", expired_ok=True)
    assert await other.take_question("q1", expired_ok=True) is None  # taken already


async def test_the_asker_learns_when_a_click_elsewhere_took_its_question(engine, second_engine) -> None:
    asker = await asking(engine)
    lost = asker.lost_signal("t1")
    assert await journal(second_engine, owner=ELSEWHERE.format("b")).take_question("q1") is not None

    assert not await asker.take_own("t1", "q1")
    assert lost.is_set()


async def test_suspending_a_turn_another_process_took_raises_taken_over(engine) -> None:
    asker = journal(engine, owner=ELSEWHERE.format("asker"))
    asker.begin("t1", TEAM, USER, "C1", "1.0")
    await asker.durable("t1")
    async with engine.begin() as conn:
        await conn.execute(sa.update(turns).values(owner=ELSEWHERE.format("thief")))

    with pytest.raises(TurnTakenOverError):
        await asker.suspend("t1", "q1", datetime.now(UTC) + timedelta(seconds=60), SEALED)


async def test_a_dead_askers_open_question_is_parked_not_closed_and_a_click_takes_it(engine) -> None:
    await asking(engine)
    await expire_all(engine)
    closed: list[str] = []
    sweeper = journal(engine, owner=ELSEWHERE.format("sweeper"))
    sweeper.questions_continue = True

    async def close(turn: TurnRow) -> None:
        closed.append(turn.turn_id)

    sweeper._on_orphan = close
    await sweeper.sweep()

    stored, who, lease = await row(engine, "t1")
    assert closed == []
    assert (who, stored.state, stored.question) == ("", "waiting", "q1")
    assert lease > datetime.now(UTC)  # leased until the question expires
    assert await sweeper.sweep() == 0  # parked: not claimed again
    assert await journal(engine, owner=ELSEWHERE.format("clicker")).take_question("q1") is not None


async def test_a_parked_question_that_expires_is_closed_by_the_next_sweep(engine) -> None:
    await asking(engine, expires_in_s=2.0)  # room for a slow first sweep on a busy machine
    await expire_all(engine)
    closed: list[str] = []
    sweeper = journal(engine, owner=ELSEWHERE.format("sweeper"))
    sweeper.questions_continue = True

    async def close(turn: TurnRow) -> None:
        closed.append(turn.turn_id)

    sweeper._on_orphan = close
    await sweeper.sweep()
    assert closed == []
    await asyncio.sleep(2.1)
    await sweeper.sweep()

    assert closed == ["t1"]
    assert (await row(engine, "t1"))[0].state == "closed"
