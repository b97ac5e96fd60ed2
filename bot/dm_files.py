"""Files the bot sends a person in their DM with it: usage charts, admins' CSV exports.

``conversations.open`` (scope ``im:write``) finds the DM, then ``files_upload_v2`` (scope
``files:write``: getUploadURLExternal, the bytes, completeUploadExternal) shares the file there.
A refusal becomes ``FileNotSent`` naming Slack's error and the scope that usually fixes it, so
the caller can tell the person in words; nothing is retried (an upload that may have landed is
not sent twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

__all__ = ["FileNotSent", "SentFile", "send_to_dm"]


@dataclass(frozen=True)
class SentFile:
    file_id: str
    permalink: str
    channel: str


class FileNotSent(Exception):
    """Slack refused (``error``: its code, "" when it could not be reached); ``scope``: the one
    the bot usually lacks for that step."""

    def __init__(self, error: str, scope: str) -> None:
        super().__init__(error or "unreachable")
        self.error, self.scope = error, scope


async def send_to_dm(
    client: AsyncWebClient,
    user_id: str,
    content: bytes | str,
    *,
    filename: str,
    title: str,
    comment: str,
    alt_txt: str | None = None,
) -> SentFile:
    """Share ``content`` as a file in the person's DM with the bot.

    Raises:
        FileNotSent: the DM could not be opened or the upload was refused.
    """
    try:
        opened = await client.conversations_open(users=user_id)
        channel = str(opened["channel"]["id"])
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "refused")
        logger.warning("could not open the DM of %s: %s", user_id, error)
        raise FileNotSent(error, "im:write") from None
    except (SlackClientError, aiohttp.ClientError, TimeoutError, KeyError, TypeError) as exc:
        logger.warning("could not open the DM of %s: %s", user_id, type(exc).__name__)
        raise FileNotSent("", "im:write") from None
    extra = {"alt_txt": alt_txt} if alt_txt else {}
    try:
        done = await client.files_upload_v2(
            channel=channel, content=content, filename=filename, title=title, initial_comment=comment, **extra
        )
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "refused")
        logger.warning("could not upload %s for %s: %s", filename, user_id, error)
        raise FileNotSent(error, "files:write") from None
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("could not upload %s for %s: %s", filename, user_id, type(exc).__name__)
        raise FileNotSent("", "files:write") from None
    sent = done.get("file") or {}
    permalink = sent.get("permalink")
    return SentFile(str(sent.get("id") or ""), permalink if isinstance(permalink, str) else "", channel)
