"""The agent in Slack: mentions and DMs answered in their thread with the asker's own tools.

One turn: post a progress message in the thread → read the thread back (the conversation, so
memory survives restarts) → the asker's catalog → ``Agent.run`` with callbacks that edit the
progress message and post Approve/Deny questions → the progress message becomes the answer.

Approvals wait on a future of this process (``ApprovalDesk``); only the asker's click counts,
and no answer within AGENT_APPROVAL_TIMEOUT_S counts as Deny. With several HTTP workers the
click must reach the process that asked; Socket Mode has one connection, so it always does.
A question shows the complete arguments (in the message, or whole in a modal when they are
long) and its buttons carry a digest of them: a click approves those arguments and no others.
When someone other than the asker wrote in the thread, every call of the turn is asked about.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
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
from mcp_core.agent import ApprovalPolicy, ToolCall, ToolProgress, approval_rule
from mcp_core.models import ToolResult
from mcp_core.services import Services
from run_cards import CardCatalog

__all__ = ["ApprovalDesk", "register_chat"]

logger = logging.getLogger(__name__)

THREAD_PAGE = 200
"""Messages per conversations.replies call; Slack pages a thread oldest first."""
THREAD_MAX_PAGES = 5
"""Pages read at most: a longer thread is answered from its first 1,000 messages' newest ones."""
MESSAGE_CHARS = 4000
"""Longest single thread message handed to the model."""
PROGRESS_EDIT_INTERVAL_S = 1.0
"""A finished call's line waits for the next edit if the last one was this recent (chat.update
is rate-limited); a starting call always shows, and the answer always replaces the lot."""

Answer = Literal["ok", "not_yours", "gone"]


@dataclass
class _Question:
    team_id: str
    user_id: str
    call: ToolCall
    digest: str
    future: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def arguments_digest(arguments: dict[str, Any]) -> str:
    """A short digest of exactly these arguments, carried by the question's buttons."""
    canonical = json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ApprovalDesk:
    """Approve/Deny questions waiting in this process, by button value (``<id>.<digest>``)."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Question] = {}

    def ask(self, team_id: str, user_id: str, call: ToolCall) -> tuple[str, asyncio.Future[bool]]:
        """Open a question about ``call``; returns the buttons' value and the future of the click."""
        question_id, digest = uuid.uuid4().hex, arguments_digest(call.arguments)
        question = _Question(team_id, user_id, call, digest)
        self._waiting[question_id] = question
        return f"{question_id}.{digest}", question.future

    def _find(self, value: str, team_id: str, user_id: str) -> _Question | Answer:
        question_id, _, digest = value.partition(".")
        question = self._waiting.get(question_id)
        if question is None or question.future.done() or digest != question.digest:
            return "gone"
        if (question.team_id, question.user_id) != (team_id, user_id):
            return "not_yours"
        return question

    def answer(self, value: str, team_id: str, user_id: str, approved: bool) -> Answer:
        """Record a click; only the asker (same team and user) may answer, and only for the
        arguments the question showed."""
        question = self._find(value, team_id, user_id)
        if isinstance(question, str):
            return question
        question.future.set_result(approved)
        return "ok"

    def call_for(self, value: str, team_id: str, user_id: str) -> ToolCall | Answer:
        """The call an open question is about, for its asker (to show the arguments whole)."""
        question = self._find(value, team_id, user_id)
        return question if isinstance(question, str) else question.call

    def close(self, value: str) -> None:
        self._waiting.pop(value.partition(".")[0], None)


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
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        await ack()
        team_id, user_id = owner(body)
        outcome = desk.answer(
            str(action.get("value", "")), team_id, user_id, action["action_id"] == views.APPROVE_ACTION
        )
        if outcome != "ok":
            text = texts.APPROVAL_NOT_YOURS if outcome == "not_yours" else texts.APPROVAL_GONE
            await _privately(respond, text)

    @app.action(views.ARGUMENTS_ACTION)
    async def on_show_arguments(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        """The complete arguments of a long call, in a modal, for the asker only."""
        await ack()
        team_id, user_id = owner(body)
        call = desk.call_for(str(action.get("value", "")), team_id, user_id)
        if isinstance(call, str):
            text = texts.APPROVAL_NOT_YOURS if call == "not_yours" else texts.APPROVAL_GONE
            await _privately(respond, text)
            return
        modal = views.arguments_modal(call, registry.redactor(team_id, user_id))
        try:
            await client.views_open(trigger_id=body.get("trigger_id"), view=modal)
        except SlackApiError as exc:
            logger.warning("could not open the arguments modal: %s", exc.response.get("error"))
            await _privately(respond, texts.FORM_DID_NOT_OPEN_ARGS)

    async def answer(team_id: str, event: dict[str, Any], context: AsyncBoltContext) -> None:
        user_id, channel, ts = (event.get(k) for k in ("user", "channel", "ts"))
        thread = event.get("thread_ts") or ts
        if not all(isinstance(v, str) and v for v in (user_id, channel, thread)):
            logger.info("ignored a message event without user, channel or ts")
            return
        user_id, channel, thread = str(user_id), str(channel), str(thread)
        agent = services.agent
        if agent is None:
            await client.chat_postMessage(channel=channel, thread_ts=thread, text=texts.AGENT_NOT_CONFIGURED)
            return
        try:
            with registry.limits.turn(team_id, user_id):
                await turn(team_id, user_id, channel, thread, event, context)
        except errors.LimitError as exc:
            await client.chat_postMessage(channel=channel, thread_ts=thread, text=texts.failed(exc))

    async def turn(
        team_id: str,
        user_id: str,
        channel: str,
        thread: str,
        event: dict[str, Any],
        context: AsyncBoltContext,
    ) -> None:
        agent = services.agent
        assert agent is not None
        posted = await client.chat_postMessage(channel=channel, thread_ts=thread, text=texts.THINKING)
        progress_ts = str(posted["ts"])
        board = _ProgressBoard()

        async def show(progress: ToolProgress) -> None:
            board.note(progress)
            if progress.state == "running" or board.due():
                board.shown()
                await _edit(client, channel, progress_ts, texts.working(board.lines()))

        redact = registry.redactor(team_id, user_id)
        others_wrote = False

        async def ask(call: ToolCall) -> bool:
            question = _Asking(team_id, user_id, channel, thread, others_wrote, redact)
            return await _ask_approval(client, desk, settings.agent_approval_timeout_s, question, call)

        async def call_tool(name: str, arguments: dict[str, Any]) -> ToolResult:
            return await registry.call(team_id, user_id, name, arguments)

        try:
            history, others_wrote = await _thread_history(
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
                approval=approval_rule(policies, others_wrote=others_wrote),
                redact=redact,
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


async def _privately(respond: AsyncRespond | None, text: str) -> None:
    """An ephemeral reply to a click; a click without a response_url (not from a message) has
    nobody to tell, so it is only logged."""
    if respond is None:
        logger.info("no response_url to answer a click with: %s", text)
        return
    await respond(text=text, response_type="ephemeral", replace_original=False)


class _ProgressBoard:
    """One line per tool call, updated in place as calls start and end."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}
        self._shown_at = -math.inf

    def note(self, progress: ToolProgress) -> None:
        self._lines[progress.call.id] = texts.tool_line(progress)

    def due(self) -> bool:
        return time.monotonic() - self._shown_at >= PROGRESS_EDIT_INTERVAL_S

    def shown(self) -> None:
        self._shown_at = time.monotonic()

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
) -> tuple[list[dict[str, str]], bool]:
    """The thread as chat messages (oldest first): the bot's own as ``assistant``, people's as
    ``user``; and whether anyone but the asker and the bot wrote any of them."""
    messages: list[dict[str, Any]] = []
    try:
        cursor = None
        for _ in range(THREAD_MAX_PAGES):
            page = await client.conversations_replies(
                channel=channel, ts=thread, limit=THREAD_PAGE, cursor=cursor
            )
            messages += page.get("messages") or []
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
    except SlackApiError as exc:
        logger.info(
            "could not read (all of) thread %s (%s); answering from what was read",
            thread,
            exc.response.get("error"),
        )
    if not any(m.get("ts") == event.get("ts") for m in messages):
        messages.append(event)
    bot_user, bot_id = context.get("bot_user_id"), context.get("bot_id")
    own_mention = f"<@{bot_user}>" if bot_user else None  # other mentions carry meaning; ours doesn't
    history: list[dict[str, str]] = []
    others_wrote = False
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
            others_wrote = True
            history.append({"role": "user", "content": f"(<@{message.get('user')}> wrote) {text}"})
    return history, others_wrote


async def _approval_policies(
    store: Any, cards: CardCatalog, team_id: str, user_id: str
) -> dict[uuid.UUID, ApprovalPolicy]:
    """Each of the user's connections' approval policy: its run card's, else ``writes``."""
    policies: dict[uuid.UUID, ApprovalPolicy] = {}
    for connection in await store.list_connections(team_id, user_id):
        card = cards.get(connection.card_id) if connection.card_id else None
        policies[connection.id] = card.approval if card is not None else "writes"
    return policies


@dataclass(frozen=True)
class _Asking:
    """Where and for whom a turn asks its questions."""

    team_id: str
    user_id: str
    channel: str
    thread: str
    others_wrote: bool
    redact: Callable[[str], str]


async def _ask_approval(
    client: AsyncWebClient, desk: ApprovalDesk, timeout_s: float, asking: _Asking, call: ToolCall
) -> bool | str:
    """Post Approve/Deny in the thread and wait for the asker's click (no answer = Deny).

    Arguments too long to show even in a modal are not asked about: the call is not run, and
    the model is told why."""
    question_id, future = desk.ask(asking.team_id, asking.user_id, call)
    try:
        question = views.approval_question(
            question_id, asking.user_id, call, others_wrote=asking.others_wrote, redact=asking.redact
        )
        if question is None:
            logger.info("not asking about %s: its arguments are too long to show", call.name)
            return texts.ARGUMENTS_TOO_LONG
        text, blocks = question
        posted = await client.chat_postMessage(
            channel=asking.channel, thread_ts=asking.thread, text=text, blocks=blocks
        )
        try:
            approved = await asyncio.wait_for(future, timeout_s)
            outcome: Literal["approved", "denied", "expired"] = "approved" if approved else "denied"
        except TimeoutError:
            approved, outcome = False, "expired"
    finally:
        desk.close(question_id)
    outcome_text = texts.approval_outcome(call.name, asking.user_id, outcome)
    await _edit(client, asking.channel, str(posted["ts"]), outcome_text)
    return approved
