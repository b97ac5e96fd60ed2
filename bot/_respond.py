"""``respond()`` over one shared HTTP session.

Bolt's own ``AsyncRespond`` builds a new aiohttp session — a new TCP (and TLS) connection —
for every reply to a ``response_url``. Under load that work shares the event loop with the
next requests' acks, so the app swaps in this version, which keeps connections alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

__all__ = ["RESPONSE_URL_TIMEOUT_S", "PooledRespond", "SharedSession"]

RESPONSE_URL_TIMEOUT_S = 10


class SharedSession:
    """One aiohttp session, made on first use inside the running loop; ``aclose()`` on shutdown."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=RESPONSE_URL_TIMEOUT_S))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class PooledRespond(AsyncRespond):
    def __init__(self, *, response_url: str | None, session: SharedSession) -> None:
        super().__init__(response_url=response_url)
        self._shared = session

    async def __call__(  # same signature as Bolt's, so listeners cannot tell the difference
        self,
        text: str | dict = "",
        blocks: Sequence[Any] | None = None,
        attachments: Sequence[Any] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        if isinstance(text, dict):
            message = _build_message(**text)
        else:
            message = _build_message(
                text=text,
                blocks=blocks,
                attachments=attachments,
                response_type=response_type,
                replace_original=replace_original,
                delete_original=delete_original,
                unfurl_links=unfurl_links,
                unfurl_media=unfurl_media,
                thread_ts=thread_ts,
                metadata=metadata,
            )
        client = AsyncWebhookClient(
            url=self.response_url, timeout=RESPONSE_URL_TIMEOUT_S, session=self._shared.get()
        )
        return await client.send_dict(message)
