"""The agent in Slack: mentions and DMs answered in their thread with the asker's own tools.

One turn: post a progress message in the thread → read the thread back (the conversation, so
memory survives restarts) → the asker's catalog → ``Agent.run`` with callbacks that edit the
progress message and post Approve/Deny questions → the progress message becomes the answer.

Approvals wait on a future of this process (``ApprovalDesk``); only the asker's click counts,
and no answer within AGENT_APPROVAL_TIMEOUT_S counts as Deny. With several HTTP workers the
click must reach the process that asked; Socket Mode has one connection, so it always does.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot._payload import owner
from mcp_core import errors
from mcp_core.agent import ApprovalPolicy, ToolCall, ToolProgress, needs_approval
from mcp_core.models import CatalogEntry, ToolResult
from mcp_core.services import Services
from run_cards import CardCatalog

__all__ = ["ApprovalDesk", "register_chat"]

logger = logging.getLogger(__name__)

THREAD_PAGE = 200
"""Messages read from a thread in one conversations.replies call (the newest are kept)."""
MESSAGE_CHARS = 4000
"""Longest single thread message handed to the model."""

Answer = Literal["ok", "not_yours", "gone"]


@dataclass
class _Question:
    team_id: str
    user_id: str
    future: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ApprovalDesk:
    """Approve/Deny questions waiting in this process, by id."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Question] = {}

    def ask(self, team_id: str, user_id: str) -> tuple[str, asyncio.Future[bool]]:
        question_id = uuid.uuid4().hex
        question = _Question(team_id, user_id)
        self._waiting[question_id] = question
        return question_id, question.future

    def answer(self, question_id: str, team_id: str, user_id: str, approved: bool) -> Answer:
        """Record a click; only the asker (same team and user) may answer."""
        question = self._waiting.get(question_id)
        if question is None or question.future.done():
            return "gone"
        if (question.team_id, question.user_id) != (team_id, user_id):
            return "not_yours"
        question.future.set_result(approved)
        return "ok"

    def close(self, question_id: str) -> None:
        self._waiting.pop(question_id, None)


def register_chat(
    app: AsyncApp, services: Services, client: AsyncWebClient, cards: CardCatalog
) -> ApprovalDesk:
    """Add the mention, DM and Approve/Deny listeners to ``app``."""
    settings, registry, store = services.settings, services.registry, services.store
    desk = ApprovalDesk()

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("bot_id") or not event.get("user"):
            return
        await answer(str(body.get("team_id") or event.get("team") or ""), event, context)

    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
        """DMs only (channel messages reach the agent as mentions); edits, joins and bots are skipped."""
        if (
            event.get("channel_type") != "im"
            or event.get("subtype")
            or event.get("bot_id")
            or not event.get("user")
        ):
            return
        await answer(str(body.get("team_id") or event.get("team") or ""), event, context)

    @app.action(views.APPROVE_ACTION)
    @app.action(views.DENY_ACTION)
    async def on_approval(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        team_id, user_id = owner(body)
        outcome = desk.answer(
            str(action.get("value", "")), team_id, user_id, action["action_id"] == views.APPROVE_ACTION
        )
        if outcome != "ok":
            text = texts.APPROVAL_NOT_YOURS if outcome == "not_yours" else texts.APPROVAL_GONE
            await respond(text=text, response_type="ephemeral", replace_original=False)

    async def answer(team_id: str, event: dict[str, Any], context: AsyncBoltContext) -> None:
        user_id, channel = str(event["user"]), str(event["channel"])
        thread = str(event.get("thread_ts") or event["ts"])
        agent = services.agent
        if agent is None:
            await client.chat_postMessage(channel=channel, thread_ts=thread, text=texts.AGENT_NOT_CONFIGURED)
            return
        posted = await client.chat_postMessage(channel=channel, thread_ts=thread, text=texts.THINKING)
        progress_ts = str(posted["ts"])
        board = _ProgressBoard()

        async def show(progress: ToolProgress) -> None:
            board.note(progress)
            await _edit(client, channel, progress_ts, texts.working(board.lines()))

        async def ask(call: ToolCall) -> bool:
            return await _ask_approval(
                client, desk, settings.agent_approval_timeout_s, team_id, user_id, channel, thread, call
            )

        async def call_tool(name: str, arguments: dict[str, Any]) -> ToolResult:
            return await registry.call(team_id, user_id, name, arguments)

        try:
            history = await _thread_history(
                client, channel, thread, event, context, progress_ts, settings.agent_history_messages
            )
            catalog = await registry.catalog(team_id, user_id)
            policies = await _approval_policies(store, cards, team_id, user_id)
            reply = await agent.run(
                history,
                catalog,
                call_tool,
                on_progress=show,
                ask_approval=ask,
                approval=_policy_check(policies),
            )
        except errors.McpCoreError as exc:  # LlmError and store failures: said in the thread
            await _edit(client, channel, progress_ts, texts.failed(exc))
            return
        except Exception:  # boundary: the thread must not be left saying "thinking"
            logger.exception("agent turn failed")
            await _edit(client, channel, progress_ts, texts.INTERNAL_ERROR)
            return
        text, blocks = views.agent_answer(reply.text, board.summary())
        await _edit(client, channel, progress_ts, text, blocks)

    return desk


class _ProgressBoard:
    """One line per tool call, updated in place as calls start and end."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    def note(self, progress: ToolProgress) -> None:
        self._lines[progress.call.id] = texts.tool_line(progress)

    def lines(self) -> list[str]:
        return list(self._lines.values())

    def summary(self) -> list[str]:
        return [line for line in self._lines.values() if not line.startswith("⏳")]


async def _edit(
    client: AsyncWebClient, channel: str, ts: str, text: str, blocks: list[Any] | None = None
) -> None:
    """Best effort: a failed edit (rate limit, deleted message) must not end the turn."""
    try:
        await client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])
    except SlackApiError as exc:
        logger.warning("could not update the progress message: %s", exc.response.get("error"))


async def _thread_history(
    client: AsyncWebClient,
    channel: str,
    thread: str,
    event: dict[str, Any],
    context: AsyncBoltContext,
    progress_ts: str,
    limit: int,
) -> list[dict[str, str]]:
    """The thread as chat messages (oldest first): the bot's own as ``assistant``, people's as ``user``."""
    try:
        page = await client.conversations_replies(channel=channel, ts=thread, limit=THREAD_PAGE)
        messages = list(page.get("messages") or [])
    except SlackApiError as exc:
        logger.info(
            "could not read thread %s (%s); answering the message alone", thread, exc.response.get("error")
        )
        messages = []
    if not any(m.get("ts") == event.get("ts") for m in messages):
        messages.append(event)
    bot_user, bot_id = context.get("bot_user_id"), context.get("bot_id")
    own_mention = f"<@{bot_user}>" if bot_user else None  # other mentions carry meaning; ours doesn't
    history: list[dict[str, str]] = []
    for message in messages[-limit:]:
        if message.get("ts") == progress_ts or message.get("subtype") not in (
            None,
            "bot_message",
            "thread_broadcast",
        ):
            continue
        text = str(message.get("text") or "")
        text = (text.replace(own_mention, "") if own_mention else text).strip()[:MESSAGE_CHARS]
        if not text:
            continue
        mine = (bot_id and message.get("bot_id") == bot_id) or (bot_user and message.get("user") == bot_user)
        if mine:
            history.append({"role": "assistant", "content": text})
        elif message.get("bot_id"):
            continue  # other bots' messages are not the person's words
        elif message.get("user") == event.get("user"):
            history.append({"role": "user", "content": text})
        else:
            history.append({"role": "user", "content": f"(<@{message.get('user')}> wrote) {text}"})
    return history


async def _approval_policies(
    store: Any, cards: CardCatalog, team_id: str, user_id: str
) -> dict[uuid.UUID, ApprovalPolicy]:
    """Each of the user's connections' approval policy: its run card's, else ``writes``."""
    policies: dict[uuid.UUID, ApprovalPolicy] = {}
    for connection in await store.list_connections(team_id, user_id):
        card = cards.get(connection.card_id) if connection.card_id else None
        policies[connection.id] = card.approval if card is not None else "writes"
    return policies


def _policy_check(policies: dict[uuid.UUID, ApprovalPolicy]) -> Callable[[CatalogEntry], bool]:
    def check(entry: CatalogEntry) -> bool:
        return needs_approval(entry, policies.get(entry.connection_id, "writes"))

    return check


async def _ask_approval(
    client: AsyncWebClient,
    desk: ApprovalDesk,
    timeout_s: float,
    team_id: str,
    user_id: str,
    channel: str,
    thread: str,
    call: ToolCall,
) -> bool:
    """Post Approve/Deny in the thread and wait for the asker's click (no answer = Deny)."""
    question_id, future = desk.ask(team_id, user_id)
    try:
        text, blocks = views.approval_question(question_id, user_id, call)
        posted = await client.chat_postMessage(channel=channel, thread_ts=thread, text=text, blocks=blocks)
        try:
            approved = await asyncio.wait_for(future, timeout_s)
            outcome: Literal["approved", "denied", "expired"] = "approved" if approved else "denied"
        except TimeoutError:
            approved, outcome = False, "expired"
    finally:
        desk.close(question_id)
    await _edit(client, channel, str(posted["ts"]), texts.approval_outcome(call.name, user_id, outcome))
    return approved
