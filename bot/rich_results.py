"""What the turn's tools returned besides text, shown in the answer's thread after the answer.

``post_rich_results(thread, reply.attachments)`` posts, in this order:

- the images (``mcp_core.rich_results.Image``, already checked: type, signature, size,
  secrets), at most ``MAX_IMAGES_PER_TURN``, uploaded in one go with Slack's external upload
  flow (``files_upload_v2``: ``files.getUploadURLExternal`` → the bytes POSTed to the
  ``upload_url`` *Slack* returned → ``files.completeUploadExternal`` into this thread). No URL a
  tool returned is ever fetched;
- the links: http(s) ones clickable, any other scheme as escaped text; posted with unfurling
  off, so Slack does not fetch them either (an unfurl would tell the server who looked);
- each list of records as a ``table`` block where it fits Slack's limits (``table_fits``),
  else as monospace text, at most ``MAX_TABLES_PER_TURN``;
- one line per thing not shown (an image refused, over the cap, or an upload that failed).

Table limits: Slack's table block reference (100 rows, 20 cells per row); raw_text cells need
at least one character (slack_sdk ``RawTextObject``); at most one table per message
(vercel/chat PR #194, netclaw #55) and 10,000 characters across a table's cells
(vellum-ai/vellum-assistant PR #36219), both reported by others' integrations, not in the
reference page. A failure to post any of these is logged and the rest still goes out: the
answer is already there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock, TableBlock

from bot import texts
from bot.replies import Thread
from bot.views import SECTION_TEXT_LIMIT, clip
from mcp_core.rich_results import Attachment, Image, Link, Records, Refused

__all__ = [
    "MAX_IMAGES_PER_TURN",
    "MAX_LINKS_PER_TURN",
    "MAX_TABLES_PER_TURN",
    "TABLE_MAX_CELL_CHARS",
    "TABLE_MAX_COLUMNS",
    "TABLE_MAX_ROWS",
    "post_rich_results",
    "table_blocks",
    "table_fits",
]

logger = logging.getLogger(__name__)

MAX_IMAGES_PER_TURN = 4
MAX_LINKS_PER_TURN = 20
MAX_TABLES_PER_TURN = 3
TABLE_MAX_ROWS = 100
"""Rows of one table block, the header row included."""
TABLE_MAX_COLUMNS = 20
TABLE_MAX_CELL_CHARS = 10_000
"""Characters across all cells of one table."""
EMPTY_CELL = "—"
"""What an empty cell shows: raw_text refuses an empty string."""
TEXT_TABLE_CHARS = SECTION_TEXT_LIMIT - 8
"""The monospace fallback's text, inside its ``` fence."""


async def post_rich_results(thread: Thread, attachments: Sequence[Attachment]) -> None:
    """Post the turn's images, links and tables into ``thread`` (see the module docstring).
    Never raises for Slack's sake: what fails is logged, or said in a line."""
    images = [(a.tool, a.part) for a in attachments if isinstance(a.part, Image)]
    links = [a.part for a in attachments if isinstance(a.part, Link)]
    tables = [(a.tool, a.part) for a in attachments if isinstance(a.part, Records)]
    notes = [texts.image_not_shown(a.tool, a.part.why) for a in attachments if isinstance(a.part, Refused)]
    if len(images) > MAX_IMAGES_PER_TURN:
        notes.append(texts.images_over_cap(len(images) - MAX_IMAGES_PER_TURN, MAX_IMAGES_PER_TURN))
    if images and (failure := await _upload(thread, images[:MAX_IMAGES_PER_TURN])):
        notes.append(texts.images_not_uploaded(failure))
    if links:
        await _post(thread, texts.LINKS_INTRO, _link_blocks(links[:MAX_LINKS_PER_TURN]), plain=True)
    for tool, records in tables[:MAX_TABLES_PER_TURN]:
        await _post(thread, _caption(tool, records), table_blocks(tool, records))
    if len(tables) > MAX_TABLES_PER_TURN:
        notes.append(texts.tables_over_cap(len(tables) - MAX_TABLES_PER_TURN))
    if notes:
        text = clip("\n".join(notes), SECTION_TEXT_LIMIT)
        await _post(thread, text, [ContextBlock(elements=[MarkdownTextObject(text=text)])])


async def _upload(thread: Thread, images: Sequence[tuple[str, Image]]) -> str | None:
    """Upload the images into the thread in one call; None, or why it failed (for a line)."""
    uploads = [
        {
            "content": image.data,
            "filename": f"{tool}-{n}.{image.extension}",
            "title": f"{tool} image {n}",
            "alt_txt": f"An image the tool {tool} returned",
        }
        for n, (tool, image) in enumerate(images, start=1)
    ]
    try:
        await thread.client.files_upload_v2(
            channel=thread.channel, thread_ts=thread.thread, file_uploads=uploads
        )
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "refused")
        logger.warning("could not upload %d tool images: %s", len(images), error)
        return f"Slack said {error}" if error != "missing_scope" else "the app lacks the files:write scope"
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("could not upload %d tool images: %s", len(images), type(exc).__name__)
        return "the upload failed"
    return None


async def _post(thread: Thread, text: str, blocks: list[Block], *, plain: bool = False) -> None:
    """One message in the thread, best effort; ``plain``: links in it are not unfurled."""
    extra: dict[str, Any] = {"unfurl_links": False, "unfurl_media": False} if plain else {}
    try:
        await thread.client.chat_postMessage(
            channel=thread.channel, thread_ts=thread.thread, text=text, blocks=blocks, **extra
        )
    except SlackApiError as exc:
        logger.warning("could not post a tool result's extras: %s", exc.response.get("error"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_line(link: Link) -> str:
    title = _escape(" ".join(link.title.split()))[:200] or "link"
    if link.web and len(link.uri) <= 3000:
        # Characters that would end the <url|text> form early are percent-encoded (the same URL).
        url = link.uri.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")
        return f"• <{url}|{title.replace('|', '¦')}>"
    shown = _escape(link.uri).replace("`", "'")[:500]
    return f"• {title}: `{shown}`" if title != _escape(link.uri) else f"• `{shown}`"


def _link_blocks(links: Sequence[Link]) -> list[Block]:
    lines = list(dict.fromkeys(_link_line(link) for link in links))
    blocks: list[Block] = []
    current = texts.LINKS_INTRO
    for line in lines:
        if len(current) + 1 + len(line) > SECTION_TEXT_LIMIT:
            blocks.append(SectionBlock(text=MarkdownTextObject(text=current)))
            current = ""
        current = f"{current}\n{line}" if current else line
    blocks.append(SectionBlock(text=MarkdownTextObject(text=current)))
    return blocks


def table_fits(records: Records) -> bool:
    """Whether the records fit one table block (header row included): see the module docstring."""
    if records.total + 1 > TABLE_MAX_ROWS or len(records.columns) > TABLE_MAX_COLUMNS:
        return False
    cells = [records.columns, *records.rows]
    return sum(len(_cell(c)) for row in cells for c in row) <= TABLE_MAX_CELL_CHARS


def _cell(text: str) -> str:
    return text if text.strip() else EMPTY_CELL


def _caption(tool: str, records: Records) -> str:
    shown = records.total if table_fits(records) else min(records.total, len(_text_rows(records)[1]))
    return texts.table_caption(tool, shown, records.total)


def table_blocks(tool: str, records: Records) -> list[Block]:
    """The records as a caption and a table block, or as a caption and monospace text when
    they do not fit one."""
    caption = ContextBlock(elements=[MarkdownTextObject(text=_caption(tool, records))])
    if table_fits(records):
        rows = [records.columns, *records.rows]
        cells = [[{"type": "raw_text", "text": _cell(c)} for c in row] for row in rows]
        return [caption, TableBlock(rows=cells)]
    text, _ = _text_rows(records)
    return [caption, SectionBlock(text=MarkdownTextObject(text=f"```{text}```"))]


def _text_rows(records: Records) -> tuple[str, list[str]]:
    """As many rows as fit the fallback's section, columns separated by │, escaped for mrkdwn
    (a backtick cannot close the fence): the text, and the data lines it holds."""

    def line(cells: Sequence[str]) -> str:
        return " │ ".join(_escape(" ".join(c.split())).replace("`", "'")[:80] for c in cells)

    header = line(records.columns)
    text, kept = header, []
    for row in records.rows:
        more = line(row)
        if len(text) + 1 + len(more) > TEXT_TABLE_CHARS - 40:  # room for the "more rows" line
            break
        kept.append(more)
        text += "\n" + more
    if len(kept) < records.total:
        text += f"\n… {records.total - len(kept)} more rows"
    return text[:TEXT_TABLE_CHARS], kept
