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

A call its remote server was running as an MCP task is followed instead of given up: the
message says its result will come, the handler hands the journal a ``Follow`` that gets the
task's result on this process's own session (``ToolRegistry.follow_task``) and posts it in the
thread (the server's words, inert), or says why it could not. The journal keeps such a turn
leased, so if this process dies too the next one follows it, without telling the thread again.
That message carries the asker's Stop button: a Stop, on whatever process it lands, reaches
the follower through the journal, which asks the server to cancel each followed task.
A local (stdio) server's task died with the process that ran it: the message says so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts
from bot.turn_display import SLACK_FAILURES, slack_error
from bot.views import agent_working
from mcp_core.errors import CallStoppedError, McpCoreError
from mcp_core.logs import in_turn
from mcp_core.metrics import Metrics
from mcp_core.registry import ToolRegistry
from mcp_core.turn_journal import Follow, TurnJournal, TurnRow

__all__ = ["closing_text", "interrupted_turns"]

logger = logging.getLogger(__name__)


def closing_text(turn: TurnRow, following: Collection[int] = ()) -> str:
    """The thread's message for ``turn``, from its journaled calls; ``following``: the
    indexes of calls whose tasks this process follows."""
    ran = [c.name for c in turn.calls if c.started and c.finished]
    maybe = [c.name for c in turn.calls if c.started and not c.finished]
    not_run = [c.name for c in turn.calls if not c.started]
    running = [i for i, c in enumerate(turn.calls) if c.started and not c.finished and c.task]
    tasks = [turn.calls[i].name for i in running if i not in following]
    followed = [turn.calls[i].name for i in sorted(following)]
    return texts.interrupted(
        ran, maybe, not_run, waiting=turn.state == "waiting", tasks=tasks, following=followed
    )


def interrupted_turns(
    client: AsyncWebClient,
    metrics: Metrics | None = None,
    *,
    sessions: bool = True,
    registry: ToolRegistry | None = None,
    journal: TurnJournal | None = None,
) -> Callable[[TurnRow], Awaitable[Follow | None]]:
    """The sweeper's handler: closes each turn it is given in Slack, with ``client``
    (``sessions``: the bot uses agent sessions, ``SLACK_AGENT_SESSIONS``). With ``registry``
    and ``journal``, calls running as tasks on remote servers are followed to their results."""

    async def close(turn: TurnRow) -> Follow | None:
        with in_turn(turn.turn_id):  # its lines name the turn, as the dead process's did
            return await _close(turn)

    async def _close(turn: TurnRow) -> Follow | None:
        if any(call.followed for call in turn.calls):  # its thread was told: follow what is left
            return _follower(client, registry, journal, turn) if registry and journal else None
        following = await _followable(registry, turn) if journal is not None else set()
        if metrics is not None:
            metrics.turn_taken_over(waiting=turn.state == "waiting")
        edited = [SectionBlock(text=MarkdownTextObject(text=texts.INTERRUPTED)).to_dict()]
        for ts in turn.messages or await _unrecorded_progress(client, turn):
            with contextlib.suppress(*SLACK_FAILURES):  # not streaming (any more): the edit is enough
                await client.chat_stopStream(channel=turn.channel_id, ts=ts)
            try:
                await client.chat_update(
                    channel=turn.channel_id, ts=ts, text=texts.INTERRUPTED, blocks=edited
                )
            except SLACK_FAILURES as exc:
                logger.info("could not edit message %s of turn %s: %s", ts, turn.turn_id, slack_error(exc))
        follows = bool(following) and registry is not None and journal is not None
        await _post(client, turn, closing_text(turn, following), stoppable=follows)
        await _end_thread_status(client, turn, sessions=sessions)
        if not follows:
            return None
        for index in following:
            turn.calls[index].followed = True
        return _follower(client, registry, journal, turn)

    return close


async def _unrecorded_progress(client: AsyncWebClient, turn: TurnRow) -> list[str]:
    """A turn whose process died between Slack's answer to its progress message and the write
    of that message's ts has none in its row: the thread's bot messages that still say only
    :data:`bot.texts.THINKING` are its. (A live turn's message says that for a moment at most;
    edited here, its next update puts its own words back.)"""
    try:
        found = await client.conversations_replies(channel=turn.channel_id, ts=turn.thread_ts, limit=200)
    except SLACK_FAILURES as exc:
        logger.info("could not read the thread of turn %s: %s", turn.turn_id, slack_error(exc))
        return []
    messages = found.get("messages") or []
    return [
        str(m["ts"])
        for m in messages
        if isinstance(m, dict) and m.get("bot_id") and m.get("text") == texts.THINKING and m.get("ts")
    ]


async def _followable(registry: ToolRegistry | None, turn: TurnRow) -> set[int]:
    """Indexes of the turn's calls that were running as tasks its process could follow."""
    found: set[int] = set()
    if registry is None:
        return found
    for index, call in enumerate(turn.calls):
        if not (call.started and not call.finished and call.task):
            continue
        try:
            if await registry.task_followable(turn.team_id, turn.user_id, call.name):
                found.add(index)
        except McpCoreError as exc:  # the catalog could not be read: said not to be followed
            logger.info("cannot follow %s of turn %s: %s", call.name, turn.turn_id, exc)
    return found


def _follower(client: AsyncWebClient, registry: ToolRegistry, journal: TurnJournal, turn: TurnRow) -> Follow:
    """Each followed call's task, to its result in the thread, one after another; each call is
    journaled as finished once its message is posted (taken over again, it is not posted twice,
    short of a death between the two)."""

    async def follow() -> None:
        with in_turn(turn.turn_id):
            await _follow_calls()

    async def _follow_calls() -> None:
        stop = journal.stop_signal(turn.turn_id)  # the Stop button of the thread's message
        for index, call in enumerate(turn.calls):
            if not call.followed or call.finished or call.task is None:
                continue
            try:
                result = await registry.follow_task(
                    turn.team_id, turn.user_id, call.name, call.task, stop=stop
                )
            except CallStoppedError:
                text = texts.task_stopped(call.name)
            except McpCoreError as exc:
                text = texts.task_lost(call.name, str(exc))
            else:
                text = texts.task_ended(call.name, result.text, is_error=result.is_error)
            await _post(client, turn, text)
            journal.call_finished(turn.turn_id, index, call.name)
            await journal.durable(turn.turn_id)

    return follow


async def _post(client: AsyncWebClient, turn: TurnRow, text: str, *, stoppable: bool = False) -> None:
    """One message in the turn's thread; ``stoppable``: with the asker's Stop button, which
    reaches the process following the turn's tasks wherever it lands (``bot.stops``)."""
    text, blocks = agent_working(text, turn.turn_id if stoppable else None)
    try:
        await client.chat_postMessage(
            channel=turn.channel_id,
            thread_ts=turn.thread_ts,
            text=text,
            blocks=[block.to_dict() for block in blocks],
            unfurl_links=False,
            unfurl_media=False,
        )
    except SLACK_FAILURES as exc:
        logger.info("could not post in the thread of turn %s: %s", turn.turn_id, slack_error(exc))


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
