"""Approve/Deny in Slack: the question in the thread, the asker's click, and its outcome.

Approvals wait on a future of this process (``ApprovalDesk``); only the asker's click counts,
and no answer within AGENT_APPROVAL_TIMEOUT_S counts as Deny. A question the turn keeps
(``KeptQuestion``: its checkpoint sealed into the turn's row) is also open to every other
process: a click this process's desk does not know is handed to the ``Resumer``
(``bot.resume``), which takes the question from the database and goes on with the turn there.
Whoever takes the question in the database — a click here, a click elsewhere, this process's
own timeout — is the one that goes on; the others let the turn go without a word.
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
import contextlib
import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot._payload import owner
from bot.replies import Thread, privately
from mcp_core import errors
from mcp_core.agent import ToolCall
from mcp_core.audit import Auditor
from mcp_core.registry import ToolRegistry

__all__ = [
    "ApprovalDesk",
    "Asking",
    "KeptQuestion",
    "Resumer",
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
    take: Callable[[], Awaitable[bool]] | None = None
    """For a kept question: take it in the database first (False: a click elsewhere did)."""


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

    def keep(self, value: str, take: Callable[[], Awaitable[bool]]) -> None:
        """The question is in the database too: a click here must take it there first."""
        question = self._waiting.get(value.partition(".")[0])
        if question is not None:
            question.take = take

    async def answer(self, value: str, team_id: str, user_id: str, outcome: Outcome) -> Answer:
        """Record a click; only the asker (same team and user) may answer, only for the
        arguments the question showed, and with *Always allow* only where it was offered; a
        kept question only if this process takes it from the database (else: ``gone``)."""
        question = self._find(value, team_id, user_id)
        if isinstance(question, str):
            return question
        if outcome == "always" and not question.offers_always:
            return "not_offered"
        if question.take is not None and not await question.take():
            return "gone"
        if question.future.done():
            return "gone"
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


Resumer = Callable[[str, str, str, Outcome, AsyncRespond | None], Awaitable[None]]
"""``(button value, team, user, outcome, respond)``: a click on a question this process's
desk does not hold — answered from the database, the turn going on here (``bot.resume``)."""
KeptCallReader = Callable[[str, str, str], Awaitable[ToolCall | str]]
"""``(button value, team, user)``: the call of a question this process's desk does not hold,
read from the database (``bot.resume.kept_arguments``), or what to tell the clicker."""


def register_approvals(
    app: AsyncApp,
    desk: ApprovalDesk,
    registry: ToolRegistry,
    client: AsyncWebClient,
    resumer: Callable[[], Resumer | None] = lambda: None,
    kept_calls: KeptCallReader | None = None,
) -> None:
    """Add the Approve, Deny and Show-all-arguments listeners of ``desk``'s questions to ``app``.
    ``resumer``: gives what answers the questions of other processes (None: they are gone);
    ``kept_calls``: what reads the call of such a question, to show its arguments."""

    async def elsewhere(
        answered: Answer,
        value: str,
        team_id: str,
        user_id: str,
        outcome: Outcome,
        respond: AsyncRespond | None,
    ) -> None:
        go_on = resumer() if answered == "gone" else None
        if go_on is None:
            await privately(respond, _REFUSED[answered])
        else:
            await go_on(value, team_id, user_id, outcome, respond)

    @app.action(views.APPROVE_ACTION)
    @app.action(views.DENY_ACTION)
    async def on_approval(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        await ack()
        outcome: Outcome = "approved" if action["action_id"] == views.APPROVE_ACTION else "denied"
        value, team_id, user_id = _click(body, action)
        try:
            answered = await desk.answer(value, team_id, user_id, outcome)
        except errors.McpCoreError as exc:
            await privately(respond, texts.failed(exc))
            return
        if answered != "ok":
            await elsewhere(answered, value, team_id, user_id, outcome, respond)

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
            await elsewhere(call, value, team_id, user_id, "always", respond)
            return
        outcome: Outcome = "always"
        if call.entry is not None:  # a question is only asked about a catalog entry
            connection_id, tool = call.entry.connection_id, call.entry.tool.name
            try:
                await registry.set_always_allowed(team_id, user_id, connection_id, tool, True)
            except errors.McpCoreError as exc:  # approved once all the same: the person said yes
                outcome = "approved"
                await privately(respond, texts.not_remembered(exc))
        try:
            answered = await desk.answer(value, team_id, user_id, outcome)
        except errors.McpCoreError as exc:
            await privately(respond, texts.failed(exc))
            return
        if answered != "ok":  # expired (or answered elsewhere) while the choice was saved
            await privately(respond, _REFUSED[answered])

    @app.action(views.ARGUMENTS_ACTION)
    async def on_show_arguments(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        """The complete arguments of a long call, in a modal, for the asker only."""
        await ack()
        value, team_id, user_id = _click(body, action)
        found = desk.call_for(value, team_id, user_id)
        call: ToolCall | str = _REFUSED[found] if isinstance(found, str) else found
        if found == "gone" and kept_calls is not None:  # asked on another process
            call = await kept_calls(value, team_id, user_id)
        if isinstance(call, str):
            await privately(respond, call)
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
class KeptQuestion:
    """How a turn keeps its question in the database (``bot.chat`` wires it to the journal)."""

    keep: Callable[[str, datetime, dict[str, Any]], Awaitable[None]]
    """``(question id, expiry, the question's details)``: seal the turn's checkpoint with them
    into its row. Raises ``TurnTakenOverError`` if the turn is no longer this process's, and
    ``StoreError`` if the database failed (the question is then this process's alone)."""
    take: Callable[[str, bool], Awaitable[bool]]
    """``(question id, expired_ok)``: take the answered question for this process; False if
    another process's click took it first."""
    lost: asyncio.Event
    """Set when another process took the turn (``TurnJournal.lost_signal``)."""


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
    kept: KeptQuestion | None = None
    """Set when the question should be open to every process (a checkpoint can be sealed)."""
    audit: Auditor | None = None
    """Where the answer is logged for the workspace's admins (``mcp_core.audit``)."""


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
        kept: KeptQuestion | None = None
        try:
            kept = await _keep(asking, question_id, posted, timeout_s, offers_always)
            if kept is not None and future.done():  # clicked here while it was being written
                if not await kept.take(question_id.partition(".")[0], True):
                    raise errors.TurnContinuedElsewhereError()  # a click elsewhere took the row
            elif kept is not None:
                desk.keep(question_id, functools.partial(kept.take, question_id.partition(".")[0], False))
            outcome = await _click_or_expiry(future, timeout_s, kept, question_id)
        except asyncio.CancelledError:
            if asking.kept is None or not asking.kept.lost.is_set():  # stopped: the turn is closed
                await asking.thread.edit(posted, texts.approval_stopped(call.name))
            raise  # else released at shutdown: the question stays open to the other processes
    finally:
        desk.close(question_id)
    connection = call.entry.connection_name if call.entry is not None else ""
    outcome_text = texts.approval_outcome(call.name, asking.user_id, outcome, connection)
    await asking.thread.edit(posted, outcome_text)
    if asking.audit is not None and call.entry is not None:
        await asking.audit.decision(
            asking.team_id,
            asking.user_id,
            connection=connection,
            tool=call.entry.tool.name,
            decision=outcome,
            arguments=call.arguments,
            redact=asking.redact,
        )
    if outcome == "always":
        asking.allowed_now.add(call.name)
    return outcome in ("approved", "always")


async def _keep(
    asking: Asking, value: str, posted: str, timeout_s: float, offers_always: bool
) -> KeptQuestion | None:
    """Put the question into the turn's row, with what a click elsewhere must check; None
    when it stays this process's alone (not kept, or the database failed)."""
    kept = asking.kept
    if kept is None:
        return None
    question_id, _, digest = value.partition(".")
    details = {"digest": digest, "offers_always": offers_always, "question_ts": posted}
    expires_at = datetime.now(UTC) + timedelta(seconds=timeout_s)
    try:
        await kept.keep(question_id, expires_at, details)
    except errors.TurnTakenOverError:
        raise
    except errors.McpCoreError as exc:
        logger.warning("the question is open on this process only: %s", exc)
        return None
    return kept


async def _click_or_expiry(
    future: asyncio.Future[Outcome], timeout_s: float, kept: KeptQuestion | None, value: str
) -> Outcome | Literal["expired"]:
    """The asker's click here (which took a kept question from the database already, see
    ``ApprovalDesk.answer``), or the expiry — for a kept question, once this process took it.

    Raises:
        TurnContinuedElsewhereError: a click on another process took the question first.
    """
    if kept is None:
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return "expired"
    lost = asyncio.ensure_future(kept.lost.wait())
    try:
        done, _ = await asyncio.wait({future, lost}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lost
    if future in done:
        return future.result()
    if kept.lost.is_set() or not await kept.take(value.partition(".")[0], True):
        raise errors.TurnContinuedElsewhereError()
    return "expired"


def may_always_allow(asking: Asking, call: ToolCall) -> bool:
    """Whether the question offers *Always allow*: not where someone else wrote in the thread
    (they may have put the asker up to it), and not for a tool its server says may delete or
    overwrite things (it asks every time, see ``mcp_core.agent.needs_approval``)."""
    return not asking.others_wrote and call.entry is not None and not call.entry.tool.always_asks
