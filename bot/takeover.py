"""Closing a turn whose process died, in its thread: the handler the turn journal's sweeper
calls for each turn it claimed (``mcp_core.turn_journal``).

Each message the turn owned (its progress message, its streamed messages) stops saying
"Thinking…": a stream the dead process left open is stopped first (``chat.stopStream``; an
already stopped, expired or plain message just answers an error), then the message is edited
into :data:`bot.texts.INTERRUPTED` (``chat.update`` works on a stopped streamed message too).
Then one message in the thread says which calls ran, which may have run (sent, no answer seen)
and which did not, and to ask again — nothing is run again, and a question that was waiting
for an answer is said to have expired (its buttons find no turn any more). The thread's status
line is cleared and, for an agent app, its agent session is closed, so Slack's Stop button and
"is thinking…" do not outlive the turn. Every Slack call is best effort: a refusal is logged,
and the turn is closed all the same.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts
from bot.turn_display import SLACK_FAILURES, slack_error
from mcp_core.metrics import Metrics
from mcp_core.turn_journal import TurnRow

__all__ = ["closing_text", "interrupted_turns"]

logger = logging.getLogger(__name__)


def closing_text(turn: TurnRow) -> str:
    """The thread's message for ``turn``, from its journaled calls."""
    ran = [c.name for c in turn.calls if c.started and c.finished]
    maybe = [c.name for c in turn.calls if c.started and not c.finished]
    not_run = [c.name for c in turn.calls if not c.started]
    tasks = [c.name for c in turn.calls if c.started and not c.finished and c.task]
    return texts.interrupted(ran, maybe, not_run, waiting=turn.state == "waiting", tasks=tasks)


def interrupted_turns(
    client: AsyncWebClient, metrics: Metrics | None = None, *, sessions: bool = True
) -> Callable[[TurnRow], Awaitable[None]]:
    """The sweeper's handler: closes each turn it is given in Slack, with ``client``
    (``sessions``: the bot uses agent sessions, ``SLACK_AGENT_SESSIONS``)."""

    async def close(turn: TurnRow) -> None:
        if metrics is not None:
            metrics.turn_taken_over(waiting=turn.state == "waiting")
        edited = [SectionBlock(text=MarkdownTextObject(text=texts.INTERRUPTED)).to_dict()]
        for ts in turn.messages:
            with contextlib.suppress(*SLACK_FAILURES):  # not streaming (any more): the edit is enough
                await client.chat_stopStream(channel=turn.channel_id, ts=ts)
            try:
                await client.chat_update(
                    channel=turn.channel_id, ts=ts, text=texts.INTERRUPTED, blocks=edited
                )
            except SLACK_FAILURES as exc:
                logger.info("could not edit message %s of turn %s: %s", ts, turn.turn_id, slack_error(exc))
        try:
            await client.chat_postMessage(
                channel=turn.channel_id, thread_ts=turn.thread_ts, text=closing_text(turn)
            )
        except SLACK_FAILURES as exc:
            logger.info("could not tell thread %s it was interrupted: %s", turn.thread_ts, slack_error(exc))
        await _end_thread_status(client, turn, sessions=sessions)

    return close


async def _end_thread_status(client: AsyncWebClient, turn: TurnRow, *, sessions: bool) -> None:
    """No status line and no open agent session left by the dead process (a workspace that
    never allowed them just refuses, quietly)."""
    with contextlib.suppress(*SLACK_FAILURES):
        await client.assistant_threads_setStatus(
            channel_id=turn.channel_id, thread_ts=turn.thread_ts, status=""
        )
    if sessions:
        try:
            await client.agents_sessions_setStatus(
                channel_id=turn.channel_id,
                thread_ts=turn.thread_ts,
                status="closed",
                initiator_user_id=turn.user_id,
            )
        except SLACK_FAILURES as exc:
            logger.debug("could not close the agent session of %s: %s", turn.thread_ts, slack_error(exc))
