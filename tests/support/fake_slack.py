"""A fake Slack for tests: Web API, Socket Mode WebSocket and `response_url`s, plus signed HTTP payloads.

    with FakeSlack() as fake:                                   # 127.0.0.1, port 0, own thread + loop
        client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
        await client.chat_postMessage(channel="C1", blocks=[...])
        [call] = await fake.await_for("chat.postMessage")      # call["body"]["blocks"] is a list
        fake.overrides["views.open"] = lambda body: (200, {}, {"ok": False, "error": "expired_trigger_id"})

    body = slash_command_body("list", user_id="U1", team_id=TEAM_ID, response_url=fake.response_url())
    status, headers, text = await post_signed(app_url, body, FORM, SECRET)

    eid = await fake.apush_envelope("slash_commands", slash_command("list", user_id="U1", team_id=TEAM_ID))
    ack = await fake.await_ack(eid)                             # {"envelope_id": eid, "payload": {...}}
    [a, b] = await fake.await_connections(2)                    # two processes' Socket Mode connections
    await fake.apush_envelope("events_api", event, connection=b)  # else the next open one in turn
    fake.socket_mode.delivered(eid)                             # where it went; unacked events go again

    stream = await client.chat_stream(channel="D1", thread_ts=root)   # channels also need recipient_*_id
    await stream.append(markdown_text="hi"); await stream.stop()
    fake.ai.streams[stream.ts].text                             # streams, statuses, sessions, uploads: see
    fake.unknown_methods.add("chat.startStream")                #   fake_slack_ai.py; an older workspace,
    fake.scopes.remove("files:write")                           #   a token without a scope

The server runs on its own event loop in a daemon thread, so it answers whether or not the test's loop is
running. Blocking helpers (`wait_for`, `wait_ack`, `push_envelope`) must not be called from a test loop that
also runs the code under test; use the async twins there. Waits use a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode

import aiohttp
import anyio.to_thread
from aiohttp import web

from tests.support.fake_slack_ai import WORKSPACE_URL, AiSurfaces
from tests.support.fake_slack_oauth import NO_TOKEN_METHODS, SlackOAuth
from tests.support.fake_socket_mode import SocketModeLinks

__all__ = [
    "API_APP_ID",
    "BOT_ID",
    "BOT_SCOPES",
    "BOT_USER_ID",
    "FORM",
    "JSON",
    "TEAM_ID",
    "WAIT_S",
    "FakeSlack",
    "Override",
    "app_home_opened_event",
    "app_mention_event",
    "block_actions",
    "block_actions_body",
    "event_body",
    "event_callback",
    "message_im_event",
    "post_signed",
    "sign",
    "slash_command",
    "slash_command_body",
    "view_closed",
    "view_closed_body",
    "view_problems",
    "view_submission",
    "view_submission_body",
]

TEAM_ID = "T_TEST"
BOT_USER_ID = "U_BOT"
BOT_ID = "B_BOT"
API_APP_ID = "A_TEST"
VERIFICATION_TOKEN = "verification-token-unused"  # deprecated field Slack still sends; Bolt ignores it
BOT_SCOPES = (
    "commands,chat:write,app_mentions:read,im:history,im:write,files:write,assistant:write,"
    "users:read,usergroups:read"
)
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
WAIT_S = 5.0
_SERVER_OP_TIMEOUT_S = 5.0
_WS_CLOSE_TIMEOUT_S = 1.0  # stop() must not hang on a client whose loop is blocked
_JSON_FIELDS = ("blocks", "view", "attachments", "chunks", "files", "metadata", "loading_messages")
METHOD_SCOPES = {
    "chat.startStream": "chat:write",
    "chat.appendStream": "chat:write",
    "chat.stopStream": "chat:write",
    "assistant.threads.setStatus": "chat:write",  # enough since 2026-03-05 (Slack changelog)
    "agents.sessions.setStatus": "assistant:write",  # granted by declaring the app an agent
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "conversations.open": "im:write",  # a DM; an MPIM would take mpim:write (the fake checks only this)
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
}
"""The scope each of these methods needs; a missing one answers `missing_scope` with `needed`/`provided`,
except agents.sessions.setStatus, which answers `not_authorized` for an app not declared as an agent
(../shared/reference/slack-ai.md §1.1 "Agent sessions", KiroCrew #9822)."""

_USER_ID = re.compile(r"[UW][A-Z0-9_]{2,}")  # the tests' ids have underscores ("U_BOT")

Override = Callable[[dict[str, Any]], tuple[int, dict[str, str], dict[str, Any]]]
"""`fn(body) -> (status, headers, json)`, installed as `fake.overrides[method]`."""


class FakeSlack:
    """Fake Slack Web API (`/api/<method>`), Socket Mode WebSocket (`/link`) and response URLs (`/respond/…`).

    Attributes tests may set: `overrides[method]`, `messages[channel]` (returned by conversations.history
    and, filtered by thread, conversations.replies), `users[user_id]` (returned by users.info), `scopes`
    (the bot token's scopes: auth.test reports them and METHOD_SCOPES checks them), `unknown_methods`
    (methods this "workspace" answers with `unknown_method`, as an older Slack does) and `ai` (streams,
    statuses, agent sessions and uploads: see tests/support/fake_slack_ai.py). `opened` holds the
    conversations conversations.open opened (`dm_channel(user)` names a DM's).

    Distribution (tests/support/fake_slack_oauth.py, as `oauth`): `register_app(client_id, secret,
    redirect_uri)`, `authorize(client_id, team_id=…) -> code` (the person clicking Allow), oauth.v2.access,
    per-workspace tokens and bots, rotation, `uninstall(team_id)` / `revoke_tokens(team_id, users=…)` (their
    event payloads; all in `oauth.events`), apps.uninstall, auth.revoke, `advance_clock(s)`. Each recorded
    request has `token`, `team_id` and `enterprise_id`; tokens the fake did not issue act for `TEAM_ID`.
    """

    def __init__(self) -> None:
        self.overrides: dict[str, Override] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        """User group id → member ids, for usergroups.users.list (unknown ids: `no_such_subteam`)."""
        self.scopes: list[str] = BOT_SCOPES.split(",")
        self.unknown_methods: set[str] = set()
        bot = {"user": BOT_USER_ID, "bot": BOT_ID}
        self.ai = AiSurfaces(lambda: self.messages, bot, lambda: self.upload_base_url)
        self.requests: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.port = 0
        self._cond = threading.Condition()
        self._counter = itertools.count(1)
        self.used_triggers: set[str] = set()
        """trigger_ids a views.open/push already used: Slack's are single-use."""
        self.opened: dict[str, tuple[str, ...]] = {}
        """Conversations conversations.open opened: channel id -> its users."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.socket_mode = SocketModeLinks(self._cond, self.acks, self._run)
        """The app's Socket Mode connections, deliveries and acks (fake_socket_mode.py)."""
        self.oauth = SlackOAuth(event_callback, app_id=API_APP_ID, team_id=TEAM_ID, scopes=self.scopes)
        """Apps, installs and their tokens (fake_slack_oauth.py); its helpers are also `fake.<name>`."""
        self.register_app, self.authorize = self.oauth.register_app, self.oauth.authorize
        self.uninstall, self.revoke_tokens = self.oauth.uninstall, self.oauth.revoke_tokens
        self.advance_clock = self.oauth.advance_clock

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def upload_base_url(self) -> str:
        """Where files.getUploadURLExternal's upload_urls point (`<this><file_id>`), like files.slack.com."""
        return f"http://127.0.0.1:{self.port}/upload/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link"

    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-slack", daemon=True)
        self._thread.start()
        self._run(self._serve())
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_SERVER_OP_TIMEOUT_S)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None, "FakeSlack is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_SERVER_OP_TIMEOUT_S)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self._websocket)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_route("*", "/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, shutdown_timeout=_WS_CLOSE_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        self.socket_mode.cancel_timers()
        await self.socket_mode.close_all()
        assert self._runner is not None
        await self._runner.cleanup()

    # -- Web API and response URLs ---------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.Response:
        api = request.path.startswith("/api/")
        body = _parse_body(await request.text(), request.content_type, dict(request.query))
        record = {
            "method": request.path.removeprefix("/api/") if api else request.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "time": time.time(),
        }
        bearer = request.headers.get("Authorization", "")
        token = bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
        record |= self.oauth.identify(token, body)
        with self._cond:
            self.requests.append(record)
            self._cond.notify_all()
        status, headers, payload = 200, {}, {"ok": True}
        if api and record["method"] not in NO_TOKEN_METHODS and not bearer.startswith("Bearer x"):
            payload = {"ok": False, "error": "not_authed"}
        elif api and token and (refusal := self.oauth.token_refusal(record["method"], token)):
            payload = refusal
        elif api and record["method"] in self.unknown_methods:
            payload = {"ok": False, "error": "unknown_method", "req_method": record["method"]}
        elif api and (refusal := self._scope_refusal(record["method"], self.oauth.scopes_of(token))):
            payload = refusal
        elif api and (problems := block_problems(record["method"], body)):
            payload = {"ok": False, "error": "invalid_blocks", "errors": problems}
        elif api and (refusal := self._view_refusal(record["method"], body)):
            payload = refusal
        elif api and (override := self.overrides.get(record["method"])):
            status, headers, payload = override(body)
        elif api:
            payload, headers = self.oauth.answer(record) or self._canned(record["method"], body)
            self.oauth.localize(record, payload)
        return web.json_response(payload, status=status, headers=headers)

    def _view_refusal(self, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """views.open/push as Slack checks them: a trigger_id (single use) and a well-formed view."""
        if method not in ("views.open", "views.push"):
            return None
        trigger = body.get("trigger_id")
        if not isinstance(trigger, str) or not trigger:
            messages = ["[ERROR] missing required field: trigger_id"]
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": messages}}
        if trigger in self.used_triggers:
            return {"ok": False, "error": "exchanged_trigger_id"}
        if problems := view_problems(body.get("view")):
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        self.used_triggers.add(trigger)
        return None

    def _scope_refusal(self, method: str, scopes: list[str] | None = None) -> dict[str, Any] | None:
        """`scopes`: those of an installed workspace's token (default: `self.scopes`)."""
        scopes = self.scopes if scopes is None else scopes
        needed = METHOD_SCOPES.get(method)
        if needed is None or needed in scopes:
            return None
        if method == "agents.sessions.setStatus":
            return {"ok": False, "error": "not_authorized"}
        return {"ok": False, "error": "missing_scope", "needed": needed, "provided": ",".join(scopes)}

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload_url POST (raw bytes as slack_sdk sends them, or a multipart form's first file part);
        recorded as method `/upload/<file_id>` with `body` {"bytes": n}."""
        if request.content_type.startswith("multipart/"):
            part = await (await request.multipart()).next()
            data = await part.read() if isinstance(part, aiohttp.BodyPartReader) else b""
        else:
            data = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = {"method": request.path, "headers": headers, "body": {"bytes": len(data)}}
        with self._cond:
            self.requests.append(record | {"time": time.time()})
            self._cond.notify_all()
        status, text = self.ai.receive_upload(request.match_info["file_id"], data)
        return web.Response(status=status, text=text)

    def _canned(self, method: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        n = next(self._counter)
        ts = f"{int(time.time())}.{n:06d}"
        if (answer := self.ai.handle(method, body, ts)) is not None:
            return answer, {}
        match method:
            case "auth.test":
                return {
                    "ok": True,
                    "url": WORKSPACE_URL,
                    "team": "Fake Team",
                    "user": "mcp-bot",
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "bot_id": BOT_ID,
                    "is_enterprise_install": False,
                }, {"x-oauth-scopes": ",".join(self.scopes)}
            case "chat.postMessage" | "chat.update":
                ts = body.get("ts") or ts
                message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts}
                message |= {k: body[k] for k in ("text", "blocks", "thread_ts") if k in body}
                return {"ok": True, "channel": body.get("channel"), "ts": ts, "message": message}, {}
            case "chat.postEphemeral":
                return {"ok": True, "message_ts": ts}, {}
            case "views.open" | "views.push" | "views.update" | "views.publish":
                view = dict(body.get("view") or {})
                view_id = body.get("view_id") or f"V{n:08d}"
                view |= {"id": view_id, "hash": f"{ts}.hash", "team_id": TEAM_ID, "app_id": API_APP_ID}
                view |= {"bot_id": BOT_ID, "state": {"values": {}}, "root_view_id": view_id}
                return {"ok": True, "view": view}, {}
            case "conversations.history" | "conversations.replies":
                found = self.messages.get(body.get("channel", ""), [])
                if method == "conversations.replies":
                    found = [m for m in found if body.get("ts") in (m.get("ts"), m.get("thread_ts"))]
                return {"ok": True, "messages": found, "has_more": False}, {}
            case "users.info":
                user_id = body.get("user", "")
                default = {"id": user_id, "team_id": TEAM_ID, "name": user_id.lower(), "is_bot": False}
                default |= {"real_name": f"User {user_id}", "tz": "UTC", "profile": {"email": ""}}
                return {"ok": True, "user": self.users.get(user_id, default)}, {}
            case "usergroups.users.list":
                group = body.get("usergroup")
                if not isinstance(group, str) or not group:
                    return {"ok": False, "error": "invalid_arguments"}, {}
                if group not in self.usergroups:
                    return {"ok": False, "error": "no_such_subteam"}, {}
                return {"ok": True, "users": list(self.usergroups[group])}, {}
            case "apps.connections.open":
                return {"ok": True, "url": self.ws_url}, {}
            case "conversations.open":
                return self._open_conversation(body), {}
        return {"ok": True}, {}

    def _open_conversation(self, body: dict[str, Any]) -> dict[str, Any]:
        """conversations.open: `users` (1 to 8 comma-separated user ids; one is a DM with the bot,
        `D…` stable per user, more an MPIM `G…`) or the `channel` of one opened before. Opening one
        again answers `no_op`/`already_open`, as Slack does."""
        users, channel = str(body.get("users") or ""), str(body.get("channel") or "")
        if not users:
            if channel in self.opened:
                return {"ok": True, "channel": {"id": channel}, "no_op": True, "already_open": True}
            return {"ok": False, "error": "channel_not_found" if channel else "users_list_not_supplied"}
        ids = tuple(u.strip() for u in users.split(","))
        if len(ids) > 8:
            return {"ok": False, "error": "too_many_users"}
        if not all(_USER_ID.fullmatch(u) for u in ids):
            return {"ok": False, "error": "user_not_found"}
        if BOT_USER_ID in ids:
            return {"ok": False, "error": "cannot_dm_bot"}
        opened = (
            self.dm_channel(ids[0])
            if len(ids) == 1
            else "G" + hashlib.sha1(",".join(sorted(ids)).encode()).hexdigest()[:10].upper()
        )
        answer: dict[str, Any] = {"ok": True, "channel": {"id": opened}}
        if opened in self.opened:
            answer |= {"no_op": True, "already_open": True}
        self.opened[opened] = ids
        return answer

    @staticmethod
    def dm_channel(user_id: str) -> str:
        """The id of the bot's DM with `user_id`, as conversations.open answers it."""
        return "D" + user_id.removeprefix("U").removeprefix("W")

    def response_url(self, name: str = "x") -> str:
        """A URL on the fake for `response_url`; POSTs to it are recorded as method `/respond/<name>`."""
        return f"http://127.0.0.1:{self.port}/respond/{name}"

    # -- queries ---------------------------------------------------------------------------------------

    def calls(self, method: str) -> list[dict[str, Any]]:
        """Recorded requests to `method` (an API method like "chat.postMessage", or a path)."""
        with self._cond:
            return [r for r in self.requests if r["method"] == method]

    def wait_for(self, method: str, count: int = 1, timeout_s: float = WAIT_S) -> list[dict[str, Any]]:
        """Block until at least `count` calls to `method` arrived; return them all.

        Raises:
            AssertionError: on timeout, listing the methods that were received.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls(method)) >= count, timeout_s):
                got = [r["method"] for r in self.requests]
                raise AssertionError(f"expected {count} x {method} within {timeout_s} s; received {got}")
            return self.calls(method)

    async def await_for(self, method: str, count: int = 1, timeout_s: float = WAIT_S) -> list[dict[str, Any]]:
        """`wait_for` without blocking the caller's event loop."""
        return await anyio.to_thread.run_sync(partial(self.wait_for, method, count, timeout_s))

    def all_traffic_text(self) -> str:
        """Every recorded request body and Socket Mode ack, serialized (for secret-leak checks)."""
        with self._cond:
            parts = [json.dumps(r["body"], default=str) for r in self.requests]
            parts += [json.dumps(a, default=str) for a in self.acks.values()]
        return "\n".join(parts)

    # -- Socket Mode (tests/support/fake_socket_mode.py) ----------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        hello = {
            "type": "hello",
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": API_APP_ID},
        }
        return await self.socket_mode.serve(request, hello)

    def push_envelope(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        connection: int | None = None,
        timeout_s: float = WAIT_S,
    ) -> str:
        """Deliver an envelope to one open Socket Mode connection (the next in turn, or
        ``connection``), waiting up to ``timeout_s`` for one to open; return its envelope_id.
        Not acked within ``socket_mode.ack_timeout_s``, an ``events_api`` envelope is delivered
        again (see fake_socket_mode.py).

        `type` is "slash_commands", "interactive" or "events_api"; `payload` a dict from
        `slash_command`, `block_actions`, `view_submission` or `event_callback`.

        Raises:
            AssertionError: if no client (or not ``connection``) is connected within `timeout_s`.
        """
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "accepts_response_payload": type != "events_api",
            "payload": payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        self.socket_mode.push(envelope, connection=connection, timeout_s=timeout_s)
        return envelope_id

    async def apush_envelope(self, type: str, payload: dict[str, Any], **kwargs: Any) -> str:
        """`push_envelope` without blocking the caller's event loop."""
        return await anyio.to_thread.run_sync(partial(self.push_envelope, type, payload, **kwargs))

    def wait_ack(self, envelope_id: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Block until the client acked `envelope_id`; return the ack JSON.

        Raises:
            AssertionError: on timeout, listing the envelope ids that were acked.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: envelope_id in self.acks, timeout_s):
                raise AssertionError(
                    f"no ack for {envelope_id} within {timeout_s} s; acked {list(self.acks)}"
                )
            return self.acks[envelope_id]

    async def await_ack(self, envelope_id: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """`wait_ack` without blocking the caller's event loop."""
        return await anyio.to_thread.run_sync(partial(self.wait_ack, envelope_id, timeout_s))

    def wait_connections(self, count: int, timeout_s: float = WAIT_S) -> list[int]:
        """Block until exactly ``count`` Socket Mode connections are open; their numbers."""
        links = self.socket_mode
        links.wait(
            lambda: len(links.open_connections()) == count,
            timeout_s,
            lambda: f"expected {count} open Socket Mode connections; open: {links.open_connections()}",
        )
        return links.open_connections()

    async def await_connections(self, count: int, timeout_s: float = WAIT_S) -> list[int]:
        """`wait_connections` without blocking the caller's event loop."""
        return await anyio.to_thread.run_sync(partial(self.wait_connections, count, timeout_s))


MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral", "chat.stopStream"})
VIEW_METHODS = frozenset({"views.open", "views.push", "views.update", "views.publish"})
LIMITS = {"message_blocks": 50, "view_blocks": 100, "section_text": 3000, "text": 40_000}
ELEMENT_LIMITS = {"value": 2000, "action_id": 255, "block_id": 255}
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
TABLE_LIMITS = {"rows": 100, "cells": 20, "column_settings": 20, "chars": 10_000}
"""Slack's table block reference: 100 rows, 20 cells a row, 20 column settings; raw_text needs a
character (slack_sdk ``RawTextObject``). Reported by integrations, not the reference page: one
table per message (vercel/chat PR #194) and 10,000 characters across its cells (vellum PR #36219)."""
TABLE_CELL_TYPES = frozenset({"raw_text", "raw_number", "rich_text"})


def table_problems(block: dict[str, Any], where: str) -> list[str]:
    """What Slack would refuse in one `table` block at json-pointer `where`."""
    rows = block.get("rows")
    if not isinstance(rows, list) or not rows:
        return [f"must provide an array of rows [json-pointer:{where}/rows]"]
    problems = []
    if len(rows) > TABLE_LIMITS["rows"]:
        problems.append(f"no more than {TABLE_LIMITS['rows']} items allowed [json-pointer:{where}/rows]")
    settings = block.get("column_settings")
    if isinstance(settings, list) and len(settings) > TABLE_LIMITS["column_settings"]:
        limit = TABLE_LIMITS["column_settings"]
        problems.append(f"no more than {limit} items allowed [json-pointer:{where}/column_settings]")
    chars = 0
    for r, row in enumerate(rows):
        at = f"{where}/rows/{r}"
        if not isinstance(row, list) or not row:
            problems.append(f"must provide an array of cells [json-pointer:{at}]")
            continue
        if len(row) > TABLE_LIMITS["cells"]:
            problems.append(f"no more than {TABLE_LIMITS['cells']} items allowed [json-pointer:{at}]")
        for c, cell in enumerate(row):
            kind = cell.get("type") if isinstance(cell, dict) else None
            if kind not in TABLE_CELL_TYPES:
                problems.append(f"failed to match any allowed schemas [json-pointer:{at}/{c}]")
            elif kind == "raw_text":
                text = cell.get("text")
                if not isinstance(text, str) or not text:
                    problems.append(f"must be more than 0 characters [json-pointer:{at}/{c}/text]")
                else:
                    chars += len(text)
    if chars > TABLE_LIMITS["chars"]:
        problems.append(
            f"cells must hold no more than {TABLE_LIMITS['chars']} characters [json-pointer:{where}]"
        )
    return problems


def block_problems(method: str, body: dict[str, Any]) -> list[str]:
    """What Slack's Block Kit validation would refuse in this call (``invalid_blocks``), with
    Slack's json-pointer style; empty when the call is valid. Limits from Slack's Block Kit
    reference: 50 blocks per message, 100 per view, 3,000 characters of section text, 2,000 of
    a button value, 10 context elements, 25 actions elements; 40,000 characters of text; and
    the table block's (``TABLE_LIMITS``)."""
    if method in MESSAGE_METHODS:
        blocks, pointer, most = body.get("blocks"), "/blocks", LIMITS["message_blocks"]
        if len(str(body.get("text") or "")) > LIMITS["text"]:
            return ["msg_too_long [json-pointer:/text]"]
    elif method in VIEW_METHODS:
        blocks, pointer, most = (body.get("view") or {}).get("blocks"), "/view/blocks", LIMITS["view_blocks"]
    else:
        return []
    if not isinstance(blocks, list):
        return []
    problems = [f"no more than {most} items allowed [json-pointer:{pointer}]"] if len(blocks) > most else []
    tables = [n for n, b in enumerate(blocks) if isinstance(b, dict) and b.get("type") == "table"]
    if len(tables) > 1:
        problems.append(f"only one table block is allowed per message [json-pointer:{pointer}/{tables[1]}]")
    for index, block in enumerate(blocks):
        where = f"{pointer}/{index}"
        if not isinstance(block, dict):
            problems.append(f"must be an object [json-pointer:{where}]")
            continue
        text = block.get("text")
        section_text = str(text.get("text") or "") if isinstance(text, dict) else ""
        if block.get("type") == "section" and len(section_text) > LIMITS["section_text"]:
            problems.append(f"must be less than 3001 characters [json-pointer:{where}/text/text]")
        elements = block.get("elements") or []
        if block.get("type") == "context" and len(elements) > CONTEXT_ELEMENTS:
            problems.append(f"no more than {CONTEXT_ELEMENTS} items allowed [json-pointer:{where}/elements]")
        if block.get("type") == "table":
            problems += table_problems(block, where)
        if block.get("type") == "actions" and len(elements) > ACTIONS_ELEMENTS:
            problems.append(f"no more than {ACTIONS_ELEMENTS} items allowed [json-pointer:{where}/elements]")
        for n, element in enumerate(elements if isinstance(elements, list) else []):
            for key, limit in ELEMENT_LIMITS.items():
                if isinstance(element, dict) and len(str(element.get(key) or "")) > limit:
                    at = f"{where}/elements/{n}/{key}"
                    problems.append(f"must be less than {limit + 1} characters [json-pointer:{at}]")
    return problems


VIEW_TEXT_LIMITS = {"title": 24, "submit": 24, "close": 24}
INPUT_TEXT_LIMITS = {"label": 2000, "hint": 2000}


def view_problems(view: Any) -> list[str]:
    """What Slack's views.open/push would refuse in ``view`` (``invalid_arguments``), in its
    message style; empty when the view is valid. From Slack's view and input block references:
    a modal needs a plain_text title of at most 24 characters (submit and close too), a submit
    when it has inputs, at most 3,000 characters of private_metadata and 255 of callback_id,
    unique block_ids, and each input block a label (at most 2,000) and an element."""
    if not isinstance(view, dict):
        return ["[ERROR] missing required field: view"]
    if view.get("type") != "modal":
        return ["[ERROR] must be one of [modal] [json-pointer:/view/type]"]
    problems = []
    for key, limit in VIEW_TEXT_LIMITS.items():
        text = view.get(key)
        if key == "title" and text is None:
            problems.append("[ERROR] missing required field: title [json-pointer:/view/title]")
        elif text is not None and not _plain_text(text, limit):
            problems.append(
                f"[ERROR] must be plain_text of at most {limit} characters [json-pointer:/view/{key}]"
            )
    if len(str(view.get("private_metadata") or "")) > 3000:
        problems.append("[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]")
    if len(str(view.get("callback_id") or "")) > 255:
        problems.append("[ERROR] must be less than 256 characters [json-pointer:/view/callback_id]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        return [*problems, "[ERROR] must provide at least 1 item [json-pointer:/view/blocks]"]
    ids = [b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("block_id")]
    if len(ids) != len(set(ids)):
        problems.append("[ERROR] block_id must be unique [json-pointer:/view/blocks]")
    inputs = [(n, b) for n, b in enumerate(blocks) if isinstance(b, dict) and b.get("type") == "input"]
    if inputs and view.get("submit") is None:
        problems.append("[ERROR] a view with input blocks needs submit [json-pointer:/view/submit]")
    for n, block in inputs:
        for key, limit in INPUT_TEXT_LIMITS.items():
            text = block.get(key)
            if (key == "label" or text is not None) and not _plain_text(text, limit):
                at = f"/view/blocks/{n}/{key}"
                problems.append(
                    f"[ERROR] must be plain_text of at most {limit} characters [json-pointer:{at}]"
                )
        if not isinstance(block.get("element"), dict):
            problems.append(
                f"[ERROR] missing required field: element [json-pointer:/view/blocks/{n}/element]"
            )
    return problems


def _plain_text(text: Any, limit: int) -> bool:
    return (
        isinstance(text, dict)
        and text.get("type") == "plain_text"
        and isinstance(text.get("text"), str)
        and 0 < len(text["text"]) <= limit
    )


def _parse_body(text: str, content_type: str, query: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = dict(query)
    if text and content_type == JSON:
        body |= json.loads(text)
    elif text:
        body |= dict(parse_qsl(text, keep_blank_values=True))
    for field in _JSON_FIELDS:
        if isinstance(body.get(field), str):
            with contextlib.suppress(ValueError):  # not JSON: keep the string as sent
                body[field] = json.loads(body[field])
    return body


# -- signed HTTP requests (HTTP mode) ---------------------------------------------------------------------


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers for the exact raw `body`; `timestamp` defaults to now."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}


async def post_signed(
    url: str,
    body: str,
    content_type: str,
    secret: str,
    *,
    timestamp: int | None = None,
    extra_headers: dict[str, str] | None = None,
    timeout_s: float = WAIT_S,
) -> tuple[int, dict[str, str], str]:
    """POST a signed `body` (FORM or JSON) like Slack does; return (status, headers, text)."""
    headers = {"content-type": content_type, **sign(secret, body, timestamp), **(extra_headers or {})}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
        session.post(url, data=body.encode(), headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


# -- payloads (dicts for Socket Mode envelopes, *_body strings for HTTP mode) -----------------------------


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def _user(user_id: str, team_id: str) -> dict[str, str]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id}


def slash_command(
    text: str,
    *,
    user_id: str,
    team_id: str,
    channel_id: str = "C_TEST",
    trigger_id: str | None = None,
    response_url: str = "",
    command: str = "/mcp",
) -> dict[str, str]:
    """A slash command's fields (the Socket Mode `slash_commands` payload)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": "fake-team",
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }


def slash_command_body(text: str, **kwargs: Any) -> str:
    """`slash_command(text, **kwargs)` form-encoded, as Slack POSTs it."""
    return urlencode(slash_command(text, **kwargs))


def block_actions(
    action_id: str,
    value: str,
    *,
    user_id: str,
    team_id: str,
    channel_id: str | None = None,
    view: dict[str, Any] | None = None,
    response_url: str | None = None,
    block_id: str = "actions",
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A button click: in a message in `channel_id`, or inside `view` (a modal or the Home tab)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": _trigger_id(),
        "team": {"id": team_id, "domain": "fake-team"},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "V_TEST")}
        payload["view"] = view
    if channel_id is not None:
        msg = message or {"type": "message", "user": BOT_USER_ID, "ts": "1700000000.000100", "text": ""}
        payload["container"] = {"type": "message", "message_ts": msg["ts"], "channel_id": channel_id}
        payload["container"]["is_ephemeral"] = False
        payload["channel"] = {"id": channel_id, "name": "general"}
        payload["message"] = msg
    if response_url is not None:
        payload["response_url"] = response_url
    return payload


def block_actions_body(action_id: str, value: str, **kwargs: Any) -> str:
    """`block_actions(...)` as Slack POSTs it: `payload=<urlencoded JSON>`."""
    return urlencode({"payload": json.dumps(block_actions(action_id, value, **kwargs))})


def view_submission(
    callback_id: str,
    state_values: dict[str, dict[str, Any]],
    *,
    user_id: str,
    team_id: str,
    private_metadata: str = "",
    view_id: str = "V_TEST",
) -> dict[str, Any]:
    """A modal submission; `state_values` is `{block_id: {action_id: element_state}}` as Slack sends it,
    where a plain string element state is shorthand for `{"type": "plain_text_input", "value": s}`."""
    values = {
        block: {
            action: {"type": "plain_text_input", "value": state} if isinstance(state, str) else state
            for action, state in actions.items()
        }
        for block, actions in state_values.items()
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "fake-team"},
        "user": _user(user_id, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": _trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": values},
            "hash": "1700000000.hash",
            "title": {"type": "plain_text", "text": "MCP", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": API_APP_ID,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": BOT_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_closed(
    callback_id: str, *, user_id: str, team_id: str, private_metadata: str = ""
) -> dict[str, Any]:
    """A modal closed with its Close button (sent only for views with ``notify_on_close``)."""
    submitted = view_submission(
        callback_id, {}, user_id=user_id, team_id=team_id, private_metadata=private_metadata
    )
    submitted["view"]["notify_on_close"] = True
    return {"type": "view_closed", "is_cleared": False} | {
        k: v for k, v in submitted.items() if k not in ("type", "trigger_id", "response_urls")
    }


def view_closed_body(callback_id: str, **kwargs: Any) -> str:
    """`view_closed(...)` as Slack POSTs it: `payload=<urlencoded JSON>`."""
    return urlencode({"payload": json.dumps(view_closed(callback_id, **kwargs))})


def view_submission_body(callback_id: str, state_values: dict[str, dict[str, Any]], **kwargs: Any) -> str:
    """`view_submission(...)` as Slack POSTs it: `payload=<urlencoded JSON>`."""
    return urlencode({"payload": json.dumps(view_submission(callback_id, state_values, **kwargs))})


def event_callback(event: dict[str, Any], *, team_id: str, event_id: str | None = None) -> dict[str, Any]:
    """The Events API wrapper around `event` (the Socket Mode `events_api` payload)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": API_APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def event_body(event: dict[str, Any], *, team_id: str, event_id: str | None = None) -> str:
    """`event_callback(...)` as the JSON body Slack POSTs."""
    return json.dumps(event_callback(event, team_id=team_id, event_id=event_id))


def _ts() -> str:
    return f"{time.time():.6f}"


def app_home_opened_event(user_id: str, *, channel_id: str = "D_TEST") -> dict[str, Any]:
    return {
        "type": "app_home_opened",
        "user": user_id,
        "channel": channel_id,
        "tab": "home",
        "event_ts": _ts(),
    }


def app_mention_event(
    text: str,
    *,
    user_id: str,
    channel_id: str = "C_TEST",
    ts: str | None = None,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """An `app_mention`; the text is prefixed with the bot's mention `<@U_BOT> `, as Slack shows it."""
    ts = ts or _ts()
    event = {
        "type": "app_mention",
        "client_msg_id": str(uuid.uuid4()),
        "user": user_id,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": ts,
        "channel": channel_id,
        "event_ts": ts,
    }
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def message_im_event(
    text: str,
    *,
    user_id: str,
    channel_id: str = "D_TEST",
    ts: str | None = None,
    thread_ts: str | None = None,
    bot_id: str | None = None,
) -> dict[str, Any]:
    """A `message` in a DM with the bot (`message.im`); pass `bot_id` (and user_id=BOT_USER_ID) for the
    bot's own post, which Slack also delivers."""
    ts = ts or _ts()
    event = {
        "type": "message",
        "channel_type": "im",
        "user": user_id,
        "text": text,
        "ts": ts,
        "channel": channel_id,
        "event_ts": ts,
    }
    if bot_id:  # a bot user's own post carries bot_id and app_id but no subtype
        event |= {"bot_id": bot_id, "app_id": API_APP_ID, "bot_profile": {"id": bot_id, "app_id": API_APP_ID}}
    else:
        event["client_msg_id"] = str(uuid.uuid4())
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def agent_session_stopped_event(
    user_id: str, *, thread_ts: str, channel_id: str = "C_TEST", streaming_message_ts: list[str] | None = None
) -> dict[str, Any]:
    """`agent_session_stopped`: ``user_id`` clicked Slack's native Stop on the session of that thread
    (docs.slack.dev/reference/events/agent_session_stopped; team_id is on the envelope)."""
    return {
        "type": "agent_session_stopped",
        "user": user_id,
        "channel": channel_id,
        "thread_ts": thread_ts,
        "streaming_message_ts": list(streaming_message_ts or []),
        "event_ts": _ts(),
    }
