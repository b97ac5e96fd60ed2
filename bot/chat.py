"""The agent in Slack: mentions and DMs answered in their thread with the asker's own tools.

One turn: post a progress message in the thread → read the thread back (the conversation, so
memory survives restarts) → the asker's catalog (each entry with its approval policy) →
``Agent.run`` with callbacks that edit the progress message and ask Approve/Deny in the
thread (``bot.approvals``) → the progress message becomes the answer, with a *Sign in to …*
link button for each connection that asked the asker to sign in (again) on the way. When someone other
than the asker wrote in the thread, every call of the turn is asked about. What the turn cost
(tokens per round, summed) is queued for the store in the background, answered or not.

A question the turn asks is kept in its journal row with the turn's sealed checkpoint
(``mcp_core.turn_checkpoint``), when a keyring can seal it: a click on any process takes it
and the turn goes on there (``Continued``, from ``bot.resume``) — the same progress message
edited on, or a new stream below the question — while the asking process lets it go.
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
from bot.approvals import ApprovalDesk, Asking, KeptQuestion, ask_approval, register_approvals
from bot.questions import QuestionDesk, call_events, register_questions
from bot.replies import Replies, Thread
from bot.resume import Continued, kept_arguments, resumer
from bot.rich_results import post_rich_results
from bot.stops import RunningTurn, TurnDesk, register_stops
from bot.turn_display import EditedDisplay, SlackSurfaces, StreamedDisplay, TurnDisplay
from mcp_core import errors
from mcp_core.agent import ToolCall, ToolProgress, approval_rule
from mcp_core.audit import Auditor
from mcp_core.logs import in_turn
from mcp_core.metrics import TurnOutcome
from mcp_core.models import CatalogEntry, ToolResult
from mcp_core.policy import channel_catalog
from mcp_core.services import Services
from mcp_core.turn_checkpoint import Checkpoint, Resume, seal
from mcp_core.turn_journal import TurnJournal

__all__ = ["answer_in_thread", "register_chat"]

logger = logging.getLogger(__name__)

QUESTION_SLACK_S = 60.0
"""A kept question outlives the core's bound on its wait by this much (a late answer is
refused as gone, never written for nobody)."""
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
    if services.turns is not None and services.checkpoint_keys is not None:
        services.turns.questions_continue = True
    answers_elsewhere = resumer(services, replies, lambda continued: go_on(continued))
    register_approvals(app, desk, registry, client, lambda: answers_elsewhere, kept_arguments(services))
    services.metrics.observe_open_approvals(desk.open_count)
    turns = TurnDesk()
    register_stops(app, turns, client, services.turns)
    settings = services.settings
    surfaces = SlackSurfaces(
        streaming=settings.slack_streaming,
        sessions=settings.slack_agent_sessions,
        refresh_s=settings.slack_status_refresh_s,
    )
    questions = QuestionDesk(
        services.kept_questions, expires_s=services.settings.elicitation_timeout_s + QUESTION_SLACK_S
    )
    register_questions(app, questions, client)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("bot_id") or not event.get("user"):
            return
        await answer(_asker_team(event, body), event, context)

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
        await answer(_asker_team(event, body), event, context)

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

    async def go_on(continued: Continued) -> None:
        """A turn whose question was answered here goes on here, under its own id (its Stop
        button and 👍 / 👎 keep working)."""
        row = continued.row
        thread = replies.thread(row.channel_id, row.thread_ts)
        with turns.running(
            row.team_id, row.user_id, row.channel_id, row.thread_ts, turn_id=row.turn_id
        ) as turn:
            await journaled_answer(
                services.turns,
                turn,
                services,
                desk,
                thread,
                row.team_id,
                row.user_id,
                {},
                {},
                surfaces=surfaces,
                questions=questions,
                continued=continued,
            )

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
    continued: Continued | None = None,
) -> None:
    """One turn: its display begun (``bot.turn_display``), the thread read back, ``Agent.run``
    with the asker's catalog and callbacks, then the answer (or what went wrong) shown. ``turn``:
    what a Stop sets (``bot.stops``). ``surfaces``: which of Slack's AI surfaces this
    process uses and which a workspace refused (None: the progress message edited in place).
    ``questions``: where servers' questions mid-call wait (``bot.questions``; without it they
    are cancelled); their progress updates the call's card or line either way. ``continued``:
    the turn goes on from its checkpoint instead (``event`` and ``context`` are not read).
    Module-level, so ``bench/agent_turn.py`` times this very code.

    Every line logged meanwhile carries the turn's id (``mcp_core.logs``, LOG_FORMAT=json), and
    how the turn ended is counted (``mcp_core.metrics``)."""
    turn_id = turn.id if turn is not None else uuid.uuid4().hex  # what feedback on the answer names
    started = time.perf_counter()
    outcome: TurnOutcome = "error"  # unless the turn says otherwise: it raised
    with in_turn(turn_id):
        try:
            outcome = await _turn(
                services,
                desk,
                thread,
                team_id,
                user_id,
                event,
                context,
                turn_id,
                turn,
                surfaces,
                questions,
                continued,
            )
        finally:
            services.metrics.turn_ended(outcome, time.perf_counter() - started)


def _asker_team(event: dict[str, Any], body: dict[str, Any]) -> str:
    """The asker's own team: ``user_team`` in a shared channel (a person from another
    organization has their own connections there, never the host's), else the event's."""
    found = event.get("user_team") or body.get("team_id") or event.get("team") or ""
    return found if isinstance(found, str) else ""


async def _channel_catalog(
    services: Services, thread: Thread, team_id: str, user_id: str, *, tell: bool
) -> list[CatalogEntry]:
    """The asker's catalog as the workspace's policy allows it in this channel (no tools, or
    read-only ones); the asker is told privately what was left out (``tell``: once a turn)."""
    catalog = await services.registry.catalog(team_id, user_id)
    allowed, rule = channel_catalog(await services.policies.get(team_id), thread.channel, catalog)
    if tell and len(allowed) < len(catalog):
        note = texts.channel_tools_note(rule, len(catalog) - len(allowed))
        try:
            await thread.client.chat_postEphemeral(
                channel=thread.channel, user=user_id, thread_ts=thread.thread, text=note
            )
        except SlackApiError as exc:
            logger.warning(
                "could not tell %s about the channel's tool rule: %s", user_id, exc.response.get("error")
            )
    return allowed


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
    continued: Continued | None,
) -> TurnOutcome:
    """``answer_in_thread``'s work; how the turn ended."""
    agent, registry, settings = services.agent, services.registry, services.settings
    assert agent is not None
    redact = registry.redactor(team_id, user_id)
    extras = continued.checkpoint.extras if continued is not None else {}
    display = _display(thread, team_id, user_id, turn, surfaces, redact, extras)
    journal = services.turns if turn is not None else None  # bot.takeover closes it if we die
    first = len(continued.checkpoint.ended) if continued is not None else 0
    on_progress = (
        display.progress if journal is None else journal.progress(turn_id, display.progress, first=first)
    )
    if journal is not None:
        display.on_message = functools.partial(journal.own_message, turn_id)
    if journal is not None and continued is None:
        try:  # the row first: a message posted by a turn with no row could never be closed
            await journal.durable(turn_id)
        except errors.McpCoreError as exc:
            await thread.post(texts.failed(exc))
            return "failed"
    if continued is not None and isinstance(display, EditedDisplay):
        display.restore(_ended_calls(continued.checkpoint))
    await display.begin()
    others_wrote = extras.get("others_wrote") is True
    allowed_now: set[str] = {str(name) for name in extras.get("allowed_now") or []}
    private = extras.get("dm") is True if continued is not None else is_dm(event)
    waiting_at: list[Checkpoint] = []
    """Where the turn stands as it asks (``Agent.run``'s ``on_wait``), for its kept question."""

    async def on_wait(checkpoint: Checkpoint) -> None:
        waiting_at[:] = [checkpoint]

    kept = None
    if journal is not None and journal.questions_continue and services.checkpoint_keys is not None:
        keys, lost = services.checkpoint_keys, journal.lost_signal(turn_id)

        async def keep(question_id: str, expires_at: Any, details: dict[str, Any]) -> None:
            fell_back = isinstance(display, EditedDisplay) or getattr(display, "fell_back", False)
            shown = {
                "display": "edited" if fell_back else "streamed",
                "ts": display.own_ts,
                "others_wrote": others_wrote,
                "allowed_now": sorted(allowed_now),
                "dm": private,
            }
            checkpoint = waiting_at[-1].model_copy(update={"extras": {**details, **shown}})
            sealed = seal(keys, team_id, user_id, turn_id, checkpoint)
            await journal.suspend(turn_id, question_id, expires_at, sealed)

        async def take(question_id: str, expired_ok: bool) -> bool:
            return await journal.take_own(turn_id, question_id, expired_ok=expired_ok)

        kept = KeptQuestion(keep, take, lost)

        def on_round(checkpoint: Checkpoint) -> None:
            """Each round's conversation and calls go with the turn's row, sealed."""
            journal.checkpointed(turn_id, seal(keys, team_id, user_id, turn_id, checkpoint))

    async def ask(call: ToolCall) -> bool | str:
        asking = Asking(
            team_id, user_id, thread, others_wrote, redact, allowed_now, kept, Auditor(services.store)
        )
        await display.pause()
        if journal is not None:
            journal.waiting(turn_id)
        try:
            return await ask_approval(desk, settings.agent_approval_timeout_s, asking, call)
        finally:
            if kept is None or not kept.lost.is_set():  # else the turn is another process's now
                if journal is not None:
                    journal.running(turn_id)
                await display.resume()

    async def call_tool(call: ToolCall) -> ToolResult:
        events = call_events(  # journaled too: a task's id must reach the turn's row
            call,
            on_progress,
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
        history: list[dict[str, str]] = []
        if continued is None:
            history, others_wrote = await _thread_history(
                thread, event, context, display.own_ts, settings.agent_history_messages
            )
        reply = await agent.run(
            history,
            await _channel_catalog(services, thread, team_id, user_id, tell=continued is None),
            call_tool,
            on_progress=on_progress,
            ask_approval=ask,
            approval=approval_rule(others_wrote=others_wrote, allowed_now=allowed_now),
            redact=redact,
            on_usage=functools.partial(services.usage.record_turn, team_id, user_id, turn_id=turn_id),
            on_text=display.text if isinstance(display, StreamedDisplay) else None,
            stop=turn.stop if turn is not None else None,
            on_wait=on_wait if kept is not None else None,
            on_round=on_round if kept is not None else None,
            resume=Resume(checkpoint=continued.checkpoint, answer=continued.answer) if continued else None,
        )
    except errors.TurnContinuedElsewhereError:
        logger.info("the question was answered on another process; the turn goes on there")
        display.let_go()
        return "moved"
    except errors.McpCoreError as exc:  # LlmError and store failures: said in the thread
        await display.fail(texts.failed(exc))
        return "failed"
    except Exception:  # boundary: the thread must not be left saying "thinking"
        logger.exception("agent turn failed")
        await display.fail(texts.INTERNAL_ERROR)
        return "error"
    sign_ins = await _sign_in_buttons(services, team_id, user_id, reply.sign_ins, private=private)
    await display.finish(reply.text, streamed=reply.streamed, sign_ins=sign_ins, feedback=turn_id)
    await post_rich_results(thread, reply.attachments)
    return "stopped" if reply.stopped else "answered"


async def journaled_answer(journal: TurnJournal | None, turn: RunningTurn, *args: Any, **kwargs: Any) -> None:
    """``answer_in_thread`` for ``turn``, in the turn journal from start to end."""
    if journal is None:
        await answer_in_thread(*args, turn=turn, **kwargs)
        return
    continued: Continued | None = kwargs.get("continued")
    taken = continued.row if continued is not None else None
    async with journal.turn(turn.id, turn.team_id, turn.user_id, turn.channel, turn.thread_ts, taken=taken):
        await answer_in_thread(*args, turn=turn, **kwargs)


def _display(
    thread: Thread,
    team_id: str,
    user_id: str,
    turn: RunningTurn | None,
    surfaces: SlackSurfaces | None,
    redact: Callable[[str], str],
    continued: Mapping[str, Any],
) -> TurnDisplay:
    """How the turn shows; a continued turn (``continued``: its checkpoint's extras) edits the
    progress message it had, or streams anew below its question."""
    stop_value = turn.id if turn is not None else None
    ts = continued.get("ts") if continued.get("display") == "edited" else None
    if ts is not None or surfaces is None or not surfaces.streaming:
        return EditedDisplay(thread, stop_value, str(ts) if ts else None)
    return StreamedDisplay(thread, team_id, user_id, surfaces, stop_value, redact)


def _ended_calls(checkpoint: Checkpoint) -> list[ToolProgress]:
    """The calls a continued turn made before it waited, as its progress message showed them."""
    return [ToolProgress(ToolCall(c.id, c.name, {}, None), c.state) for c in checkpoint.ended]


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
