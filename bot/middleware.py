"""Bolt middleware: what every request passes through, and the owned-connection guard.

Global: while the process drains (SIGTERM), refuse deliveries that would start a turn so
Slack delivers them again elsewhere; mark a request verified, drop Slack's retries of events
already handled, send response_url replies over one shared HTTP session. Per listener:
``OwnedConnection`` puts the connection a button names into ``context["connection"]``, looked
up only among the requester's own connections (the id in a button's value is whatever the sender wrote).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncBoltRequest, AsyncRespond

from bot import texts
from bot._payload import owner
from bot._respond import PooledRespond, SharedSession
from bot.failures import VERIFIED, Failures
from bot.replies import Replies
from mcp_core import errors
from mcp_core.models import Connection
from mcp_core.store import Store

logger = logging.getLogger(__name__)

__all__ = ["CONNECTION", "OwnedConnection", "install_middleware"]

CONNECTION = "connection"
"""Context key of the requester's own connection a button names (see ``OwnedConnection``)."""
Middleware = Callable[..., Awaitable[BoltResponse | None]]


TURN_EVENTS = frozenset({"app_mention", "message"})
"""Events that may start an agent turn (``bot.chat``)."""
DRAINING_STATUS = 503


def install_middleware(
    app: AsyncApp,
    *,
    store: Store,
    responses: SharedSession,
    signed: bool,
    draining: Callable[[], bool] = lambda: False,
) -> None:
    """Add the global middleware; ``signed`` is False in Socket Mode (requests are not signed).
    ``draining``: whether this process stopped taking new turns (``TurnJournal.draining``)."""

    @app.middleware
    async def refuse_turns_while_draining(body: dict[str, Any], next: Any) -> BoltResponse | None:
        """A stopping process starts no turn. The delivery is answered 503 (HTTP mode), or
        left unacknowledged (Socket Mode: Bolt acks only a 200), and Slack delivers it again —
        to another process behind the load balancer or on another of the app's sockets — after
        a short back-off (Events API: up to 3 retries, the first at once). First of all the
        middleware, so the event id is not yet marked seen: the retry is not taken for a
        duplicate. Clicks and commands pass: they end this process's own turns."""
        event = body.get("event") if isinstance(body, dict) else None
        if draining() and isinstance(event, dict) and event.get("type") in TURN_EVENTS:
            logger.info("draining: refused a %s event for Slack to deliver elsewhere", event.get("type"))
            return BoltResponse(status=DRAINING_STATUS, body="draining")
        return await next()

    @app.middleware
    async def mark_verified(context: AsyncBoltContext, request: AsyncBoltRequest, next: Any) -> Any:
        """Bolt runs our middleware only once its own checks passed (the signature, in HTTP
        mode); from here on the request's body may be answered (see ``Failures.report``)."""
        context[VERIFIED] = signed or request.mode == "socket_mode"
        return await next()

    @app.middleware
    async def drop_retried_events(body: dict[str, Any], next: Any) -> BoltResponse | None:
        """Slack retries events it thinks failed; the store remembers event ids across processes."""
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if event_id and not await store.claim_event(str(event_id), body.get("team_id")):
            return BoltResponse(status=200, body="")
        return await next()

    @app.middleware
    async def pooled_respond(context: AsyncBoltContext, next: Any) -> BoltResponse | None:
        """Replies to response_url reuse connections instead of opening one per reply."""
        if context.respond is not None:
            context["respond"] = PooledRespond(response_url=context.respond.response_url, session=responses)
        return await next()


def button_value(action: dict[str, Any]) -> str:
    """The connection id a plain button carries as its value."""
    value = action.get("value", "")
    return value if isinstance(value, str) else ""


class OwnedConnection:
    """Finds the connection a request names among the requester's own, or refuses."""

    def __init__(self, store: Store, replies: Replies, failures: Failures) -> None:
        self._store = store
        self._replies = replies
        self._failures = failures

    async def find(
        self, body: dict[str, Any], respond: AsyncRespond | None, raw_id: str
    ) -> Connection | None:
        """The connection ``raw_id`` names, looked up only among the requester's own; anything
        else is refused with a message (and logged: it may be a crafted payload)."""
        team_id, user_id = owner(body)
        try:
            return await self._store.get_connection(team_id, user_id, uuid.UUID(str(raw_id)))
        except (ValueError, errors.ConnectionNotFoundError):
            logger.warning("refused %s/%s a connection that is not theirs: %.64r", team_id, user_id, raw_id)
        await self._replies.tell(body, respond, texts.NOT_YOUR_CONNECTION)
        return None

    def middleware(self, connection_id: Callable[[dict[str, Any]], str] = button_value) -> Middleware:
        """Listener middleware: ack, then put the requester's own connection named by
        ``connection_id(action)`` in ``context["connection"]`` and run the listener; refuse
        (and skip the listener) otherwise.

        It acks first because the buttons it guards have nothing to say in their ack, and a
        failure after the ack is reported like the listener's own (see ``Failures.after_ack``).
        """

        async def own_connection(
            ack: AsyncAck,
            body: dict[str, Any],
            action: dict[str, Any],
            respond: AsyncRespond | None,
            context: AsyncBoltContext,
            next: Any,
        ) -> BoltResponse | None:
            response = await ack()
            try:
                connection = await self.find(body, respond, connection_id(action))
            except Exception as exc:  # reported like any failure after the ack
                await self._failures.report(exc, body, respond, verified=True)
                return response
            if connection is None:
                return response
            context[CONNECTION] = connection
            return await next()

        return own_connection
