"""👍 / 👎 on the agent's answers: each click recorded with the turn, answered only to the clicker.

The buttons (``views.feedback_block``) carry ``up:<turn id>`` or ``down:<turn id>``. Anyone who
sees an answer may vote on it; the voter is the verified clicker of the request (never a value
inside the payload's button), one vote per person per answer, and a later click replaces it
(``Store.record_feedback``). A value that is not one of ours records nothing. The turn id comes
from the button, so a forged one names no turn: the row it writes is the clicker's own, in
their own team, and harmless.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot import texts, views
from bot._payload import first_action, owner
from bot.replies import privately
from mcp_core import errors
from mcp_core.models import Vote
from mcp_core.store import Store

__all__ = ["parse_vote", "register_feedback"]

logger = logging.getLogger(__name__)

_VALUE = re.compile(r"^(up|down):([A-Za-z0-9_-]{1,64})$")


def parse_vote(value: Any) -> tuple[Vote, str] | None:
    """(vote, turn id) from a feedback button's value, or None when it is not one we wrote."""
    match = _VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return ("up" if match[1] == "up" else "down"), match[2]


def register_feedback(app: AsyncApp, store: Store) -> None:
    """Add the listener of the answers' 👍 / 👎."""

    @app.action(views.FEEDBACK_ACTION)
    async def on_feedback(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        try:
            team_id, user_id = owner(body)
        except errors.McpCoreError:
            return
        action = first_action(body)
        parsed = parse_vote(action.get("value"))
        if parsed is None:
            logger.info("ignored a feedback click whose value is not ours")
            return
        vote, turn_id = parsed
        try:
            await store.record_feedback(team_id, user_id, turn_id, vote)
        except errors.StoreError:
            logger.warning("could not record feedback on turn %s", turn_id, exc_info=True)
            await privately(respond, texts.FEEDBACK_NOT_SAVED)
            return
        await privately(respond, texts.FEEDBACK_THANKS)
