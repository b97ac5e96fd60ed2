"""The fake Slack's AI-app surfaces: streamed messages, thread status, agent sessions, external uploads.

`FakeSlack` owns one `AiSurfaces` as `fake.ai`; its Web API handler hands these methods here:

    chat.startStream / appendStream / stopStream  -> fake.ai.streams[ts]  (a `Stream`)
    assistant.threads.setStatus                   -> fake.ai.thread_status(channel_id, thread_ts)
    agents.sessions.setStatus, stopStream's session_status -> fake.ai.sessions[(channel_id, thread_ts)]
    files.getUploadURLExternal, POST <upload_url>, files.completeUploadExternal -> fake.ai.uploads[file_id]

Validation follows Slack as described in ../shared/reference/slack-ai.md (§0, §1.1 "Text streaming", "Stream
expiry", "Thread status", "Agent sessions", §1.3) and the argument names slack_sdk 3.48 sends
(`AsyncWebClient.chat_startStream` …, `AsyncChatStream`, `models/messages/chunk.py`, `files_upload_v2`).
Where Slack's docs give no error name the fake answers `invalid_arguments` with a
`response_metadata.messages` line saying what was wrong, which is how Slack reports schema errors on its
newer JSON methods. Timers read `clock` (default `time.monotonic`); tests swap in a `ManualClock` and
`advance()` it instead of sleeping.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHUNK_TYPES",
    "MARKDOWN_LIMIT",
    "SESSION_STATUSES",
    "STATUS_CLEAR_S",
    "STREAM_IDLE_S",
    "TASK_STATUSES",
    "WORKSPACE_URL",
    "AgentSession",
    "AiSurfaces",
    "ManualClock",
    "Stream",
    "ThreadStatus",
    "Upload",
]

MARKDOWN_LIMIT = 12_000  # chat.*Stream markdown_text, per stream (reference §1.1 "Text streaming")
STREAM_IDLE_S = 300.0  # "about 5 minutes idle" (Kortix PR #3438, Dust PR #25031); Slack documents none
STATUS_CLEAR_S = 120.0  # assistant.threads.setStatus "auto-clears after 2 min without a message"
LOADING_MESSAGES_MAX = 10
SESSION_TITLE_MAX = 200
WORKSPACE_URL = "https://fake-team.slack.com/"  # auth.test's `url`; files' permalinks start with it
MAX_UPLOAD_BYTES = 1024**3  # Slack's own cap is 1 GB (slack_sdk MAX_V2_FILE_SIZE); tests lower it
CHUNK_TYPES = frozenset({"markdown_text", "task_update", "plan_update", "blocks"})
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
TASK_DISPLAY_MODES = frozenset({"timeline", "plan"})
SESSION_STATUSES = frozenset({"active", "processing", "suspended", "closed"})


class ManualClock:
    """A clock tests move by hand, so idle expiry is proven without waiting."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Stream:
    """One streamed message. `calls` is every accepted start/append/stop as `(method, chunks)`, with a
    top-level `markdown_text` turned into a leading `markdown_text` chunk; `message` is the very dict stored
    in `fake.messages[channel]`, so conversations.replies shows the text streamed so far."""

    channel: str
    ts: str
    thread_ts: str
    recipient_user_id: str | None
    recipient_team_id: str | None
    task_display_mode: str
    message: dict[str, Any]
    last_active: float
    state: str = "streaming"  # streaming | stopped | expired
    markdown_chars: int = 0
    calls: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    stop_body: dict[str, Any] | None = None

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [chunk for _, chunks in self.calls for chunk in chunks]

    @property
    def text(self) -> str:
        return "".join(c["text"] for c in self.chunks if c["type"] == "markdown_text")

    def tasks(self) -> dict[str, dict[str, Any]]:
        """Each task card's latest state, by id (a later task_update for the same id replaces the earlier)."""
        latest: dict[str, dict[str, Any]] = {}
        for chunk in self.chunks:
            if chunk["type"] == "task_update":
                latest[chunk["id"]] = latest.get(chunk["id"], {}) | chunk
        return latest


@dataclass
class ThreadStatus:
    status: str
    loading_messages: list[str]
    set_at: float


@dataclass
class AgentSession:
    channel_id: str
    thread_ts: str | None
    status: str
    title: str | None = None
    initiator_user_id: str | None = None
    history: list[str] = field(default_factory=list)


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    completed: bool = False
    channel_id: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    permalink: str | None = None
    """Set on completion, as files.completeUploadExternal answers it."""


def _invalid(message: str) -> dict[str, Any]:
    return {
        "ok": False,
        "error": "invalid_arguments",
        "response_metadata": {"messages": [f"[ERROR] {message}"]},
    }


def _error(error: str, message: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"ok": False, "error": error}
    return answer | ({"response_metadata": {"messages": [f"[ERROR] {message}"]}} if message else {})


def _missing(body: dict[str, Any], *names: str) -> dict[str, Any] | None:
    for name in names:
        if body.get(name) in (None, ""):
            return _invalid(f"missing required field: {name}")
    return None


def _is_dm(channel: str) -> bool:
    return channel.startswith("D")


def chunk_problems(chunks: object) -> list[str]:
    """What Slack would refuse in a `chunks` array, json-pointer style (shapes from slack_sdk's
    `models/messages/chunk.py` and the reference's chunk list)."""
    if not isinstance(chunks, list):
        return ["must be an array [json-pointer:/chunks]"]
    problems = []
    for n, chunk in enumerate(chunks):
        at = f"/chunks/{n}"
        if not isinstance(chunk, dict):
            problems.append(f"must be an object [json-pointer:{at}]")
            continue
        kind = chunk.get("type")
        required = {
            "markdown_text": ("text",),
            "task_update": ("id", "title", "status"),
            "plan_update": ("title",),
        }
        if kind not in CHUNK_TYPES:
            problems.append(f"unknown chunk type {kind!r} [json-pointer:{at}/type]")
            continue
        for name in required.get(kind, ()):
            if not isinstance(chunk.get(name), str) or not chunk[name]:
                problems.append(f"must provide a string [json-pointer:{at}/{name}]")
        if kind == "task_update":
            if chunk.get("status") not in TASK_STATUSES:
                problems.append(f"must be one of {sorted(TASK_STATUSES)} [json-pointer:{at}/status]")
            for name in ("details", "output"):
                if name in chunk and not isinstance(chunk[name], str):
                    problems.append(f"must be a string [json-pointer:{at}/{name}]")
            sources = chunk.get("sources", [])
            if not isinstance(sources, list) or not all(
                isinstance(s, dict) and s.get("url") for s in sources
            ):
                problems.append(f"must be an array of url sources [json-pointer:{at}/sources]")
        if kind == "blocks" and not isinstance(chunk.get("blocks"), list):
            problems.append(f"must be an array [json-pointer:{at}/blocks]")
    return problems


class AiSurfaces:
    """State and validation for the AI-app methods; see the module docstring.

    Settable by tests: `clock`, `stream_idle_s`, `status_clear_s`, `max_upload_bytes`,
    `agent_session_stopped_subscribed` (False adds Slack's `missing_agent_session_stopped_event_subscription`
    warning to agents.sessions.setStatus answers).
    """

    def __init__(
        self,
        messages: Callable[[], dict[str, list[dict[str, Any]]]],
        bot: dict[str, str],
        upload_base: Callable[[], str],
    ):
        """`messages` returns the fake's `messages` store (read on each use: tests may replace it)."""
        self.clock: Callable[[], float] = time.monotonic
        self.stream_idle_s = STREAM_IDLE_S
        self.status_clear_s = STATUS_CLEAR_S
        self.max_upload_bytes = MAX_UPLOAD_BYTES
        self.agent_session_stopped_subscribed = True
        self.streams: dict[str, Stream] = {}
        self.sessions: dict[tuple[str, str | None], AgentSession] = {}
        self.uploads: dict[str, Upload] = {}
        self._statuses: dict[tuple[str, str], ThreadStatus] = {}
        self._messages = messages
        self._bot = bot
        self._upload_base = upload_base
        self._file_ids = itertools.count(1)

    # -- queries for tests ------------------------------------------------------------------------------

    def thread_status(self, channel_id: str, thread_ts: str) -> ThreadStatus | None:
        """The status line Slack would show now: None once cleared (empty status, a bot message in the
        thread, or `status_clear_s` without a message)."""
        current = self._statuses.get((channel_id, thread_ts))
        if current is None or not current.status or self.clock() - current.set_at >= self.status_clear_s:
            return None
        return current

    def kill_stream(self, ts: str) -> None:
        """A stream that died server-side: its next append or stop is message_not_in_streaming_state."""
        self.streams[ts].state = "expired"

    # -- dispatch ---------------------------------------------------------------------------------------

    def handle(self, method: str, body: dict[str, Any], ts: str) -> dict[str, Any] | None:
        """Slack's answer to `method`, or None when it is not one of these methods."""
        match method:
            case "chat.startStream":
                return self._start(body, ts)
            case "chat.appendStream" | "chat.stopStream":
                return self._append_or_stop(method, body)
            case "assistant.threads.setStatus":
                return self._set_thread_status(body)
            case "agents.sessions.setStatus":
                return self._set_session_status(body)
            case "files.getUploadURLExternal":
                return self._upload_url(body)
            case "files.completeUploadExternal":
                return self._complete_upload(body, ts)
            case "chat.postMessage" | "chat.update":
                self._note_message(method, body)
        return None

    # -- streaming --------------------------------------------------------------------------------------

    def _chunks_of(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        chunks: list[dict[str, Any]] = []
        if (text := body.get("markdown_text")) is not None:
            if not isinstance(text, str):
                return [], _invalid("must provide a string [json-pointer:/markdown_text]")
            chunks.append({"type": "markdown_text", "text": text})
        if "chunks" in body:
            if problems := chunk_problems(body["chunks"]):
                return [], {
                    "ok": False,
                    "error": "invalid_arguments",
                    "response_metadata": {"messages": problems},
                }
            chunks += body["chunks"]
        return chunks, None

    def _too_long(self, stream_chars: int, chunks: list[dict[str, Any]]) -> bool:
        added = sum(len(c["text"]) for c in chunks if c["type"] == "markdown_text")
        return stream_chars + added > MARKDOWN_LIMIT

    def _start(self, body: dict[str, Any], ts: str) -> dict[str, Any]:
        """chat.startStream: `channel` and `thread_ts` required (streamed messages are always replies);
        outside DMs `recipient_user_id` and `recipient_team_id` are required too. `markdown_text` and
        `chunks` are optional here (slack_sdk's `ChatStream.stop()` starts an empty stream when nothing was
        flushed yet)."""
        if problem := _missing(body, "channel", "thread_ts"):
            return problem
        channel = body["channel"]
        if not _is_dm(channel):
            for name in ("recipient_user_id", "recipient_team_id"):
                if not body.get(name):
                    return _error(f"missing_{name}", f"{name} is required when streaming to a channel")
        mode = body.get("task_display_mode", "timeline")
        if mode not in TASK_DISPLAY_MODES:
            return _invalid(f"must be one of {sorted(TASK_DISPLAY_MODES)} [json-pointer:/task_display_mode]")
        chunks, problem = self._chunks_of(body)
        if problem:
            return problem
        if self._too_long(0, chunks):
            return _error("msg_too_long")
        message = {"type": "message", "user": self._bot["user"], "bot_id": self._bot["bot"], "ts": ts}
        message |= {"thread_ts": body["thread_ts"], "text": ""}
        stream = Stream(
            channel=channel,
            ts=ts,
            thread_ts=body["thread_ts"],
            recipient_user_id=body.get("recipient_user_id"),
            recipient_team_id=body.get("recipient_team_id"),
            task_display_mode=mode,
            message=message,
            last_active=self.clock(),
        )
        self.streams[ts] = stream
        self._messages().setdefault(channel, []).append(message)
        self._clear_status(channel, body["thread_ts"])
        self._accept(stream, "chat.startStream", chunks)
        return {"ok": True, "channel": channel, "ts": ts}

    def _append_or_stop(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """chat.appendStream / chat.stopStream: `channel` and `ts` required; append needs `markdown_text` or
        `chunks`. After stop, after `stream_idle_s` without an append, or after `kill_stream`, both answer
        `message_not_in_streaming_state` (hermes-agent #93648; python-slack-sdk #1859)."""
        if problem := _missing(body, "channel", "ts"):
            return problem
        stream = self.streams.get(body["ts"])
        if stream is None or stream.channel != body["channel"]:
            return _error("message_not_found")
        if stream.state == "streaming" and self.clock() - stream.last_active >= self.stream_idle_s:
            stream.state = "expired"
        if stream.state != "streaming":
            return _error("message_not_in_streaming_state")
        stopping = method == "chat.stopStream"
        if not stopping and body.get("markdown_text") is None and "chunks" not in body:
            return _invalid("must provide markdown_text or chunks")
        session_status = body.get("session_status")
        if stopping and session_status is not None and session_status not in SESSION_STATUSES:
            return _invalid(f"must be one of {sorted(SESSION_STATUSES)} [json-pointer:/session_status]")
        chunks, problem = self._chunks_of(body)
        if problem:
            return problem
        if self._too_long(stream.markdown_chars, chunks):
            return _error("msg_too_long")
        self._accept(stream, method, chunks)
        if stopping:
            stream.state, stream.stop_body = "stopped", body
            stream.message |= {k: body[k] for k in ("blocks", "metadata") if k in body}
            if session_status is not None:
                self._record_session(stream.channel, stream.thread_ts, session_status)
        return {"ok": True, "channel": stream.channel, "ts": stream.ts}

    def _accept(self, stream: Stream, method: str, chunks: list[dict[str, Any]]) -> None:
        stream.calls.append((method, chunks))
        stream.markdown_chars += sum(len(c["text"]) for c in chunks if c["type"] == "markdown_text")
        stream.message["text"] = stream.text
        stream.last_active = self.clock()

    def _note_message(self, method: str, body: dict[str, Any]) -> None:
        """A bot message in a thread clears its status line; chat.update on a streamed message (the
        fallback once a stream died, slack_sdk PR #1880) replaces its stored text and blocks."""
        if method == "chat.postMessage" and body.get("thread_ts"):
            self._clear_status(str(body.get("channel")), str(body["thread_ts"]))
        stream = self.streams.get(str(body.get("ts")))
        if method == "chat.update" and stream is not None and stream.channel == body.get("channel"):
            stream.message |= {k: body[k] for k in ("text", "blocks") if k in body}

    # -- status and sessions ----------------------------------------------------------------------------

    def _clear_status(self, channel_id: str, thread_ts: str) -> None:
        self._statuses.pop((channel_id, thread_ts), None)

    def _set_thread_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """assistant.threads.setStatus: `channel_id`, `thread_ts` and `status` required, where an empty
        `status` clears it; `loading_messages` at most 10 strings (reference §1.1 "Thread status")."""
        if problem := _missing(body, "channel_id", "thread_ts"):
            return problem
        status = body.get("status")
        if not isinstance(status, str):
            return _invalid("missing required field: status")
        loading = body.get("loading_messages", [])
        if not isinstance(loading, list) or not all(isinstance(m, str) for m in loading):
            return _invalid("must be an array of strings [json-pointer:/loading_messages]")
        if len(loading) > LOADING_MESSAGES_MAX:
            return _invalid(
                f"no more than {LOADING_MESSAGES_MAX} items allowed [json-pointer:/loading_messages]"
            )
        key = (body["channel_id"], body["thread_ts"])
        self._statuses[key] = ThreadStatus(status=status, loading_messages=loading, set_at=self.clock())
        return {"ok": True}

    def _set_session_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """agents.sessions.setStatus: `channel_id` and `status` ∈ active|processing|suspended|closed
        required; `thread_ts`, `title` (≤200, on create), `initiator_user_id` optional. An app not declared as
        an agent (no `assistant:write`) gets `not_authorized`, checked before this (reference §1.1 "Agent
        sessions")."""
        if problem := _missing(body, "channel_id", "status"):
            return problem
        if body["status"] not in SESSION_STATUSES:
            return _invalid(f"must be one of {sorted(SESSION_STATUSES)} [json-pointer:/status]")
        title = body.get("title")
        if title is not None and (not isinstance(title, str) or len(title) > SESSION_TITLE_MAX):
            return _invalid(f"must be less than {SESSION_TITLE_MAX + 1} characters [json-pointer:/title]")
        session = self._record_session(body["channel_id"], body.get("thread_ts"), body["status"])
        session.title = title or session.title
        session.initiator_user_id = body.get("initiator_user_id") or session.initiator_user_id
        answer: dict[str, Any] = {"ok": True}
        if not self.agent_session_stopped_subscribed:
            answer["warning"] = "missing_agent_session_stopped_event_subscription"
        return answer

    def _record_session(self, channel_id: str, thread_ts: str | None, status: str) -> AgentSession:
        session = self.sessions.setdefault(
            (channel_id, thread_ts), AgentSession(channel_id=channel_id, thread_ts=thread_ts, status=status)
        )
        session.status = status
        session.history.append(status)
        return session

    # -- external uploads -------------------------------------------------------------------------------

    def _upload_url(self, body: dict[str, Any]) -> dict[str, Any]:
        """files.getUploadURLExternal: `filename` and a positive integer `length` (bytes) required; a length
        above `max_upload_bytes` is `file_too_large`."""
        if problem := _missing(body, "filename", "length"):
            return problem
        try:
            length = int(body["length"])
        except (TypeError, ValueError):
            return _invalid("must be an integer [json-pointer:/length]")
        if length <= 0:
            return _invalid("must be a positive integer [json-pointer:/length]")
        if length > self.max_upload_bytes:
            return _error("file_too_large", f"length {length} exceeds {self.max_upload_bytes} bytes")
        file_id = f"F{next(self._file_ids):08d}"
        self.uploads[file_id] = Upload(file_id=file_id, filename=str(body["filename"]), length=length)
        return {"ok": True, "upload_url": f"{self._upload_base()}{file_id}", "file_id": file_id}

    def receive_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        """The POST to an upload_url: (HTTP status, body). Bytes are kept only when their count is the
        `length` promised to files.getUploadURLExternal."""
        upload = self.uploads.get(file_id)
        if upload is None or upload.completed:
            return 404, "upload url not found"
        if len(data) != upload.length:
            return 400, f"length mismatch: got {len(data)} bytes, expected {upload.length}"
        upload.data = data
        return 200, f"OK - {len(data)}"

    def _complete_upload(self, body: dict[str, Any], ts: str) -> dict[str, Any]:
        """files.completeUploadExternal: `files` a JSON array of `{id, title?}` whose bytes arrived;
        `thread_ts` only with `channel_id`. An unknown id, one whose upload never (correctly) arrived, or
        one already completed is `file_not_found` (the messages say which). Shared files become a bot
        message in the channel (thread) carrying `files` and the `initial_comment` as text. Each file in the
        answer carries what files.info would (Slack has answered so since 2023; slack_sdk 3.23 stopped
        calling files.info): here its id, title, name, size, user, created and permalink."""
        files = body.get("files")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) for f in files):
            return _invalid("files must be a non-empty JSON array of objects [json-pointer:/files]")
        if body.get("thread_ts") and not body.get("channel_id"):
            return _invalid("thread_ts requires channel_id")
        found = []
        for f in files:
            upload = self.uploads.get(str(f.get("id")))
            if upload is None:
                return _error("file_not_found", f"unknown file id {f.get('id')!r}")
            if upload.completed:
                return _error("file_not_found", f"file {upload.file_id} was already completed")
            if upload.data is None:
                return _error("file_not_found", f"file {upload.file_id} has no uploaded bytes")
            found.append((upload, f.get("title")))
        shared = []
        for upload, title in found:
            upload.completed, upload.title = True, title or upload.filename
            upload.channel_id, upload.thread_ts = body.get("channel_id"), body.get("thread_ts")
            upload.initial_comment = body.get("initial_comment")
            upload.permalink = f"{WORKSPACE_URL}files/{self._bot['user']}/{upload.file_id}/{upload.filename}"
            shared.append(
                {"id": upload.file_id, "title": upload.title, "name": upload.filename, "size": upload.length}
                | {"user": self._bot["user"], "created": int(time.time()), "permalink": upload.permalink}
            )
        if channel := body.get("channel_id"):
            message = {"type": "message", "user": self._bot["user"], "bot_id": self._bot["bot"], "ts": ts}
            message |= {"text": body.get("initial_comment") or "", "files": shared}
            message |= {"thread_ts": body["thread_ts"]} if body.get("thread_ts") else {}
            self._messages().setdefault(channel, []).append(message)
        return {"ok": True, "files": shared}
