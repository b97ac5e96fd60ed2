"""Stopping a running turn: Slack's native Stop (agent sessions) and the progress message's Stop button.

Slack shows its own Stop button while an agent session is ``processing`` and sends
``agent_session_stopped`` (channel, thread_ts, the user who clicked) when it is clicked; where
streams or sessions are not available the progress message carries a Stop button instead.
Either sets the turn's ``stop`` event, and ``Agent.run`` does the rest (calls in flight
cancelled, the answer says how far it got).

Only the asker may stop a turn: a click by anyone else stops nothing and tells them so, only
them. ``TurnDesk`` holds this process's turns. Behind a load balancer, or over several Socket
Mode connections, a Stop may land on a process that is not running the turn: that process asks
the turn journal, which checks the asker against the turn's row and marks it; the process
running it hears that within about a second (``mcp_core.turn_journal.STOP_POLL_S``) and stops
it as if clicked there. A turn nobody runs because it waits for an Approve/Deny whose asker
died is not stopped from here: the person is told to press Deny, which ends it anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts
from bot._payload import first_action, owner
from bot.replies import privately
from mcp_core import errors
from mcp_core.turn_journal import TurnJournal

__all__ = ["STOP_ACTION", "RunningTurn", "TurnDesk", "register_stops"]

logger = logging.getLogger(__name__)

STOP_ACTION = "mcp_agent_stop"
"""action_id of the progress message's Stop button; its value is the turn's id."""
Outcome = Literal["stopped", "not_yours", "gone", "parked", "failed"]


@dataclass
class RunningTurn:
    """One turn being answered in this process, and the event that stops it."""

    team_id: str
    user_id: str
    channel: str
    thread_ts: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class TurnDesk:
    """The turns running in this process, by id."""

    def __init__(self) -> None:
        self._turns: dict[str, RunningTurn] = {}

    @contextmanager
    def running(
        self, team_id: str, user_id: str, channel: str, thread_ts: str, *, turn_id: str | None = None
    ) -> Iterator[RunningTurn]:
        """The turn, findable by a Stop for as long as the block runs. ``turn_id``: a turn
        that began on another process and goes on here keeps its id (its Stop button's value)."""
        turn = RunningTurn(team_id, user_id, channel, thread_ts)
        if turn_id is not None:
            turn.id = turn_id
        self._turns[turn.id] = turn
        try:
            yield turn
        finally:
            self._turns.pop(turn.id, None)

    def stop(self, turn_id: str, team_id: str, user_id: str) -> Outcome:
        """A Stop button's click: stops the turn when the clicker asked it."""
        turn = self._turns.get(turn_id)
        if turn is None:
            return "gone"
        if (turn.team_id, turn.user_id) != (team_id, user_id):
            return "not_yours"
        turn.stop.set()
        return "stopped"

    def stop_requested(self, turn_id: str) -> None:
        """A Stop another process checked (the journal's ``on_stop_requested``)."""
        if (turn := self._turns.get(turn_id)) is not None:
            turn.stop.set()

    def stop_thread(self, team_id: str, user_id: str, channel: str, thread_ts: str) -> Outcome:
        """Slack's Stop in a thread: stops the clicker's turns running there."""
        here = [
            t
            for t in self._turns.values()
            if (t.team_id, t.channel, t.thread_ts) == (team_id, channel, thread_ts)
        ]
        mine = [t for t in here if t.user_id == user_id]
        for turn in mine:
            turn.stop.set()
        if mine:
            return "stopped"
        return "not_yours" if here else "gone"

    def asker(self, team_id: str, channel: str, thread_ts: str) -> str | None:
        """Who asked a turn running in that thread (for telling someone else it is theirs)."""
        return next(
            (
                t.user_id
                for t in self._turns.values()
                if (t.team_id, t.channel, t.thread_ts) == (team_id, channel, thread_ts)
            ),
            None,
        )


async def _elsewhere(
    journal: TurnJournal | None,
    team_id: str,
    user_id: str,
    *,
    turn_id: str | None = None,
    thread: tuple[str, str] | None = None,
) -> tuple[Outcome, str | None]:
    """A Stop for a turn this process is not running, asked of whichever process runs it."""
    if journal is None:
        return "gone", None
    try:
        outcome, asker = await journal.request_stop(team_id, user_id, turn_id=turn_id, thread=thread)
    except errors.McpCoreError as exc:
        logger.warning("could not ask for a Stop on another process: %s", exc)
        return "failed", None
    return ("stopped" if outcome == "asked" else outcome), asker


def register_stops(
    app: AsyncApp, desk: TurnDesk, client: AsyncWebClient, journal: TurnJournal | None = None
) -> None:
    """Add the listeners of Slack's Stop (``agent_session_stopped``) and the Stop button;
    ``journal`` (None: one process, no journal) carries Stops to other processes' turns."""
    if journal is not None:
        journal.on_stop_requested = desk.stop_requested

    @app.event("agent_session_stopped")
    async def on_session_stopped(event: dict[str, Any], body: dict[str, Any]) -> None:
        team_id, user_id, channel, thread_ts = (
            body.get("team_id"),
            event.get("user"),
            event.get("channel"),
            event.get("thread_ts"),
        )
        if not all(isinstance(v, str) and v for v in (team_id, user_id, channel, thread_ts)):
            logger.info("ignored an agent_session_stopped event without team, user, channel or thread")
            return
        outcome = desk.stop_thread(str(team_id), str(user_id), str(channel), str(thread_ts))
        asker = desk.asker(str(team_id), str(channel), str(thread_ts))
        if outcome == "gone":
            thread = (str(channel), str(thread_ts))
            outcome, asker = await _elsewhere(journal, str(team_id), str(user_id), thread=thread)
        if outcome in ("not_yours", "parked", "failed"):
            said = texts.stop_not_yours(asker or "") if outcome == "not_yours" else _SAID[outcome]
            try:
                await client.chat_postEphemeral(
                    channel=str(channel), user=str(user_id), text=said, thread_ts=str(thread_ts)
                )
            except SlackApiError as exc:
                logger.info("could not answer the Stop of %s: %s", user_id, exc.response.get("error"))
        elif outcome == "gone":
            logger.info("agent_session_stopped for a turn no process is running")

    @app.action(STOP_ACTION)
    async def on_stop(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        try:
            team_id, user_id = owner(body)
        except errors.McpCoreError:
            return
        action = first_action(body)
        value = action.get("value")
        turn_id = value if isinstance(value, str) else ""
        outcome = desk.stop(turn_id, team_id, user_id)
        if outcome == "gone" and turn_id:
            outcome, _ = await _elsewhere(journal, team_id, user_id, turn_id=turn_id)
        if outcome != "stopped":
            await privately(respond, _SAID[outcome])


_SAID: dict[Outcome, str] = {
    "not_yours": texts.STOP_NOT_YOURS,
    "gone": texts.STOP_GONE,
    "parked": texts.STOP_PARKED,
    "failed": texts.STOP_FAILED,
}
