"""Approve/Deny in Slack: the question in the thread, the asker's click, and its outcome.

Approvals wait on a future of this process (``ApprovalDesk``); only the asker's click counts,
and no answer within AGENT_APPROVAL_TIMEOUT_S counts as Deny. With several HTTP workers the
click must reach the process that asked; Socket Mode has one connection, so it always does.
A question shows the complete arguments (in the message, or whole in a modal when they are
long) and its buttons carry a digest of them: a click approves those arguments and no others.

*Always allow* approves the call and remembers the tool (``ToolRegistry.set_always_allowed``),
so later turns run it without asking. It is not offered where someone else wrote in the thread
(a standing permission must not be granted under another person's words), nor for a tool its
server says may delete or overwrite things (``ToolInfo.always_asks``); a click on a question
that did not offer it is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot._payload import owner
from bot.replies import Thread, privately
from mcp_core import errors
from mcp_core.agent import ToolCall
from mcp_core.registry import ToolRegistry

__all__ = [
    "ApprovalDesk",
    "Asking",
    "arguments_digest",
    "ask_approval",
    "may_always_allow",
    "register_approvals",
]

logger = logging.getLogger(__name__)

Answer = Literal["ok", "not_yours", "gone", "not_offered"]
Outcome = Literal["approved", "denied", "always"]
"""What the asker clicked."""
_REFUSED = {
    "not_yours": texts.APPROVAL_NOT_YOURS,
    "gone": texts.APPROVAL_GONE,
    "not_offered": texts.APPROVAL_NOT_OFFERED,
}
"""What a click that is not the asker's, or that comes too late, is told."""


@dataclass
class _Question:
    team_id: str
    user_id: str
    call: ToolCall
    digest: str
    offers_always: bool
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def arguments_digest(arguments: dict[str, Any]) -> str:
    """A short digest of exactly these arguments, carried by the question's buttons."""
    canonical = json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ApprovalDesk:
    """Approve/Deny questions waiting in this process, by button value (``<id>.<digest>``)."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Question] = {}

    def open_count(self) -> int:
        """Questions waiting for a click (the open approvals gauge of ``/metrics``)."""
        return len(self._waiting)

    def ask(
        self, team_id: str, user_id: str, call: ToolCall, *, offers_always: bool = False
    ) -> tuple[str, asyncio.Future[Outcome]]:
        """Open a question about ``call``; returns the buttons' value and the future of the click."""
        question_id, digest = uuid.uuid4().hex, arguments_digest(call.arguments)
        question = _Question(team_id, user_id, call, digest, offers_always)
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

    def answer(self, value: str, team_id: str, user_id: str, outcome: Outcome) -> Answer:
        """Record a click; only the asker (same team and user) may answer, only for the
        arguments the question showed, and with *Always allow* only where it was offered."""
        question = self._find(value, team_id, user_id)
        if isinstance(question, str):
            return question
        if outcome == "always" and not question.offers_always:
            return "not_offered"
        question.future.set_result(outcome)
        return "ok"

    def call_for(self, value: str, team_id: str, user_id: str, *, always: bool = False) -> ToolCall | Answer:
        """The call an open question is about, for its asker (to show the arguments whole;
        ``always``: to remember its tool, if the question offered that)."""
        question = self._find(value, team_id, user_id)
        if isinstance(question, str):
            return question
        if always and not question.offers_always:
            return "not_offered"
        return question.call

    def close(self, value: str) -> None:
        self._waiting.pop(value.partition(".")[0], None)


def register_approvals(
    app: AsyncApp, desk: ApprovalDesk, registry: ToolRegistry, client: AsyncWebClient
) -> None:
    """Add the Approve, Deny and Show-all-arguments listeners of ``desk``'s questions to ``app``."""

    @app.action(views.APPROVE_ACTION)
    @app.action(views.DENY_ACTION)
    async def on_approval(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        await ack()
        approved = action["action_id"] == views.APPROVE_ACTION
        answered = desk.answer(*_click(body, action), "approved" if approved else "denied")
        if answered != "ok":
            await privately(respond, _REFUSED[answered])

    @app.action(views.ALWAYS_ACTION)
    async def on_always_allow(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        """Remember the tool for the asker's own connection (the one the catalog entry names,
        never an id from the click), then approve: the next turn runs it without asking."""
        await ack()
        value, team_id, user_id = _click(body, action)
        call = desk.call_for(value, team_id, user_id, always=True)
        if isinstance(call, str):
            await privately(respond, _REFUSED[call])
            return
        outcome: Outcome = "always"
        if call.entry is not None:  # a question is only asked about a catalog entry
            connection_id, tool = call.entry.connection_id, call.entry.tool.name
            try:
                await registry.set_always_allowed(team_id, user_id, connection_id, tool, True)
            except errors.McpCoreError as exc:  # approved once all the same: the person said yes
                outcome = "approved"
                await privately(respond, texts.not_remembered(exc))
        answered = desk.answer(value, team_id, user_id, outcome)
        if answered != "ok":  # expired while the choice was saved
            await privately(respond, _REFUSED[answered])

    @app.action(views.ARGUMENTS_ACTION)
    async def on_show_arguments(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        """The complete arguments of a long call, in a modal, for the asker only."""
        await ack()
        value, team_id, user_id = _click(body, action)
        call = desk.call_for(value, team_id, user_id)
        if isinstance(call, str):
            await privately(respond, _REFUSED[call])
            return
        modal = views.arguments_modal(call, registry.redactor(team_id, user_id))
        try:
            await client.views_open(trigger_id=body.get("trigger_id"), view=modal)
        except SlackApiError as exc:
            logger.warning("could not open the arguments modal: %s", exc.response.get("error"))
            await privately(respond, texts.FORM_DID_NOT_OPEN_ARGS)


def _click(body: dict[str, Any], action: dict[str, Any]) -> tuple[str, str, str]:
    """(button value, team, user) of a click on a question."""
    return str(action.get("value", "")), *owner(body)


@dataclass(frozen=True)
class Asking:
    """Where and for whom a turn asks its questions."""

    team_id: str
    user_id: str
    thread: Thread
    others_wrote: bool
    redact: Callable[[str], str]
    allowed_now: set[str] = field(default_factory=set)
    """Catalog names the asker chose *Always allow* for during this turn: the turn's catalog
    was read before the click, so its later calls of them check here
    (``mcp_core.agent.approval_rule``)."""


async def ask_approval(desk: ApprovalDesk, timeout_s: float, asking: Asking, call: ToolCall) -> bool | str:
    """Post Approve/Deny in the thread and wait for the asker's click (no answer = Deny).

    Arguments too long to show even in a modal are not asked about: the call is not run, and
    the model is told why."""
    offers_always = may_always_allow(asking, call)
    question_id, future = desk.ask(asking.team_id, asking.user_id, call, offers_always=offers_always)
    try:
        question = views.approval_question(
            question_id,
            asking.user_id,
            call,
            others_wrote=asking.others_wrote,
            redact=asking.redact,
            always=offers_always,
        )
        if question is None:
            logger.info("not asking about %s: its arguments are too long to show", call.name)
            return texts.ARGUMENTS_TOO_LONG
        text, blocks = question
        posted = await asking.thread.post(text, blocks)
        try:
            outcome: Outcome | Literal["expired"] = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            outcome = "expired"
        except asyncio.CancelledError:  # the asker stopped the turn: the question is closed
            await asking.thread.edit(posted, texts.approval_stopped(call.name))
            raise
    finally:
        desk.close(question_id)
    connection = call.entry.connection_name if call.entry is not None else ""
    outcome_text = texts.approval_outcome(call.name, asking.user_id, outcome, connection)
    await asking.thread.edit(posted, outcome_text)
    if outcome == "always":
        asking.allowed_now.add(call.name)
    return outcome in ("approved", "always")


def may_always_allow(asking: Asking, call: ToolCall) -> bool:
    """Whether the question offers *Always allow*: not where someone else wrote in the thread
    (they may have put the asker up to it), and not for a tool its server says may delete or
    overwrite things (it asks every time, see ``mcp_core.agent.needs_approval``)."""
    return not asking.others_wrote and call.entry is not None and not call.entry.tool.always_asks
