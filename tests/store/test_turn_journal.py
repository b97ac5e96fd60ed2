"""The turn journal on SQLite and PostgreSQL: leases renewed, orphans claimed exactly once,
ended turns never claimed, a lost turn sends nothing more, a drain closes or releases."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core import turn_journal
from mcp_core.agent import ToolCall, ToolProgress
from mcp_core.errors import TurnTakenOverError
from mcp_core.store import create_engine
from mcp_core.store._tables import turns
from mcp_core.store._turns import TurnRow, TurnStore
from mcp_core.turn_journal import TurnJournal

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

ELSEWHERE = "another-host:4242:{}"
"""An owner on another host: only its lease says whether it is alive."""
WAIT_S = 10.0


def journal(engine: AsyncEngine, *, owner: str | None = None, lease_s: float = 30.0, **kw) -> TurnJournal:
    return TurnJournal(TurnStore(engine), lease_s=lease_s, owner=owner, **kw)


async def row(engine: AsyncEngine, turn_id: str) -> tuple[TurnRow, str, datetime]:
    found = await TurnStore(engine).read(turn_id)
    assert found is not None, turn_id
    return found


async def expire_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.update(turns).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))


async def until(predicate, timeout_s: float = WAIT_S) -> None:
    """Poll the database (another process's writes have no event to wait on)."""
    with anyio.fail_after(timeout_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def second_engine(database_url: str, engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The same database through its own engine: another process's view."""
    other = create_engine(database_url)
    yield other
    await other.dispose()


async def test_a_started_call_is_in_the_database_when_call_started_returns(engine) -> None:
    owner = journal(engine, owner=ELSEWHERE.format("a"))
    owner.begin("t1", TEAM, USER, "C1", "1.0")
    owner.own_message("t1", "1.5")
    owner.call_asked("t1", 0, "toy__echo")
    owner.call_asked("t1", 1, "toy__slow")

    await owner.call_started("t1", 1, "toy__slow")

    turn, who, lease = await row(engine, "t1")
    assert (turn.team_id, turn.user_id, turn.channel_id, turn.thread_ts) == (TEAM, USER, "C1", "1.0")
    assert who == owner.owner
    assert turn.state == "running"
    assert turn.messages == ["1.5"]
    assert [(c.name, c.started, c.finished) for c in turn.calls] == [
        ("toy__echo", False, False),
        ("toy__slow", True, False),
    ]
    assert lease > datetime.now(UTC) + timedelta(seconds=20)
    await owner.aclose()


async def test_a_begun_turn_is_in_the_database_when_durable_returns(engine) -> None:
    """Before a turn posts anything: a message without a row could never be closed."""
    owner = journal(engine)
    owner.begin("t1", TEAM, USER, "C1", "1.0")

    await owner.durable("t1")

    turn, who, _ = await row(engine, "t1")
    assert (turn.channel_id, turn.thread_ts, turn.state, who) == ("C1", "1.0", "running", owner.owner)
    await owner.aclose()


async def test_a_posted_message_is_written_before_the_flush_interval(engine, monkeypatch) -> None:
    monkeypatch.setattr(turn_journal, "FLUSH_INTERVAL_S", 3600.0)
    owner = journal(engine)
    owner.begin("t1", TEAM, USER, "C1", "1.0")
    await owner.durable("t1")
    owner.own_message("t1", "1.5")

    async def written() -> bool:
        found = await TurnStore(engine).read("t1")
        return found is not None and found[0].messages == ["1.5"]

    await until(written)
    await owner.aclose()


async def test_changes_that_need_not_be_durable_are_written_in_the_background(engine) -> None:
    owner = journal(engine)
    owner.begin("t1", TEAM, USER, "C1", "1.0")
    owner.waiting("t1")

    async def written() -> bool:
        found = await TurnStore(engine).read("t1")
        return found is not None and found[0].state == "waiting"

    await until(written)
    await owner.aclose()


async def test_the_heartbeat_renews_every_live_lease_so_no_sweeper_claims_them(engine, second_engine) -> None:
    owner = journal(engine, owner=ELSEWHERE.format("a"), lease_s=0.6)
    sweeper = journal(second_engine, owner=ELSEWHERE.format("b"), lease_s=0.6)
    owner.begin("t1", TEAM, USER, "C1", "1.0")
    owner.begin("t2", TEAM, USER, "C1", "2.0")
    await owner.call_started("t1", 0, "toy__slow")
    first = (await row(engine, "t1"))[2]

    async def renewed() -> bool:
        return (await row(engine, "t1"))[2] > first + timedelta(seconds=0.1)

    await until(renewed)
    await asyncio.sleep(0.8)  # longer than the lease: only renewals keep it
    assert await sweeper.sweep() == 0
    await owner.aclose()
    await sweeper.aclose()


async def test_two_sweepers_at_once_close_every_orphan_exactly_once(engine, second_engine) -> None:
    dead = journal(engine, owner=ELSEWHERE.format("dead"))
    for n in range(45):
        dead.begin(f"t{n}", TEAM, USER, "C1", f"{n}.0")
    await dead.call_started("t0", 0, "toy__slow")  # writes every begun turn
    await dead.aclose()
    await expire_all(engine)
    closed: list[tuple[str, str]] = []

    def sweeper(on: AsyncEngine, name: str) -> TurnJournal:
        j = journal(on, owner=ELSEWHERE.format(name))

        async def close(turn: TurnRow) -> None:
            closed.append((turn.turn_id, name))
            await asyncio.sleep(0)  # let the other sweeper run meanwhile

        j._on_orphan = close
        return j

    a, b = sweeper(engine, "a"), sweeper(second_engine, "b")
    await asyncio.gather(*(j.sweep() for _ in range(4) for j in (a, b)))

    assert sorted(t for t, _ in closed) == sorted(f"t{n}" for n in range(45))
    assert len({t for t, _ in closed}) == len(closed)
    assert {(await row(engine, t))[0].state for t, _ in closed} == {"closed"}
    assert await a.sweep() == 0
    assert await b.sweep() == 0


async def test_an_ended_turn_is_never_claimed_even_once_its_lease_is_old(engine) -> None:
    owner = journal(engine, owner=ELSEWHERE.format("a"))
    owner.begin("t1", TEAM, USER, "C1", "1.0")
    await owner.call_started("t1", 0, "toy__echo")
    owner.call_finished("t1", 0, "toy__echo")
    await owner.end("t1")
    await owner.aclose()
    await expire_all(engine)

    assert (await row(engine, "t1"))[0].state == "done"
    assert await journal(engine, owner=ELSEWHERE.format("b")).sweep() == 0


async def test_a_turn_another_process_took_over_sends_no_further_call(engine, second_engine) -> None:
    owner = journal(engine, owner=ELSEWHERE.format("a"))
    owner.begin("t1", TEAM, USER, "C1", "1.0")
    await owner.call_started("t1", 0, "toy__echo")
    await expire_all(engine)  # as if the database had been out of reach for a whole lease
    taker = journal(second_engine, owner=ELSEWHERE.format("b"))
    assert await taker.sweep() == 1

    with pytest.raises(TurnTakenOverError):
        await owner.call_started("t1", 1, "toy__slow")

    turn, who, _ = await row(engine, "t1")
    assert who == taker.owner
    assert turn.state == "closed"
    assert [c.name for c in turn.calls] == ["toy__echo"]
    await owner.aclose()


async def test_a_dead_process_of_this_host_has_its_turns_claimed_before_their_lease_ends(engine) -> None:
    async with await anyio.open_process([sys.executable, "-c", "pass"]) as gone:
        await gone.wait()  # reaped: its pid names no process now
    dead_owner = f"{socket.gethostname()}:{gone.pid}:beef"
    alive_owner = f"{socket.gethostname()}:{os.getppid()}:cafe"
    for owner, turn_id in ((dead_owner, "t-dead"), (alive_owner, "t-alive")):
        j = journal(engine, owner=owner)
        j.begin(turn_id, TEAM, USER, "C1", "1.0")
        await j.call_started(turn_id, 0, "toy__slow")
        await j.aclose()
    closed: list[str] = []
    sweeper = journal(engine)

    async def close(turn: TurnRow) -> None:
        closed.append(turn.turn_id)

    sweeper._on_orphan = close
    assert await sweeper.sweep() == 1
    assert closed == ["t-dead"]
    assert [c.started for c in (await row(engine, "t-dead"))[0].calls] == [True]


async def test_a_drain_lets_a_quick_turn_end_and_closes_a_long_one_itself_when_alone(engine) -> None:
    closed: list[TurnRow] = []

    async def close(turn: TurnRow) -> None:
        closed.append(turn)

    alone = journal(engine, sole_process=True)
    alone.start_sweeping(close)

    async def turn(turn_id: str, seconds: float) -> None:
        alone.begin(turn_id, TEAM, USER, "C1", turn_id)
        alone.own_message(turn_id, f"{turn_id}.1")
        await alone.call_started(turn_id, 0, "toy__slow")
        await asyncio.sleep(seconds)
        alone.call_finished(turn_id, 0, "toy__slow")
        await alone.end(turn_id)

    quick = asyncio.create_task(turn("quick", 0.2))
    long = asyncio.create_task(turn("long", 60))
    await asyncio.sleep(0.1)
    await alone.drain(1.0)

    assert quick.done()
    assert not quick.cancelled()
    assert long.cancelled()
    assert alone.draining
    assert [(t.turn_id, t.messages, [(c.started, c.finished) for c in t.calls]) for t in closed] == [
        ("long", ["long.1"], [(True, False)])
    ]
    assert (await row(engine, "quick"))[0].state == "done"
    assert (await row(engine, "long"))[0].state == "closed"
    await alone.aclose()


async def test_a_drain_with_other_processes_releases_the_unfinished_turn_for_their_sweeper(
    engine, second_engine
) -> None:
    leaving = journal(engine, owner=ELSEWHERE.format("a"))

    async def long_turn() -> None:
        leaving.begin("long", TEAM, USER, "C1", "1.0")
        await leaving.call_started("long", 0, "toy__slow")
        await asyncio.sleep(60)

    task = asyncio.create_task(long_turn())
    await asyncio.sleep(0.2)
    await leaving.drain(0.1)
    await leaving.aclose()

    assert task.cancelled()
    assert (await row(engine, "long"))[0].state == "running"
    assert await journal(second_engine, owner=ELSEWHERE.format("b")).sweep() == 1


async def test_a_call_running_as_a_task_has_its_task_id_kept_with_the_turn(engine) -> None:
    """A takeover reads it to say the call may still be running on its server. Written soon
    after the call's durable start, not with the next heartbeat (here 1000 s away)."""
    owner = journal(engine, lease_s=3000.0)
    owner.begin("t1", TEAM, USER, "C1", "1.0")
    shown: list[str] = []

    async def show(progress: ToolProgress) -> None:
        shown.append(progress.state)

    journaled = owner.progress("t1", show)
    call = ToolCall(id="c1", name="everything__research", arguments={}, entry=None)
    await journaled(ToolProgress(call, "pending"))
    await journaled(ToolProgress(call, "running"))
    await journaled(ToolProgress(call, "running", note="task working", task_id="task-7"))

    async def written() -> bool:
        found = await TurnStore(engine).read("t1")
        return found is not None and [c.task for c in found[0].calls] == ["task-7"]

    await until(written)
    turn, _, _ = await row(engine, "t1")
    assert (turn.calls[0].started, turn.calls[0].finished) == (True, False)
    assert shown == ["pending", "running", "running"]
    await owner.aclose()


async def test_a_turn_its_handler_follows_stays_leased_here_until_the_follow_ends(engine) -> None:
    """A handler that hands back a Follow (a task to follow) keeps the turn live as the
    sweeper's own: renewed like any other, done when the follow ends, never closed under it."""
    dead = journal(engine, owner=ELSEWHERE.format("dead"))
    dead.begin("t1", TEAM, USER, "C1", "1.0")
    await dead.call_started("t1", 0, "keeper__research")
    await dead.aclose()
    await expire_all(engine)
    follower = journal(engine, owner=ELSEWHERE.format("b"))
    release = asyncio.Event()
    seen: list[str] = []

    async def follow() -> None:
        seen.append((await row(engine, "t1"))[0].state)
        await release.wait()
        follower.call_finished("t1", 0, "keeper__research")
        await follower.durable("t1")

    async def close(turn: TurnRow):
        turn.calls[0].followed = True
        return follow

    follower._on_orphan = close
    assert await follower.sweep() == 1
    await until(lambda: _true(seen))
    during, owner_during, _ = await row(engine, "t1")
    release.set()

    async def ended() -> bool:
        return (await row(engine, "t1"))[0].state == "done"

    await until(ended)
    assert seen == ["running"]
    assert (owner_during, during.calls[0].followed) == (follower.owner, True)
    assert (await row(engine, "t1"))[0].calls[0].finished
    assert await follower.sweep() == 0
    await follower.aclose()


async def test_a_followed_turn_of_a_process_that_stops_is_left_for_the_next_one(
    engine, second_engine
) -> None:
    dead = journal(engine, owner=ELSEWHERE.format("dead"))
    dead.begin("t1", TEAM, USER, "C1", "1.0")
    await dead.call_started("t1", 0, "keeper__research")
    await dead.aclose()
    await expire_all(engine)
    follower = journal(engine, owner=ELSEWHERE.format("b"))
    handed: list[tuple[str, bool]] = []

    def handler(name: str):
        async def close(turn: TurnRow):
            handed.append((name, turn.calls[0].followed))
            turn.calls[0].followed = True

            async def follow() -> None:
                await asyncio.sleep(60)

            return follow

        return close

    follower._on_orphan = handler("b")
    assert await follower.sweep() == 1
    await asyncio.sleep(0.2)
    await follower.aclose()  # cancels the follow: released, not done
    turn, _, lease = await row(engine, "t1")
    nxt = journal(second_engine, owner=ELSEWHERE.format("c"))
    nxt._on_orphan = handler("c")

    assert turn.state == "running"
    assert lease <= datetime.now(UTC)
    assert await nxt.sweep() == 1
    assert handed == [("b", False), ("c", True)]  # the next one knows the thread was told
    await nxt.aclose()


async def _true(items: list[str]) -> bool:
    return bool(items)
