"""Replies bound to where they go: one person (privately) or one thread (in the open).

Listeners say *what* to answer; these helpers know *how* Slack takes it: a response_url
when the request has one, an ephemeral message in the channel the person started from, a DM
when neither works, and best-effort edits of a thread's messages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot._payload import owner

logger = logging.getLogger(__name__)

__all__ = ["Replies", "Thread", "privately"]


class Replies:
    """Private answers to one person, through the bot's Web API client."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def tell(
        self,
        body: dict[str, Any],
        respond: AsyncRespond | None,
        text: str,
        blocks: list[Block] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Reply to the request's sender: via response_url when the request has one, else by DM."""
        if respond is not None and body.get("response_url"):
            await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=replace)
        else:
            _, user_id = owner(body)
            await self._client.chat_postMessage(channel=user_id, text=text, blocks=blocks)

    async def notify(
        self, channel: str | None, user_id: str, text: str, blocks: list[Block] | None = None
    ) -> None:
        """Ephemeral in the channel the user started from; a DM when there is none or it fails
        (a modal's submission has no response_url)."""
        if channel:
            try:
                await self._client.chat_postEphemeral(channel=channel, user=user_id, text=text, blocks=blocks)
                return
            except SlackApiError as exc:
                logger.info("ephemeral reply failed (%s); sending a DM", exc.response.get("error"))
        await self._client.chat_postMessage(channel=user_id, text=text, blocks=blocks)

    def thread(self, channel: str, thread: str) -> Thread:
        return Thread(self._client, channel, thread)


@dataclass(frozen=True)
class Thread:
    """Messages in one thread of one channel: what the agent posts and edits along a turn."""

    client: AsyncWebClient
    channel: str
    thread: str

    async def post(self, text: str, blocks: list[Any] | None = None) -> str:
        """Post in the thread; returns the message's ts (to edit it later)."""
        posted = await self.client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread, text=text, blocks=blocks
        )
        return str(posted["ts"])

    async def edit(self, ts: str, text: str, blocks: list[Any] | None = None) -> None:
        """Best effort: a failed edit (rate limit, deleted message) must not end the turn."""
        try:
            await self.client.chat_update(channel=self.channel, ts=ts, text=text, blocks=blocks or [])
        except SlackApiError as exc:
            logger.warning("could not update the progress message: %s", exc.response.get("error"))


async def privately(respond: AsyncRespond | None, text: str) -> None:
    """An ephemeral reply to a click in a message; a click without a response_url has nobody
    to tell, so it is only logged (a DM would reach someone who may not have clicked)."""
    if respond is None:
        logger.info("no response_url to answer a click with: %s", text)
        return
    await respond(text=text, response_type="ephemeral", replace_original=False)
