"""A server's questions mid-call (elicitation) in Slack: the thread message, the modal, the link.

A modal needs a ``trigger_id``, which only a click gives, so a form question is a message in
the thread with *Answer <server>'s question* and *Decline*; only the asker's click counts
(anyone else is told, only them). The click opens the form (``views.open``); Submit is checked
against the server's schema (field errors shown in the modal, ``response_action: errors``) and
sent as ``accept``; *Decline* is ``decline``; closing the modal is ``cancel``
(``notify_on_close``). How long a question waits is the core's (ELICITATION_TIMEOUT_S, then
cancel); when it stops waiting the message says so.

A link (URL mode) is shown to the asker only (``chat.postEphemeral`` in the thread, a DM where
that fails), written out in full with its host and a link button; it is never fetched or
opened by the bot. Shown counts as ``accept``: the server learns the outcome out of band.

Questions wait on futures of this process (``QuestionDesk``). Behind a load balancer a click
may reach another process: where questions can be kept (a turn journal and a keyring), each
form is also kept in the database, sealed (``mcp_core.kept_questions``); a process that does
not hold the question opens the form from there for the asker, checks the answer against it
and writes it, and the asking process, which looks for it while it waits, takes it as its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import question_views, texts
from bot._payload import owner
from bot.question_views import escape
from bot.replies import Thread, privately
from mcp_core.agent import ToolCall, ToolProgress
from mcp_core.call_events import CallEvents, progress_note
from mcp_core.elicitation import (
    ElicitAnswer,
    ElicitRequest,
    FormRequest,
    RefusedRequest,
    UrlRequest,
    check_answers,
)
from mcp_core.errors import McpCoreError
from mcp_core.kept_questions import KeptQuestions

__all__ = ["QuestionDesk", "ask_in_thread", "call_events", "register_questions"]

logger = logging.getLogger(__name__)

CLEANUP_TIMEOUT_S = 5.0
"""How long the message's last edit may take once the core stopped waiting (shielded)."""


@dataclass
class _Question:
    team_id: str
    user_id: str
    form: FormRequest
    future: asyncio.Future[ElicitAnswer] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class QuestionDesk:
    """Form questions waiting in this process, by id (the buttons' value, the modal's metadata).
    ``kept``: where they are also kept for other processes (None: answered here only), each
    until ``expires_s`` from its asking (past the core's own bound on the wait)."""

    def __init__(self, kept: KeptQuestions | None = None, *, expires_s: float = 3600.0) -> None:
        self._waiting: dict[str, _Question] = {}
        self.kept = kept
        self.expires_s = expires_s

    def open(self, team_id: str, user_id: str, form: FormRequest) -> tuple[str, asyncio.Future[ElicitAnswer]]:
        question_id = uuid.uuid4().hex
        question = _Question(team_id, user_id, form)
        self._waiting[question_id] = question
        return question_id, question.future

    def find(self, question_id: str, team_id: str, user_id: str) -> _Question | str:
        """The open question for its asker, else "gone" or the asker's id (someone else clicked)."""
        question = self._waiting.get(question_id)
        if question is None or question.future.done():
            return "gone"
        if (question.team_id, question.user_id) != (team_id, user_id):
            return question.user_id
        return question

    def answer(self, question_id: str, team_id: str, user_id: str, answer: ElicitAnswer) -> bool:
        question = self.find(question_id, team_id, user_id)
        if isinstance(question, str):
            return False
        question.future.set_result(answer)
        return True

    def close(self, question_id: str) -> None:
        self._waiting.pop(question_id, None)


async def ask_in_thread(
    desk: QuestionDesk,
    thread: Thread,
    team_id: str,
    user_id: str,
    request: ElicitRequest,
) -> ElicitAnswer:
    """Show ``request`` to the asker in ``thread`` and wait for their answer (the core bounds
    the wait and cancels it; the message then says the question is closed)."""
    server = escape(request.server)
    if isinstance(request, RefusedRequest):
        await thread.post(texts.question_refused(server, escape(request.why)))
        return ElicitAnswer("decline")
    if isinstance(request, UrlRequest):
        return await _show_link(thread, user_id, request)
    question_id, future = desk.open(team_id, user_id, request)
    kept = await _keep(desk, question_id, team_id, user_id, request)
    posted = ""
    try:
        text, blocks = question_views.question_blocks(question_id, user_id, request)
        posted = await thread.post(text, blocks)
        answer = await _first_answer(future, kept, question_id, team_id, user_id)
    except BaseException as exc:
        if posted:
            ended = "unanswered" if isinstance(exc, asyncio.CancelledError) else "failed"
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT_S):
                await thread.edit(posted, texts.question_outcome(server, user_id, ended))
        raise
    finally:
        desk.close(question_id)
        if kept is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT_S):
                await _forget(kept, question_id)
    await thread.edit(posted, texts.question_outcome(server, user_id, answer.action))
    return answer


async def _keep(
    desk: QuestionDesk, question_id: str, team_id: str, user_id: str, form: FormRequest
) -> KeptQuestions | None:
    """The question kept for other processes; None when it cannot be (it is then this
    process's alone, as without a keyring)."""
    if desk.kept is None:
        return None
    expires_at = datetime.now(UTC) + timedelta(seconds=desk.expires_s)
    try:
        await desk.kept.keep(question_id, team_id, user_id, form, expires_at)
    except McpCoreError as exc:
        logger.warning("could not keep a question for other processes (%s); it is answered here only", exc)
        return None
    return desk.kept


async def _forget(kept: KeptQuestions, question_id: str) -> None:
    try:
        await kept.forget(question_id)
    except McpCoreError as exc:  # it expires on its own
        logger.info("could not forget question %s: %s", question_id, exc)


async def _first_answer(
    future: asyncio.Future[ElicitAnswer],
    kept: KeptQuestions | None,
    question_id: str,
    team_id: str,
    user_id: str,
) -> ElicitAnswer:
    """The answer given here (``future``) or, with ``kept``, on another process."""
    if kept is None:
        return await future
    elsewhere = asyncio.ensure_future(kept.wait(question_id, team_id, user_id))
    try:
        done, _ = await asyncio.wait({future, elsewhere}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        elsewhere.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await elsewhere
    return future.result() if future in done else elsewhere.result()


async def _show_link(thread: Thread, user_id: str, request: UrlRequest) -> ElicitAnswer:
    """The link, to the asker only; ``accept`` once shown, ``cancel`` when it could not be."""
    text, blocks = question_views.link_blocks(request)
    client = thread.client
    try:
        await client.chat_postEphemeral(
            channel=thread.channel, user=user_id, thread_ts=thread.thread, text=text, blocks=blocks
        )
    except SlackApiError as exc:
        logger.info("ephemeral link failed (%s); sending it by DM", exc.response.get("error"))
        try:
            await client.chat_postMessage(channel=user_id, text=text, blocks=blocks)
        except SlackApiError as again:
            logger.warning("could not show %s's link: %s", request.server, again.response.get("error"))
            return ElicitAnswer("cancel")
    await thread.post(texts.link_shown_in_thread(escape(request.server), user_id))
    return ElicitAnswer("accept")


def call_events(
    call: ToolCall,
    show: Callable[[ToolProgress], Awaitable[None]],
    desk: QuestionDesk | None,
    thread: Thread,
    team_id: str,
    user_id: str,
    redact: Callable[[str], str],
    *,
    pause: Callable[[], Awaitable[None]] | None = None,
    resume: Callable[[], Awaitable[None]] | None = None,
) -> CallEvents:
    """One agent call's events: the server's progress on the call's own line (``show``), its
    questions asked of the asker in ``thread`` (none without a ``desk``: then cancelled).
    ``pause`` / ``resume`` bracket a question (a streamed answer ends before it, as before an
    approval, and goes on in a new message after)."""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        await show(ToolProgress(call, "running", note=redact(progress_note(progress, total, message))))

    async def on_task(task_id: str, status: str, message: str | None) -> None:
        note = redact(f"task {status}" + (f": {message}" if message else ""))
        await show(ToolProgress(call, "running", note=note, task_id=task_id))

    async def on_elicit(request: ElicitRequest) -> ElicitAnswer:
        assert desk is not None
        if pause is not None:
            await pause()
        try:
            return await ask_in_thread(desk, thread, team_id, user_id, request)
        finally:
            if resume is not None:
                await resume()

    where = f"{thread.channel}/{thread.thread}"
    return CallEvents(
        on_progress=on_progress, on_elicit=on_elicit if desk else None, surface=where, on_task=on_task
    )


async def _form(desk: QuestionDesk, question_id: str, team_id: str, user_id: str) -> FormRequest | str:
    """The open question's form for its asker, held here or kept by the process that asked;
    else "gone" or the asker's id (someone else clicked)."""
    found = desk.find(question_id, team_id, user_id)
    if not isinstance(found, str):
        return found.form
    if found != "gone" or desk.kept is None or not question_id:
        return found
    try:
        return await desk.kept.find(question_id, team_id, user_id)
    except McpCoreError as exc:
        logger.warning("could not read a question kept by another process: %s", exc)
        return "gone"


async def _answer(
    desk: QuestionDesk, question_id: str, team_id: str, user_id: str, answer: ElicitAnswer
) -> bool:
    """Give the asker's answer to the process waiting for it (this one, or the one that asked)."""
    if desk.answer(question_id, team_id, user_id, answer):
        return True
    if desk.kept is None or not question_id:
        return False
    try:
        return await desk.kept.answer(question_id, team_id, user_id, answer)
    except McpCoreError as exc:
        logger.warning("could not pass an answer to the process that asked: %s", exc)
        return False


def _refusal(found: str) -> str:
    return texts.QUESTION_GONE if found == "gone" else texts.question_not_yours(found)


def register_questions(app: AsyncApp, desk: QuestionDesk, client: AsyncWebClient) -> None:
    """Add the Answer / Decline buttons' and the modal's listeners to ``app``."""

    @app.action(question_views.QUESTION_OPEN_ACTION)
    async def on_open(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        await ack()
        value = str(action.get("value", ""))
        form = await _form(desk, value, *owner(body))
        if isinstance(form, str):
            await privately(respond, _refusal(form))
            return
        modal = question_views.question_modal(value, form)
        try:
            await client.views_open(trigger_id=body.get("trigger_id"), view=modal)
        except SlackApiError as exc:
            logger.warning("could not open a question's modal: %s", exc.response.get("error"))
            await privately(respond, texts.QUESTION_DID_NOT_OPEN)

    @app.action(question_views.QUESTION_DECLINE_ACTION)
    async def on_decline(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        await ack()
        value, (team_id, user_id) = str(action.get("value", "")), owner(body)
        form = await _form(desk, value, team_id, user_id)
        if isinstance(form, str):
            await privately(respond, _refusal(form))
            return
        await _answer(desk, value, team_id, user_id, ElicitAnswer("decline"))

    @app.action("mcp_question_link")
    async def on_link(ack: AsyncAck) -> None:
        await ack()  # Slack sends link buttons' clicks too; the browser already has the page

    @app.view_submission(question_views.QUESTION_CALLBACK)
    async def on_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        value, (team_id, user_id) = str(view.get("private_metadata") or ""), owner(body)
        form = await _form(desk, value, team_id, user_id)
        if isinstance(form, str):
            await ack()  # closes the modal: nothing waits for it any more
            return
        checked = check_answers(form, question_views.read_modal(form, view))
        if checked.errors:
            index = {f.name: f"f{n}" for n, f in enumerate(form.fields)}
            await ack(response_action="errors", errors={index[k]: v for k, v in checked.errors.items()})
            return
        await ack()
        await _answer(desk, value, team_id, user_id, checked)

    @app.view_closed(question_views.QUESTION_CALLBACK)
    async def on_closed(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        await _answer(desk, str(view.get("private_metadata") or ""), *owner(body), ElicitAnswer("cancel"))
