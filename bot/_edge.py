"""The door of ``POST /slack/events`` in HTTP mode: nothing unverified or misshapen gets past it.

    web_app.router.add_post("/slack/events", SlackEdge(bolt_app, signing_secret).handle)

Each request, before Bolt sees anything:

1. **Signature** (else 401). ``X-Slack-Request-Timestamp`` is an integer at most
   ``MAX_CLOCK_SKEW_S`` from now; ``X-Slack-Signature`` is ``v0=`` and the hex HMAC-SHA256,
   under the signing secret, of ``v0:{timestamp}:{raw body}``, compared in constant time.
   Bolt checks again behind us; we check first because Bolt's check raises on a non-numeric
   timestamp, and its error handler then held the unverified body (and its ``response_url``).
2. **Body** (else 400), read the way Slack sends it: a form with ``payload=<JSON object>``
   (interactivity), a form with ``command`` (slash commands) or ``ssl_check``, or a JSON
   object (Events API, ``url_verification``); then checked against :data:`SHAPES`, the few
   fields Bolt and our listeners read without looking (``view`` an object, ``actions`` a list
   of objects with an ``action_id``, who sent it, ...). Values inside those shapes (form state,
   button values, metadata) are the listeners' to judge.
3. **Bolt** dispatches the request.

A refusal is one short log line (the reason, never the body, never a traceback). A request
Bolt answered is timed from its arrival to the ack (``acked``, the ack latency of ``/metrics``):
Bolt hands back the ack as soon as the listener calls ``ack()``, and runs the listener on after.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from jsonschema import Draft202012Validator
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

logger = logging.getLogger(__name__)

__all__ = ["MAX_CLOCK_SKEW_S", "SHAPES", "SlackEdge"]

MAX_CLOCK_SKEW_S = 300
"""Slack's replay window: a request signed longer ago (or ahead) than this is refused."""
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"

_STRING = {"type": "string"}
_ID = {"type": "string", "minLength": 1}
_ID_OR_OBJECT = {"type": ["string", "object", "null"], "properties": {"id": _STRING}}
_OBJECT_OR_NULL = {"type": ["object", "null"]}
_COMMON = {  # what Bolt reads from any body, unchecked, while building its context
    "type": "object",
    "properties": {
        "type": _STRING,
        "team": _ID_OR_OBJECT,
        "user": _ID_OR_OBJECT,
        "channel": _ID_OR_OBJECT,
        "enterprise": _ID_OR_OBJECT,
        "response_url": _STRING,
        "trigger_id": _STRING,
        "event": {"type": "object"},
        "view": {"type": "object"},
        "authorizations": {"type": "array", "items": {"type": "object"}},
    },
}
_SENDER = {  # an interaction says who clicked or submitted, and in which workspace
    "required": ["user"],
    "properties": {"user": {"type": "object", "required": ["id"], "properties": {"id": _ID}}},
    "anyOf": [
        {
            "required": ["team"],
            "properties": {"team": {"type": "object", "required": ["id"], "properties": {"id": _ID}}},
        },
        {"properties": {"user": {"required": ["team_id"], "properties": {"team_id": _ID}}}},
    ],
}
_INTERACTIONS = {
    "block_actions": {
        "required": ["actions", "trigger_id"],
        "properties": {
            "actions": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "object", "required": ["action_id"], "properties": {"action_id": _STRING}},
            },
        },
    },
    "view_submission": {
        "required": ["view"],
        "properties": {"view": {"required": ["callback_id"], "properties": {"callback_id": _STRING}}},
    },
}
_MESSAGE_EVENT = {
    "required": ["channel", "ts"],
    "properties": {
        "channel": _ID,
        "ts": _ID,
        "user": _STRING,
        "thread_ts": _STRING,
        "text": _STRING,
        "message": _OBJECT_OR_NULL,
        "previous_message": _OBJECT_OR_NULL,
    },
}
_EVENTS = {  # the events we subscribe to, as far as Bolt and our listeners read them
    "app_mention": _MESSAGE_EVENT,
    "message": _MESSAGE_EVENT,
    "app_home_opened": {"required": ["user"], "properties": {"user": _ID, "tab": _STRING}},
}


def _when_type(shapes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``shapes[type]`` applied to an object whose ``type`` is that name."""
    return [
        {"if": {"properties": {"type": {"const": name}}, "required": ["type"]}, "then": shape}
        for name, shape in shapes.items()
    ]


SHAPES: dict[str, dict[str, Any]] = {
    "interaction": {"allOf": [_COMMON, _SENDER, {"required": ["type"]}, *_when_type(_INTERACTIONS)]},
    "command": {
        "allOf": [
            _COMMON,
            {
                "required": ["command", "team_id", "user_id", "trigger_id"],
                "properties": {"team_id": _ID, "user_id": _ID},
            },
        ]
    },
    "event": {
        "allOf": [
            _COMMON,
            {"required": ["type"]},
            *_when_type(
                {
                    "event_callback": {
                        "required": ["event", "team_id"],
                        "properties": {
                            "team_id": _ID,
                            "event": {
                                "required": ["type"],
                                "properties": {"type": _STRING},
                                "allOf": _when_type(_EVENTS),
                            },
                        },
                    },
                    "url_verification": {"required": ["challenge"], "properties": {"challenge": _STRING}},
                }
            ),
        ]
    },
    "ssl_check": _COMMON,
}
"""JSON Schemas of the kinds of request Slack sends to the one endpoint, checked before Bolt."""
_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in SHAPES.items()}


class Refused(Exception):
    """A request the edge does not pass on; ``str()`` is the log line's reason (no body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class SlackEdge:
    """An aiohttp handler that lets only verified, well-formed Slack requests reach ``app``."""

    def __init__(
        self,
        app: AsyncApp,
        signing_secret: str,
        *,
        clock: Callable[[], float] = time.time,
        acked: Callable[[float], None] | None = None,
    ) -> None:
        if not signing_secret:
            raise ValueError("HTTP mode needs the Slack signing secret")
        self._app = app
        self._secret = signing_secret.encode()
        self._clock = clock
        self._acked = acked

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        raw = await request.read()
        try:
            self.verify(request.headers, raw)
            kind, body = parse(raw, request.content_type)
            check_shape(kind, body)
            bolt_request = _bolt_request(raw.decode(), request.query_string, request.headers, body)
        except Refused as refused:
            logger.warning("refused a request to %s (%d): %s", request.path, refused.status, refused)
            error = "invalid request" if refused.status == 401 else "malformed request"
            return web.json_response({"error": error}, status=refused.status)
        response = await self._app.async_dispatch(bolt_request)
        if self._acked is not None:
            self._acked(time.perf_counter() - started)
        return await to_aiohttp_response(response)

    def verify(self, headers: Any, raw: bytes) -> None:
        """Check Slack's v0 signature of ``raw``.

        Raises:
            Refused: 401, when a header is missing or garbled, the timestamp is stale or the
                signature does not match.
        """
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise Refused(401, "no usable X-Slack-Request-Timestamp")
        if abs(self._clock() - int(timestamp)) > MAX_CLOCK_SKEW_S:
            raise Refused(401, "stale X-Slack-Request-Timestamp")
        if not _SIGNATURE.fullmatch(signature):
            raise Refused(401, "no usable X-Slack-Signature")
        digest = hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256)
        if not hmac.compare_digest(f"v0={digest.hexdigest()}", signature):
            raise Refused(401, "signature does not match")


def parse(raw: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    """The body as Slack sends it, and which kind of request it is (a key of :data:`SHAPES`).

    Raises:
        Refused: 400, for a body that is not UTF-8, not a form or JSON object of a known kind.
    """
    try:
        text = raw.decode()
        if content_type == _JSON:
            return "event", _object(json.loads(text))
        if content_type != _FORM:
            raise Refused(400, f"unexpected content type {content_type[:40]!r}")
        form = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError too
        raise Refused(400, f"unreadable body ({type(exc).__name__})") from None
    if "payload" in form:
        try:
            return "interaction", _object(json.loads(form["payload"]))
        except (ValueError, RecursionError) as exc:
            raise Refused(400, f"unreadable payload ({type(exc).__name__})") from None
    if "command" in form:
        return "command", form
    if "ssl_check" in form:
        return "ssl_check", form
    raise Refused(400, "a form that is neither a command nor an interaction")


def check_shape(kind: str, body: dict[str, Any]) -> None:
    """Raises: Refused: 400, naming the first field (not its value) that is not as Slack sends it."""
    error = next(iter(_VALIDATORS[kind].iter_errors(body)), None)
    if error is not None:
        raise Refused(400, f"{kind} shape: {error.json_path} ({error.validator})")


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refused(400, f"a JSON {type(value).__name__} where an object belongs")
    return value


def _bolt_request(text: str, query: str, headers: Any, body: dict[str, Any]) -> AsyncBoltRequest:
    """Bolt's request, carrying the body as the edge read it: Bolt reads a form that merely
    contains the word "payload" (say, ``/mcp payload``) as an empty interaction."""
    try:
        request = AsyncBoltRequest(body=text, query=query, headers=headers)
        if request.body != body:
            request.body = body
            request.context = build_async_context(AsyncBoltContext(), body)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        raise Refused(400, f"Bolt cannot read this body ({type(exc).__name__})") from None
    return request
