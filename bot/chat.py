"""The agent in Slack: mentions and DMs answered in their thread with the asker's own tools.

One turn: post a progress message in the thread → read the thread back (the conversation, so
memory survives restarts) → the asker's catalog (each entry with its approval policy) →
``Agent.run`` with callbacks that edit the progress message and ask Approve/Deny in the
thread (``bot.approvals``) → the progress message becomes the answer, with a *Sign in to …*
link button for each connection that asked the asker to sign in (again) on the way. When someone other
than the asker wrote in the thread, every call of the turn is asked about. What the turn cost
(tokens per round, summed) is queued for the store in the background, answered or not.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ButtonElement
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot.approvals import ApprovalDesk, Asking, ask_approval, register_approvals
from bot.questions import QuestionDesk, call_events, register_questions
from bot.replies import Replies, Thread
from bot.rich_results import post_rich_results
from bot.stops import RunningTurn, TurnDesk, register_stops
from bot.turn_display import EditedDisplay, SlackSurfaces, StreamedDisplay, TurnDisplay
from mcp_core import errors
from mcp_core.agent import ToolCall, approval_rule
from mcp_core.logs import in_turn
from mcp_core.metrics import TurnOutcome
from mcp_core.models import ToolResult
from mcp_core.services import Services
from mcp_core.turn_journal import TurnJournal

__all__ = ["answer_in_thread", "register_chat"]

logger = logging.getLogger(__name__)

THREAD_PAGE = 200
"""Messages per conversations.replies call; Slack pages a thread oldest first."""
THREAD_MAX_PAGES = 5
"""Pages read at most: a longer thread is answered from its first 1,000 messages' newest ones."""
MESSAGE_CHARS = 4000
"""Longest single thread message handed to the model."""


def register_chat(
    app: AsyncApp, services: Services, client: AsyncWebClient, replies: Replies
) -> ApprovalDesk:
    """Add the mention, DM and Approve/Deny listeners to ``app``."""
    registry = services.registry
    desk = ApprovalDesk()
    register_approvals(app, desk, registry, client)
    services.metrics.observe_open_approvals(desk.open_count)
    turns = TurnDesk()
    register_stops(app, turns, client)
    settings = services.settings
    surfaces = SlackSurfaces(
        streaming=settings.slack_streaming,
        sessions=settings.slack_agent_sessions,
        refresh_s=settings.slack_status_refresh_s,
    )
    questions = QuestionDesk()
    register_questions(app, questions, client)

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

    async def answer(team_id: str, event: dict[str, Any], context: AsyncBoltContext) -> None:
        user_id, channel, ts = (event.get(k) for k in ("user", "channel", "ts"))
        thread_ts = event.get("thread_ts") or ts
        if not all(isinstance(v, str) and v for v in (user_id, channel, thread_ts)):
            logger.info("ignored a message event without user, channel or ts")
            return
        user_id, thread = str(user_id), replies.thread(str(channel), str(thread_ts))
        thread_of = (str(channel), str(thread_ts))
        if services.agent is None:
            await thread.post(texts.AGENT_NOT_CONFIGURED)
            return
        try:
            with registry.limits.turn(team_id, user_id), turns.running(team_id, user_id, *thread_of) as turn:
                await journaled_answer(
                    services.turns,
                    turn,
                    services,
                    desk,
                    thread,
                    team_id,
                    user_id,
                    event,
                    context,
                    surfaces=surfaces,
                    questions=questions,
                )
        except errors.LimitError as exc:
            services.metrics.turn_ended("refused")
            await thread.post(texts.failed(exc))

    return desk


async def answer_in_thread(
    services: Services,
    desk: ApprovalDesk,
    thread: Thread,
    team_id: str,
    user_id: str,
    event: dict[str, Any],
    context: Mapping[str, Any],
    *,
    turn: RunningTurn | None = None,
    surfaces: SlackSurfaces | None = None,
    questions: QuestionDesk | None = None,
) -> None:
    """One turn: its display begun (``bot.turn_display``), the thread read back, ``Agent.run``
    with the asker's catalog and callbacks, then the answer (or what went wrong) shown. ``turn``:
    what a Stop sets (``bot.stops``). ``surfaces``: which of Slack's AI surfaces this
    process uses and which a workspace refused (None: the progress message edited in place).
    ``questions``: where servers' questions mid-call wait (``bot.questions``; without it they
    are cancelled); their progress updates the call's card or line either way. Module-level,
    so ``bench/agent_turn.py`` times this very code.

    Every line logged meanwhile carries the turn's id (``mcp_core.logs``, LOG_FORMAT=json), and
    how the turn ended is counted (``mcp_core.metrics``)."""
    turn_id = turn.id if turn is not None else uuid.uuid4().hex  # what feedback on the answer names
    started = time.perf_counter()
    outcome: TurnOutcome = "error"  # unless the turn says otherwise: it raised
    with in_turn(turn_id):
        try:
            outcome = await _turn(
                services, desk, thread, team_id, user_id, event, context, turn_id, turn, surfaces, questions
            )
        finally:
            services.metrics.turn_ended(outcome, time.perf_counter() - started)


async def _turn(
    services: Services,
    desk: ApprovalDesk,
    thread: Thread,
    team_id: str,
    user_id: str,
    event: dict[str, Any],
    context: Mapping[str, Any],
    turn_id: str,
    turn: RunningTurn | None,
    surfaces: SlackSurfaces | None,
    questions: QuestionDesk | None,
) -> TurnOutcome:
    """``answer_in_thread``'s work; how the turn ended."""
    agent, registry, settings = services.agent, services.registry, services.settings
    assert agent is not None
    redact = registry.redactor(team_id, user_id)
    display = _display(thread, team_id, user_id, turn, surfaces, redact)
    journal = services.turns if turn is not None else None  # bot.takeover closes it if we die
    on_progress = display.progress if journal is None else journal.progress(turn_id, display.progress)
    if journal is not None:
        display.on_message = functools.partial(journal.own_message, turn_id)
        try:  # the row first: a message posted by a turn with no row could never be closed
            await journal.durable(turn_id)
        except errors.McpCoreError as exc:
            await thread.post(texts.failed(exc))
            return "failed"
    await display.begin()
    others_wrote = False
    allowed_now: set[str] = set()

    async def ask(call: ToolCall) -> bool | str:
        asking = Asking(team_id, user_id, thread, others_wrote, redact, allowed_now)
        await display.pause()
        if journal is not None:
            journal.waiting(turn_id)
        try:
            return await ask_approval(desk, settings.agent_approval_timeout_s, asking, call)
        finally:
            if journal is not None:
                journal.running(turn_id)
            await display.resume()

    async def call_tool(call: ToolCall) -> ToolResult:
        events = call_events(
            call,
            display.progress,
            questions,
            thread,
            team_id,
            user_id,
            redact,
            pause=display.pause,
            resume=display.resume,
        )
        return await registry.call(team_id, user_id, call.name, call.arguments, events=events)

    try:
        history, others_wrote = await _thread_history(
            thread, event, context, display.own_ts, settings.agent_history_messages
        )
        reply = await agent.run(
            history,
            await registry.catalog(team_id, user_id),
            call_tool,
            on_progress=on_progress,
            ask_approval=ask,
            approval=approval_rule(others_wrote=others_wrote, allowed_now=allowed_now),
            redact=redact,
            on_usage=functools.partial(services.usage.record_turn, team_id, user_id, turn_id=turn_id),
            on_text=display.text if isinstance(display, StreamedDisplay) else None,
            stop=turn.stop if turn is not None else None,
        )
    except errors.McpCoreError as exc:  # LlmError and store failures: said in the thread
        await display.fail(texts.failed(exc))
        return "failed"
    except Exception:  # boundary: the thread must not be left saying "thinking"
        logger.exception("agent turn failed")
        await display.fail(texts.INTERNAL_ERROR)
        return "error"
    sign_ins = await _sign_in_buttons(services, team_id, user_id, reply.sign_ins, private=is_dm(event))
    await display.finish(reply.text, streamed=reply.streamed, sign_ins=sign_ins, feedback=turn_id)
    await post_rich_results(thread, reply.attachments)
    return "stopped" if reply.stopped else "answered"


async def journaled_answer(journal: TurnJournal | None, turn: RunningTurn, *args: Any, **kwargs: Any) -> None:
    """``answer_in_thread`` for ``turn``, in the turn journal from start to end."""
    if journal is None:
        await answer_in_thread(*args, turn=turn, **kwargs)
        return
    async with journal.turn(turn.id, turn.team_id, turn.user_id, turn.channel, turn.thread_ts):
        await answer_in_thread(*args, turn=turn, **kwargs)


def _display(
    thread: Thread,
    team_id: str,
    user_id: str,
    turn: RunningTurn | None,
    surfaces: SlackSurfaces | None,
    redact: Callable[[str], str],
) -> TurnDisplay:
    stop_value = turn.id if turn is not None else None
    if surfaces is None or not surfaces.streaming:
        return EditedDisplay(thread, stop_value)
    return StreamedDisplay(thread, team_id, user_id, surfaces, stop_value, redact)


def is_dm(event: dict[str, Any]) -> bool:
    """A message in the asker's DM with the bot (nobody else sees the thread)."""
    return event.get("channel_type") == "im"


async def _sign_in_buttons(
    services: Services,
    team_id: str,
    user_id: str,
    needed: list[errors.SignInRequiredError],
    *,
    private: bool,
) -> list[ButtonElement]:
    """A *Sign in to <connection>* button per connection that asked for a sign-in: the link
    itself in the asker's DM; elsewhere a button that makes a link for whoever clicks, among
    their own connections (others see the answer, and a sign-in link signs its user's account
    into the connection it was made for)."""
    buttons: list[ButtonElement] = []
    for n, sign_in in enumerate(needed):
        if private and len(sign_in.authorize_url) <= views.URL_LIMIT:
            buttons.append(views.sign_in_button(sign_in.connection, sign_in.authorize_url, index=n))
            continue
        connection = await services.store.find_connection(team_id, user_id, sign_in.connection)
        if connection is not None:
            buttons.append(views.sign_in_for_clicker(connection.name, connection.id, index=n))
    return buttons


async def _thread_history(
    thread: Thread,
    event: dict[str, Any],
    context: Mapping[str, Any],
    own_ts: str | None,
    limit: int,
) -> tuple[list[dict[str, str]], bool]:
    """The thread as chat messages (oldest first): the bot's own as ``assistant``, people's as
    ``user``; and whether anyone but the asker and the bot wrote any of them."""
    messages: list[dict[str, Any]] = []
    try:
        cursor = None
        for _ in range(THREAD_MAX_PAGES):
            page = await thread.client.conversations_replies(
                channel=thread.channel, ts=thread.thread, limit=THREAD_PAGE, cursor=cursor
            )
            messages += page.get("messages") or []
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
    except SlackApiError as exc:
        logger.info(
            "could not read (all of) thread %s (%s); answering from what was read",
            thread.thread,
            exc.response.get("error"),
        )
    if not any(m.get("ts") == event.get("ts") for m in messages):
        messages.append(event)
    bot_user, bot_id = context.get("bot_user_id"), context.get("bot_id")
    own_mention = f"<@{bot_user}>" if bot_user else None  # other mentions carry meaning; ours doesn't
    history: list[dict[str, str]] = []
    others_wrote = False
    for message in messages[-limit:]:
        if (own_ts and message.get("ts") == own_ts) or message.get("subtype") not in (
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
