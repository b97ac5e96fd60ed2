"""What the person hears when a listener fails, and what the log keeps.

Two entry points, one report: Bolt's error handler (failures before the ack, and in
middleware, Bolt's own included) and ``after_ack`` (failures once a listener has acked,
which Bolt 1.30 mishandles, see there).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncRespond

from bot import texts
from bot.replies import Replies
from mcp_core import errors

logger = logging.getLogger(__name__)

__all__ = ["VERIFIED", "Failures", "Listener"]

VERIFIED = "mcp_request_verified"
"""Context key set once Bolt has checked a request; an unset key means nothing may be sent."""
_INTERACTIVE = ("block_actions", "view_submission")
Listener = Callable[..., Awaitable[None]]


class Failures:
    """Reports listener failures to the person who asked, in their words."""

    def __init__(self, replies: Replies) -> None:
        self._replies = replies

    def install(self, app: AsyncApp) -> None:
        """Make this Bolt's error handler."""

        @app.error
        async def on_error(
            error: Exception, body: dict[str, Any], respond: AsyncRespond | None, context: AsyncBoltContext
        ) -> None:
            """Failures before the ack (Bolt answers 500) and in middleware, Bolt's own included."""
            await self.report(error, body, respond, verified=context.get(VERIFIED) is True)

    async def report(
        self, error: Exception, body: dict[str, Any], respond: AsyncRespond | None, *, verified: bool
    ) -> None:
        """Say what happened in the user's words; log anything unexpected (with its trace).

        Nothing at all is sent for a request that was not verified: its response_url and user
        are whatever the sender wrote, and answering would make us their messenger.
        """
        if not verified:
            logger.warning("a request failed before it was verified (nothing sent): %s", type(error).__name__)
            return
        if isinstance(error, errors.McpCoreError):
            message = texts.failed(error)
        else:
            logger.exception("unhandled error in a Slack listener", exc_info=error)
            message = texts.INTERNAL_ERROR
        if not body.get("response_url") and body.get("type") not in _INTERACTIVE:
            return  # an event: nobody is waiting for an answer
        try:
            await self._replies.tell(body, respond, message)
        except Exception as exc:  # boundary: the error path must not raise again
            logger.warning("could not tell the user about an error: %s", type(exc).__name__)

    def after_ack(self, listener: Listener) -> Listener:
        """Report a listener's failure itself once it has acked.

        Bolt (1.30, async) resets a listener's ack to None when the listener raises soon after
        acking: the request then hangs for 3 s and answers 404, and Slack shows an error or
        retries. So failures after the ack never reach Bolt.
        """

        @functools.wraps(listener)
        async def guarded(**kwargs: Any) -> None:
            try:
                await listener(**kwargs)
            except Exception as exc:
                ack = kwargs.get("ack")
                if ack is not None and ack.response is None:
                    raise  # not acked yet: Bolt answers with an error and calls on_error
                # a listener runs only after every middleware, mark_verified included
                await self.report(exc, kwargs.get("body") or {}, kwargs.get("respond"), verified=True)

        return guarded
