"""How a turn shows itself in the thread: Slack's streamed message with task cards, or the
progress message edited in place when streaming is not to be had.

``StreamedDisplay`` (the default) streams the model's words with ``chat.startStream`` /
``appendStream`` / ``stopStream`` (slack_sdk's ``chat_stream`` helper), each tool call as a
``task_update`` card, a status line above the composer, and, when the app is an agent, the
session's lifecycle (``processing`` → ``suspended`` while a person is asked → ``closed``), which
gives Slack's own Stop button. What Slack's streams need, from
``../shared/reference/slack-ai.md`` §1.1 and §1.3:

* at most 12,000 markdown characters per stream: a longer answer goes on in a new message;
* in channels the recipient's user and team: the asker's;
* a stream idles out after about five minutes, a status line after two: both are refreshed
  while a tool runs (``refresh_s``); a question to the asker (approval, a server's form) stops
  the stream first and the next words start a new one — never an append after a stop;
* where streaming is refused (an older workspace: ``unknown_method``; a token without the
  scope) the turn goes on as ``EditedDisplay``, and the refusal is remembered for the
  workspace (``SlackSurfaces``); a stream that dies mid-turn becomes that path on its own
  message. The answer is shown once, whichever way it ends.

``EditedDisplay`` is the older path: a "Thinking…" message with a Stop button, edited as calls
start and end (rate-limited), replaced by the answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement
from slack_sdk.web.async_chat_stream import AsyncChatStream

from bot import texts, views
from bot.replies import Thread
from mcp_core.agent import ToolProgress

__all__ = [
    "EditedDisplay",
    "SlackSurfaces",
    "StatusLine",
    "StreamedDisplay",
    "TurnDisplay",
]

logger = logging.getLogger(__name__)

STREAM_MARKDOWN_LIMIT = 12_000
"""Slack's cap on markdown per stream (chat.startStream)."""
STREAM_ROOM = 11_500
"""Markdown written into one stream before the answer goes on in the next (margin for the end)."""
STREAM_BUFFER_CHARS = 256
"""Words held before an append (appendStream is rate-limited): slack_sdk's default."""
PROGRESS_EDIT_INTERVAL_S = 1.0
"""A finished call's line waits for the next edit if the last one was this recent (chat.update
is rate-limited); a starting call always shows, and the answer always replaces the lot."""
REFUSALS = frozenset(
    {"unknown_method", "missing_scope", "not_authorized", "not_allowed_token_type", "method_deprecated"}
)
"""Answers that mean this workspace or token will not do the method at all (not just now)."""
DEAD_STREAM = "message_not_in_streaming_state"


class TurnDisplay(Protocol):
    """What ``bot.chat`` asks of a display along one turn."""

    @property
    def own_ts(self) -> str | None:
        """The turn's message posted before the thread was read (left out of the history)."""
        ...

    async def begin(self) -> None: ...
    async def text(self, piece: str) -> None: ...
    async def progress(self, progress: ToolProgress) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    def let_go(self) -> None:
        """The turn goes on in another process (its question was answered there): stop what
        runs in the background, change nothing in Slack."""
        ...

    async def finish(
        self,
        answer: str,
        *,
        streamed: bool,
        sign_ins: Sequence[ButtonElement] = (),
        feedback: str | None = None,
    ) -> None:
        """The answer, with the sign-in buttons and (``feedback``: the turn's id) 👍 / 👎."""
        ...

    async def fail(self, text: str) -> None: ...


@dataclass
class SlackSurfaces:
    """Which AI surfaces the bot uses, less what a workspace refused (remembered per team, so
    every later turn there goes straight to what works)."""

    streaming: bool = True
    sessions: bool = True
    refresh_s: float = 60.0
    _refused: set[tuple[str, str]] = field(default_factory=set)

    def allows(self, team_id: str, method: str) -> bool:
        return (team_id, method) not in self._refused

    def refused(self, team_id: str, method: str, exc: Exception) -> bool:
        """Note ``exc`` from ``method``; True when it says the workspace will never do it."""
        error = slack_error(exc)
        if error not in REFUSALS:
            return False
        if (team_id, method) not in self._refused:
            logger.info("%s refused in team %s (%s): not used there again", method, team_id, error)
        self._refused.add((team_id, method))
        return True


SLACK_FAILURES = (SlackApiError, aiohttp.ClientError, TimeoutError)
"""What a Web API call raises when Slack refuses it or cannot be reached in time."""


def slack_error(exc: Exception) -> str:
    """Slack's error code (``unknown_method``…), or the kind of network failure."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error"))
    return type(exc).__name__


ENDED = frozenset({"done", "failed", "denied", "stopped"})


def late(known: ToolProgress | None, progress: ToolProgress) -> bool:
    """A server's progress note that arrives after its call ended (notifications race the
    result): the card or line keeps saying how the call ended."""
    return known is not None and known.state in ENDED and progress.state not in ENDED


class _Board:
    """One line per tool call, updated in place as calls start and end."""

    def __init__(self) -> None:
        self._lines: dict[int, str] = {}
        self._progress: dict[int, ToolProgress] = {}
        self._shown_at = -math.inf

    def note(self, progress: ToolProgress) -> bool:
        """Take ``progress`` in; False when it came too late to show."""
        if late(self._progress.get(id(progress.call)), progress):
            return False
        self._progress[id(progress.call)] = progress
        self._lines[id(progress.call)] = texts.tool_line(progress)
        return True

    def due(self) -> bool:
        return time.monotonic() - self._shown_at >= PROGRESS_EDIT_INTERVAL_S

    def shown(self) -> None:
        self._shown_at = time.monotonic()

    def lines(self) -> list[str]:
        return list(self._lines.values())

    def summary(self) -> list[str]:
        return [line for line in self._lines.values() if not line.startswith("⏳")]


class EditedDisplay:
    """The progress message, edited as calls start and end, then replaced by the answer. With
    ``ts`` it takes over a message already in the thread (a stream that died)."""

    def __init__(
        self,
        thread: Thread,
        stop_value: str | None,
        ts: str | None = None,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self._thread = thread
        self._stop_value = stop_value
        self._ts = ts
        self._board = _Board()
        self.on_message = on_message
        """Told the ts of the message this display posts (the turn journal owns it)."""

    @property
    def own_ts(self) -> str | None:
        return self._ts

    async def begin(self) -> None:
        if self._ts is None:
            self._ts = await self._thread.post(*views.agent_working(texts.THINKING, self._stop_value))
            if self.on_message is not None and self._ts:
                self.on_message(self._ts)
        else:
            await self._show()

    async def text(self, piece: str) -> None:
        """Words are shown with the answer, at the end (an edit per word would hit rate limits)."""

    async def progress(self, progress: ToolProgress) -> None:
        if not self._board.note(progress):
            return
        if progress.state == "running" or self._board.due():
            await self._show()

    async def _show(self) -> None:
        assert self._ts is not None
        self._board.shown()
        text = texts.working(self._board.lines())
        await self._thread.edit(self._ts, *views.agent_working(text, self._stop_value))

    def restore(self, calls: Sequence[ToolProgress]) -> None:
        """The lines of calls that ended before this process took the turn over (shown with
        the next edit, as they were)."""
        for progress in calls:
            self._board.note(progress)

    def let_go(self) -> None:
        """Nothing runs in the background."""

    async def pause(self) -> None:
        """The question is its own message; this one keeps saying what runs."""

    async def resume(self) -> None:
        """Nothing to start again."""

    async def finish(
        self,
        answer: str,
        *,
        streamed: bool,
        sign_ins: Sequence[ButtonElement] = (),
        feedback: str | None = None,
    ) -> None:
        assert self._ts is not None
        shown = views.agent_answer(answer, self._board.summary(), sign_ins, feedback=feedback)
        await self._thread.edit(self._ts, *shown)

    async def fail(self, text: str) -> None:
        assert self._ts is not None
        await self._thread.edit(self._ts, text)


class StatusLine:
    """The thread's status line (``assistant.threads.setStatus``) and, for an agent app, the
    agent session's state (``agents.sessions.setStatus``). Best effort: a refused or failing
    call never ends the turn, and a refused method is not called again in that workspace."""

    def __init__(self, thread: Thread, team_id: str, asker: str, surfaces: SlackSurfaces) -> None:
        self._thread = thread
        self._team = team_id
        self._asker = asker
        self._surfaces = surfaces
        self.shown = ""
        self.session: str | None = None

    @property
    def sessions(self) -> bool:
        return self._surfaces.sessions and self._surfaces.allows(self._team, "agents.sessions.setStatus")

    async def show(self, status: str) -> None:
        """``status`` ("" clears it) under the thread's last message."""
        self.shown = status
        if not self._surfaces.allows(self._team, "assistant.threads.setStatus"):
            return
        try:
            await self._thread.client.assistant_threads_setStatus(
                channel_id=self._thread.channel, thread_ts=self._thread.thread, status=status
            )
        except SLACK_FAILURES as exc:
            if not self._surfaces.refused(self._team, "assistant.threads.setStatus", exc):
                logger.info("could not set the thread status: %s", slack_error(exc))

    async def set_session(self, status: str) -> None:
        """The agent session's state: ``processing`` shows Slack's Stop button."""
        if not self.sessions or self.session == status:
            return
        try:
            await self._thread.client.agents_sessions_setStatus(
                channel_id=self._thread.channel,
                thread_ts=self._thread.thread,
                status=status,
                initiator_user_id=self._asker,
            )
            self.session = status
        except SLACK_FAILURES as exc:
            if not self._surfaces.refused(self._team, "agents.sessions.setStatus", exc):
                logger.info("could not set the agent session: %s", slack_error(exc))

    async def refresh(self) -> None:
        """Shown again before Slack clears it (two minutes without a message)."""
        if self.shown:
            await self.show(self.shown)


class StreamedDisplay:
    """The turn as Slack's streamed message (see the module docstring). ``redact`` cleans what
    servers say (progress notes, results) before a task card shows it."""

    def __init__(
        self,
        thread: Thread,
        team_id: str,
        asker: str,
        surfaces: SlackSurfaces,
        stop_value: str | None,
        redact: Callable[[str], str],
    ) -> None:
        self._thread = thread
        self._team = team_id
        self._asker = asker
        self._surfaces = surfaces
        self._stop_value = stop_value
        self._redact = redact
        self.status = StatusLine(thread, team_id, asker, surfaces)
        self._stream: AsyncChatStream | None = None
        self._chars = 0
        self._settled = 0
        """Characters of this round's words already in messages that ended (a long answer's
        earlier parts), so a fallback does not show them twice."""
        self._fallback: EditedDisplay | None = None
        self._tasks: dict[int, ToolProgress] = {}
        self._task_ids: dict[int, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        """One Slack call at a time: parallel calls' cards, words and the refresh share one
        stream, and slack_sdk's helper would start it twice."""
        self.on_message: Callable[[str], None] | None = None
        """Told the ts of each message this display starts (streams, the fallback's message)."""
        self._told: set[str] = set()

    @property
    def own_ts(self) -> str | None:
        return self._fallback.own_ts if self._fallback is not None else None

    @property
    def fell_back(self) -> bool:
        return self._fallback is not None

    async def begin(self) -> None:
        if not self._surfaces.allows(self._team, "chat.startStream"):
            await self._fall_back(None)
            return
        await self.status.set_session("processing")
        await self.status.show(texts.STATUS_THINKING)
        self._refresher = asyncio.create_task(self._refresh(), name="turn-display-refresh")

    async def text(self, piece: str) -> None:
        async with self._lock:
            if self._fallback is None:
                await self._write(views.defused(piece))

    async def progress(self, progress: ToolProgress) -> None:
        async with self._lock:
            await self._progress(progress)

    async def _progress(self, progress: ToolProgress) -> None:
        key = id(progress.call)
        if late(self._tasks.get(key), progress):
            return
        self._tasks[key] = progress
        if progress.state == "pending":
            self._settled = 0  # the words before a call end a round; the answer comes after
        if self._fallback is not None:
            await self._fallback.progress(progress)
            return
        if progress.state == "running":
            await self.status.show(texts.status_calling(progress.call.name))
        elif progress.state != "pending" and not self._running():
            await self.status.show(texts.STATUS_THINKING)
        await self._send(chunks=[self._task_chunk(progress)])

    async def pause(self) -> None:
        """Before a question to the asker: the stream ends here (it would idle out while they
        think), the session is ``suspended``; the next words start a new stream."""
        async with self._lock:
            await self._pause()

    async def _pause(self) -> None:
        if self._fallback is not None:
            return
        if self._stream is not None:
            await self._end(session_status="suspended" if self.status.sessions else None)
            self.status.session = "suspended" if self.status.sessions else self.status.session
        else:
            await self.status.set_session("suspended")

    def let_go(self) -> None:
        self._stop_refreshing()

    async def resume(self) -> None:
        async with self._lock:
            if self._fallback is None:
                await self.status.set_session("processing")
                await self.status.show(texts.STATUS_THINKING)

    async def finish(
        self,
        answer: str,
        *,
        streamed: bool,
        sign_ins: Sequence[ButtonElement] = (),
        feedback: str | None = None,
    ) -> None:
        """The answer ends the turn: the words not yet streamed, then the stream stopped with
        the sign-in buttons and 👍 / 👎; or, on the fallback, the progress message edited into it."""
        async with self._lock:
            await self._finish(answer, streamed, sign_ins, feedback)

    async def _finish(
        self, answer: str, streamed: bool, sign_ins: Sequence[ButtonElement], feedback: str | None
    ) -> None:
        self._stop_refreshing()
        if self._fallback is None and not streamed:
            await self._write(views.defused(answer))
        if self._fallback is None:
            blocks: list[Block] = []
            if sign_ins:
                blocks.append(
                    ActionsBlock(block_id="sign_in", elements=list(sign_ins[: views.ACTIONS_LIMIT]))
                )
            if feedback:
                blocks.append(views.feedback_block(feedback))
            if await self._end(session_status="closed" if self.status.sessions else None, blocks=blocks):
                return
        if self._fallback is None:  # nothing was ever streamed, and no stream could start
            await self._fall_back(None)
        assert self._fallback is not None
        await self._fallback.finish(
            answer[self._settled :] if streamed else answer,
            streamed=streamed,
            sign_ins=sign_ins,
            feedback=feedback,
        )
        await self._close_session()

    async def fail(self, text: str) -> None:
        """What went wrong ends the turn: after the words streamed so far, or as a message."""
        async with self._lock:
            self._stop_refreshing()
            if self._fallback is None and self._stream is not None:
                await self._write("\n\n" + text)
                if await self._end(session_status="closed" if self.status.sessions else None):
                    return
            if self._fallback is not None:
                await self._fallback.fail(text)
            else:
                await self._thread.post(text)
            await self._close_session()

    # -- the stream ---------------------------------------------------------------------------

    async def _write(self, markdown: str) -> None:
        """Markdown into the stream, going on in a new stream at ``STREAM_ROOM``."""
        while markdown and self._fallback is None:
            room = STREAM_ROOM - self._chars
            if room <= 0:
                self._settled += self._chars
                await self._end()
                continue
            piece, markdown = markdown[:room], markdown[room:]
            if await self._send(markdown=piece):
                self._chars += len(piece)

    async def _send(self, markdown: str | None = None, chunks: list[dict[str, Any]] | None = None) -> bool:
        """One append (starting the stream first when there is none); False when it fell back."""
        if self._fallback is not None:
            return False
        if self._stream is None:
            self._stream = await self._thread.client.chat_stream(
                channel=self._thread.channel,
                thread_ts=self._thread.thread,
                recipient_user_id=self._asker,
                recipient_team_id=self._team,
                buffer_size=STREAM_BUFFER_CHARS,
            )
            self._chars = 0
            if chunks is None:  # a new message carries its calls' cards on from the last one
                chunks = [self._task_chunk(p) for p in self._tasks.values() if p.state == "running"] or None
        try:
            await self._stream.append(markdown_text=markdown, chunks=chunks)
        except SLACK_FAILURES as exc:
            await self._broken("chat.appendStream" if self._stream.ts else "chat.startStream", exc)
            return False
        self._tell(self._stream.ts)
        return True

    def _tell(self, ts: str | None) -> None:
        if ts and ts not in self._told and self.on_message is not None:
            self._told.add(ts)
            self.on_message(ts)

    async def _end(self, *, session_status: str | None = None, blocks: list[Block] | None = None) -> bool:
        """Stop the stream (its buffered words go with the stop); False when it could not be."""
        stream, self._stream = self._stream, None
        if stream is None:
            return False
        chars, self._chars = self._chars, 0
        try:
            await stream.stop(session_status=session_status, blocks=blocks or None)
        except SLACK_FAILURES as exc:
            self._stream, self._chars = stream, chars
            await self._broken("chat.stopStream" if stream.ts else "chat.startStream", exc)
            return False
        self._tell(stream.ts)  # a stream whose first words went with its stop
        if session_status is not None:
            self.status.session = session_status
        return True

    async def _broken(self, method: str, exc: Exception) -> None:
        """A stream Slack would not start or keep: the turn goes on by edits, on the stream's
        own message when it had one."""
        error = slack_error(exc)
        stream, self._stream = self._stream, None
        ts = stream.ts if stream is not None else None
        if ts is None:
            self._surfaces.refused(self._team, "chat.startStream", exc)
        logger.info("%s failed (%s): the turn goes on by edits", method, error)
        await self._fall_back(ts)

    async def _fall_back(self, ts: str | None) -> None:
        self._stop_refreshing()
        self._fallback = EditedDisplay(self._thread, self._stop_value, ts, self.on_message)
        for progress in self._tasks.values():
            self._fallback._board.note(progress)
        await self._fallback.begin()

    async def _close_session(self) -> None:
        if self.status.session not in (None, "closed"):
            await self.status.set_session("closed")
        if self.status.shown:
            await self.status.show("")

    # -- cards and refresh --------------------------------------------------------------------

    def _task_chunk(self, progress: ToolProgress) -> dict[str, Any]:
        key = id(progress.call)
        task_id = self._task_ids.setdefault(key, f"call-{len(self._task_ids) + 1}")
        return views.task_update(task_id, progress, self._redact)

    def _running(self) -> bool:
        return any(p.state == "running" for p in self._tasks.values())

    async def _refresh(self) -> None:
        """While the turn works: the status line shown again, and a running call's card sent
        again, before either idles out."""
        while self._fallback is None:
            await asyncio.sleep(self._surfaces.refresh_s)
            async with self._lock:
                if self._fallback is not None:
                    return
                await self.status.refresh()  # best effort: it never raises
                running = [self._task_chunk(p) for p in self._tasks.values() if p.state == "running"]
                if running and self._stream is not None:
                    await self._send(chunks=running)

    def _stop_refreshing(self) -> None:
        """The refresh ends (unless it is the one asking: it then ends by itself)."""
        refresher, self._refresher = self._refresher, None
        if refresher is not None and refresher is not asyncio.current_task():
            refresher.cancel()
