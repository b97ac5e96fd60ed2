"""The SQL of the turn journal (``mcp_turns``): snapshots written by the owner, one-statement
lease renewal, and the sweeper's exclusive claim of turns whose owner is gone.

Every write of an owner is conditional on still owning a live row (``owner = :me AND state IN
('running', 'waiting')``), so a process that lost its turn to a sweeper (its lease ran out)
can neither resurrect nor overwrite it. The claim is one statement on both databases:
PostgreSQL locks the expired rows it takes with ``FOR UPDATE SKIP LOCKED`` (a concurrent
sweeper skips them, and re-checks the lease of rows another claim just committed); SQLite runs
the same UPDATE … RETURNING under ``BEGIN IMMEDIATE``, which admits one writer at a time.
Times are the processes' own clocks (UTC): hosts sharing a database must agree within a few
seconds (NTP), which the lease (30 s by default) leaves room for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.store._engine import check_engine, transaction, writer
from mcp_core.store._tables import turns

__all__ = ["LIVE_STATES", "StopOutcome", "TurnCall", "TurnRow", "TurnStore"]

TurnState = Literal["running", "waiting", "done", "closed"]
StopOutcome = Literal["asked", "not_yours", "gone", "parked"]
"""What a Stop for a turn another process may run found: its owner was asked to stop it; it
is someone else's; there is no live turn; it waits for an answer with nobody running it."""
LIVE_STATES = ("running", "waiting")
"""States of a turn someone must still finish (its owner, or a sweeper after it)."""


@dataclass
class TurnCall:
    """One tool call of a turn: its catalog name, whether it was sent, whether it ended, the id
    of the MCP task the server runs it as (if it does), and whether a process that took the
    turn over follows that task (its thread was told the result will come)."""

    name: str
    started: bool = False
    finished: bool = False
    task: str | None = None
    followed: bool = False

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "started": self.started, "finished": self.finished}
        if self.task is not None:
            data["task"] = self.task
        if self.followed:
            data["followed"] = True
        return data

    @classmethod
    def from_json(cls, value: Any) -> TurnCall:
        """Read back leniently: a row is ours, but a hand-edited one must not stop a sweep."""
        value = value if isinstance(value, dict) else {}
        task = value.get("task")
        return cls(
            str(value.get("name", "?")),
            value.get("started") is True,
            value.get("finished") is True,
            task[:200] if isinstance(task, str) and task else None,
            value.get("followed") is True,
        )


@dataclass
class TurnRow:
    """A turn as the journal holds it: where it is in Slack, its state and what it owns."""

    turn_id: str
    team_id: str
    user_id: str
    channel_id: str
    thread_ts: str
    state: TurnState = "running"
    messages: list[str] = field(default_factory=list)
    calls: list[TurnCall] = field(default_factory=list)
    question: str | None = None
    """The id the buttons of its open Approve/Deny question carry, while it waits."""
    question_expires_at: datetime | None = None
    checkpoint: Any = None
    """Where it stands, sealed (``mcp_core.turn_checkpoint``); read, never written, by ``save``."""
    progress: Any = None
    """Where it stands as of its last model round, sealed, until written: ``save`` writes it
    into the same column when set (the owner's in-memory row; never read back)."""


class TurnStore:
    """Reads and writes of ``mcp_turns`` on a borrowed engine (one transaction per method).

    Raises (every method):
        StoreError: the database failed.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        check_engine(engine)
        self._engine = engine
        self._writer = writer(engine)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def save(
        self, rows: Sequence[TurnRow], *, owner: str, lease_until: datetime, now: datetime
    ) -> set[str]:
        """Write each row whole (insert, or update while ``owner`` still holds it live); return
        the ids that were refused because the turn is no longer ``owner``'s live turn."""
        refused: set[str] = set()
        async with transaction(self._writer) as conn:
            for row in rows:
                values = {
                    "state": row.state,
                    "messages": list(row.messages),
                    "calls": [call.as_json() for call in row.calls],
                    "lease_until": lease_until,
                    "updated_at": now,
                }
                if row.progress is not None:
                    values["checkpoint"] = row.progress
                insert = self._insert(turns).values(
                    turn_id=row.turn_id,
                    team_id=row.team_id,
                    user_id=row.user_id,
                    channel_id=row.channel_id,
                    thread_ts=row.thread_ts,
                    owner=owner,
                    created_at=now,
                    **values,
                )
                upsert = insert.on_conflict_do_update(
                    index_elements=[turns.c.turn_id],
                    set_=values,
                    where=_held_by(owner),
                ).returning(turns.c.turn_id)
                if (await conn.execute(upsert)).first() is None:
                    refused.add(row.turn_id)
        return refused

    async def renew(self, *, owner: str, lease_until: datetime) -> set[str]:
        """Every live turn ``owner`` holds gets the new lease, in one statement; the ids of
        those (a turn missing from them was taken by another process)."""
        update = (
            sa.update(turns).where(_held_by(owner)).values(lease_until=lease_until).returning(turns.c.turn_id)
        )
        async with transaction(self._writer) as conn:
            return set((await conn.execute(update)).scalars())

    async def request_stop(
        self,
        team_id: str,
        user_id: str,
        *,
        now: datetime,
        turn_id: str | None = None,
        thread: tuple[str, str] | None = None,
    ) -> tuple[StopOutcome, str | None]:
        """A Stop by ``user_id`` for the live turn ``turn_id`` of ``team_id``, or for their live
        turns in ``thread`` (channel, thread_ts): each one someone runs is marked for its
        owner to stop. Returns the outcome and, when the turn is not theirs, who asked it."""
        t = turns.c
        where = sa.and_(t.team_id == team_id, t.state.in_(LIVE_STATES))
        if turn_id is not None:
            where = sa.and_(where, t.turn_id == turn_id)
        elif thread is not None:
            where = sa.and_(where, t.channel_id == thread[0], t.thread_ts == thread[1])
        else:
            raise ValueError("request_stop needs a turn id or a thread")
        async with transaction(self._writer) as conn:
            found = (await conn.execute(sa.select(t.turn_id, t.user_id, t.owner).where(where))).all()
            mine = [row for row in found if row.user_id == user_id]
            if not found:
                return "gone", None
            if not mine:
                return "not_yours", found[0].user_id
            run = [row.turn_id for row in mine if row.owner != ""]
            if not run:
                return "parked", None
            mark = (
                sa.update(turns).where(where, t.turn_id.in_(run), t.owner != "").values(stop_requested_at=now)
            )
            asked = (await conn.execute(mark)).rowcount
        return ("asked" if asked else "gone"), None  # none: they ended meanwhile

    async def stops_requested(self, *, owner: str) -> set[str]:
        """The live turns of ``owner`` that a Stop on another process asked to stop."""
        query = sa.select(turns.c.turn_id).where(_held_by(owner), turns.c.stop_requested_at.is_not(None))
        async with transaction(self._engine) as conn:
            return set((await conn.execute(query)).scalars())

    async def suspend(
        self,
        turn_id: str,
        *,
        owner: str,
        question: str,
        expires_at: datetime,
        checkpoint: Any,
        now: datetime,
    ) -> bool:
        """``owner``'s turn waits for an answer to ``question`` until ``expires_at``, from
        ``checkpoint`` (sealed); False if ``owner`` no longer holds it."""
        update = (
            sa.update(turns)
            .where(turns.c.turn_id == turn_id, _held_by(owner))
            .values(
                state="waiting",
                question=question,
                question_expires_at=expires_at,
                checkpoint=checkpoint,
                updated_at=now,
            )
        )
        async with transaction(self._writer) as conn:
            return (await conn.execute(update)).rowcount == 1

    async def find_question(self, question: str) -> TurnRow | None:
        """The waiting turn whose open question is ``question`` (answered or not, expired or not)."""
        query = sa.select(turns).where(turns.c.question == question, turns.c.state == "waiting")
        async with transaction(self._engine) as conn:
            found = (await conn.execute(query)).mappings().first()
        return None if found is None else _row(found)

    async def take_question(
        self, question: str, *, owner: str, lease_until: datetime, now: datetime, expired_ok: bool = False
    ) -> TurnRow | None:
        """Answer ``question``: its turn becomes ``owner``'s running turn, whoever held it (its
        asker's process, a parked row, a live process elsewhere). Exactly one taker gets it:
        the UPDATE's condition is the open question itself. ``expired_ok``: also after its
        expiry (the asking process's own timeout). Returns the turn with its checkpoint."""
        t = turns.c
        condition = sa.and_(t.question == question, t.state == "waiting")
        if not expired_ok:
            condition = sa.and_(condition, t.question_expires_at > now)
        take = (
            sa.update(turns)
            .where(condition)
            .values(
                owner=owner,
                lease_until=lease_until,
                state="running",
                question=None,
                question_expires_at=None,
                stop_requested_at=None,  # the answer is the person's latest word
                updated_at=now,
            )
            .returning(*turns.c)
        )
        async with transaction(self._writer) as conn:
            found = (await conn.execute(take)).mappings().first()
        return None if found is None else _row(found)

    async def park(self, turn_id: str, *, owner: str, now: datetime) -> bool:
        """A claimed turn whose owner died while it waited keeps waiting: nobody's (owner
        ``''``), its lease until the question expires — a click takes it, or the next sweep
        after the expiry closes it. False (not parked) if it has no open question."""
        t = turns.c
        update = (
            sa.update(turns)
            .where(
                t.turn_id == turn_id,
                _held_by(owner),
                t.question.is_not(None),
                t.checkpoint.is_not(None),
                t.question_expires_at > now,
            )
            .values(owner="", lease_until=t.question_expires_at, state="waiting", updated_at=now)
        )
        async with transaction(self._writer) as conn:
            return (await conn.execute(update)).rowcount == 1

    async def release(self, *, owner: str, now: datetime, turn_ids: Sequence[str] | None = None) -> int:
        """``owner``'s live turns (or those of ``turn_ids``) expire now, for a sweeper to close."""
        update = sa.update(turns).where(_held_by(owner)).values(lease_until=now, updated_at=now)
        if turn_ids is not None:
            update = update.where(turns.c.turn_id.in_(list(turn_ids)))
        async with transaction(self._writer) as conn:
            return (await conn.execute(update)).rowcount

    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        dead_owners: Sequence[str] = (),
    ) -> list[TurnRow]:
        """Take up to ``limit`` live turns whose lease expired (or whose owner is one of
        ``dead_owners``), making ``owner`` theirs: exactly one claimer gets each."""
        t = turns.c
        orphaned = t.lease_until <= now
        if dead_owners:
            orphaned = sa.or_(orphaned, t.owner.in_(list(dead_owners)))
        expired = (
            sa.select(t.turn_id)
            .where(t.state.in_(LIVE_STATES), orphaned, t.owner != owner)
            .order_by(t.lease_until)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            sa.update(turns)
            .where(t.turn_id.in_(expired.scalar_subquery()))
            .values(owner=owner, lease_until=lease_until, updated_at=now)
            .returning(*turns.c)
        )
        async with transaction(self._writer) as conn:
            found = (await conn.execute(claim)).mappings().all()
        return [_row(r) for r in found]

    async def own_expired(self, *, owner: str, now: datetime) -> list[TurnRow]:
        """``owner``'s own live turns whose lease it let run out (released at shutdown)."""
        query = sa.select(turns).where(_held_by(owner), turns.c.lease_until <= now)
        async with transaction(self._engine) as conn:
            return [_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def live_owners(self) -> list[str]:
        """The owners holding live turns (to find the dead ones among this host's)."""
        query = sa.select(turns.c.owner).where(turns.c.state.in_(LIVE_STATES)).distinct()
        async with transaction(self._engine) as conn:
            return list((await conn.execute(query)).scalars())

    async def finish(self, turn_id: str, *, owner: str, state: TurnState, now: datetime) -> bool:
        """The turn ends as ``state`` (``done`` or ``closed``) if ``owner`` still holds it."""
        update = (
            sa.update(turns)
            .where(turns.c.turn_id == turn_id, _held_by(owner))
            .values(state=state, question=None, checkpoint=None, updated_at=now)
        )
        async with transaction(self._writer) as conn:
            return (await conn.execute(update)).rowcount == 1

    async def purge(self, *, before: datetime) -> int:
        """Forget ended turns last written before ``before``."""
        delete = sa.delete(turns).where(turns.c.state.in_(("done", "closed")), turns.c.updated_at < before)
        async with transaction(self._writer) as conn:
            return (await conn.execute(delete)).rowcount

    async def read(self, turn_id: str) -> tuple[TurnRow, str, datetime] | None:
        """One turn, its owner and lease (for tests and operators)."""
        query = sa.select(turns).where(turns.c.turn_id == turn_id)
        async with transaction(self._engine) as conn:
            found = (await conn.execute(query)).mappings().first()
        return None if found is None else (_row(found), found["owner"], found["lease_until"])


def _held_by(owner: str) -> sa.ColumnElement[bool]:
    return sa.and_(turns.c.owner == owner, turns.c.state.in_(LIVE_STATES))


def _row(found: Any) -> TurnRow:
    messages = found["messages"] if isinstance(found["messages"], list) else []
    calls = found["calls"] if isinstance(found["calls"], list) else []
    return TurnRow(
        turn_id=found["turn_id"],
        team_id=found["team_id"],
        user_id=found["user_id"],
        channel_id=found["channel_id"],
        thread_ts=found["thread_ts"],
        state=found["state"],
        messages=[str(ts) for ts in messages],
        calls=[TurnCall.from_json(call) for call in calls],
        question=found.get("question"),
        question_expires_at=found.get("question_expires_at"),
        checkpoint=found.get("checkpoint"),
    )
