"""The parts of a tool's result a person sees besides its text: images, links, records.

The model reads a result as text (``mcp_core._results.flatten_result``); the person also sees
what text cannot show. This module picks those parts out of an MCP ``CallToolResult`` as typed
data, checked on the way in, and knows nothing of Slack (``bot.rich_results`` shows them).

Everything here comes from an MCP server, so it is hostile:

- Images: only PNG, JPEG, GIF and WebP; base64 decoded strictly; the bytes must carry the
  declared type's signature (a "PNG" that is not one is refused, not re-labelled); at most
  ``max_image_bytes`` (its size is judged from the base64 length before anything is decoded);
  at most ``MAX_IMAGES`` per result; and never bytes that hold one of the connection's secrets
  (base64 hides them from the pool's text scrubbing). A refused image becomes a ``Refused``
  part saying why, for a line in the thread.
- Links (``ResourceLink``, ``EmbeddedResource``): kept as strings, never fetched; whether a
  surface may make one clickable is ``Link.web`` (http/https only).
- Records: a list of flat objects (every value a string, number, boolean or null) from
  ``structuredContent`` (a list, or an object holding one list) or from JSON text; cells
  become strings. At most ``MAX_RECORD_ROWS`` rows are kept; ``Records.total`` says how many
  there were.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types

__all__ = [
    "IMAGE_TYPES",
    "MAX_IMAGES",
    "MAX_LINKS",
    "MAX_RECORD_ROWS",
    "Attachment",
    "Image",
    "Link",
    "Records",
    "Refused",
    "RichPart",
    "rich_parts",
]

IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
"""The image types shown, with the file extension each upload gets."""
MAX_IMAGES = 4
"""Images kept from one result; the rest are refused (each may be up to the upload cap)."""
MAX_LINKS = 20
"""Links kept from one result."""
MAX_RECORD_ROWS = 200
"""Rows kept from one list of records (a surface shows fewer; the count says how many more)."""
MAX_CELL_CHARS = 2000
MAX_COLUMNS = 50


@dataclass(frozen=True)
class Image:
    """An image, its bytes checked against its type."""

    data: bytes = field(repr=False)
    mime_type: str

    @property
    def extension(self) -> str:
        return IMAGE_TYPES[self.mime_type]


@dataclass(frozen=True)
class Link:
    """A resource a result pointed at; never fetched by the bot."""

    uri: str
    title: str

    @property
    def web(self) -> bool:
        """An http(s) URL with a host: the only kind a surface may make clickable."""
        try:
            parts = urlsplit(self.uri)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True)
class Records:
    """A list of flat objects: column names (in first-seen order) and rows of cell strings."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    total: int
    """How many records the result held (``rows`` may be fewer, ``MAX_RECORD_ROWS``)."""


@dataclass(frozen=True)
class Refused:
    """Something the result held that is not shown, and why (for a line in the thread)."""

    what: str
    why: str


RichPart = Image | Link | Records | Refused


@dataclass(frozen=True)
class Attachment:
    """One rich part of a turn, with the (catalog) name of the tool whose result held it."""

    tool: str
    part: RichPart


def rich_parts(
    result: types.CallToolResult,
    *,
    max_image_bytes: int,
    secrets: Sequence[str] = (),
    clean: Callable[[str], str] = str,
) -> tuple[RichPart, ...]:
    """The parts of ``result`` a person should see besides its text, in the result's order
    (records last). ``secrets``: the connection's, which no image's bytes may contain;
    ``clean`` scrubs every string kept (links, records). Nothing for an error result."""
    if result.is_error:
        return ()
    parts: list[RichPart] = []
    images = links = 0
    for block in result.content:
        if isinstance(block, types.ImageContent):
            images += 1
            if images > MAX_IMAGES:
                parts.append(Refused("image", f"only {MAX_IMAGES} images of one result are shown"))
                continue
            parts.append(_image(block, max_image_bytes, secrets))
        elif isinstance(block, types.ResourceLink | types.EmbeddedResource):
            links += 1
            if links <= MAX_LINKS:
                parts.append(_link(block, clean))
    records = _records(result)
    if records is not None:
        parts.append(_cleaned(records, clean))
    return tuple(parts)


def _image(block: types.ImageContent, max_bytes: int, secrets: Sequence[str]) -> Image | Refused:
    mime = str(block.mime_type).lower().strip()
    if mime not in IMAGE_TYPES:
        shown = mime[:60] or "an image without a type"
        return Refused("image", f"{shown} is not shown (only PNG, JPEG, GIF and WebP are)")
    encoded = block.data if isinstance(block.data, str) else ""
    if (len(encoded) * 3) // 4 - 2 > max_bytes:  # judged before decoding anything
        return _too_large(len(encoded) * 3 // 4, max_bytes)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return Refused("image", "its data is not valid base64")
    if len(data) > max_bytes:
        return _too_large(len(data), max_bytes)
    if not _signature_matches(mime, data):
        return Refused("image", f"it is declared {mime} but its bytes are not one")
    if any(secret and secret.encode() in data for secret in secrets):
        return Refused("image", "it contains one of the connection's secrets")
    return Image(data=data, mime_type=mime)


def _signature_matches(mime: str, data: bytes) -> bool:
    """The bytes begin as the type's format says (and, where the format states its own length
    or first chunk, say so too): enough that a server cannot pass other bytes off as an image."""
    if mime == "image/png":
        return data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 33
    if mime == "image/jpeg":
        return data.startswith(b"\xff\xd8\xff") and len(data) > 4
    if mime == "image/gif":
        return data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 13
    if mime == "image/webp":
        declared = int.from_bytes(data[4:8], "little") if len(data) >= 12 else -1
        return data.startswith(b"RIFF") and data[8:12] == b"WEBP" and declared + 8 == len(data)
    return False


def _link(block: types.ResourceLink | types.EmbeddedResource, clean: Callable[[str], str]) -> Link:
    if isinstance(block, types.ResourceLink):
        uri, title = str(block.uri), block.title or block.name or str(block.uri)
    else:
        uri = str(block.resource.uri)
        title = uri
    return Link(uri=clean(uri), title=clean(str(title)))


def _records(result: types.CallToolResult) -> Records | None:
    """The result's list of flat objects, from structured content first, else from its text."""
    structured = result.structured_content
    if isinstance(structured, dict) and len(structured) == 1:
        structured = next(iter(structured.values()))  # {"result": [...]}, as SDKs wrap lists
    if isinstance(structured, list):
        return _flat_records(structured)
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    if not texts or len(result.content) != len(texts) or not all(t.lstrip()[:1] in ("[", "{") for t in texts):
        return None  # (most results are prose: not parsed at all)
    try:
        loaded = [json.loads(text) for text in texts]
    except (ValueError, RecursionError):
        return None
    if len(loaded) == 1 and isinstance(loaded[0], list):
        return _flat_records(loaded[0])
    if len(loaded) > 1:  # an SDK's list result: one JSON object per text block
        return _flat_records(loaded)
    return None


def _flat_records(items: Iterable[Any]) -> Records | None:
    items = list(items)
    if not items or not all(isinstance(item, dict) and item for item in items):
        return None
    columns: dict[str, None] = {}
    for item in items:
        for key, value in item.items():
            if not isinstance(key, str) or not _scalar(value):
                return None
            columns.setdefault(key, None)
    if len(columns) > MAX_COLUMNS:
        return None
    names = tuple(columns)
    rows = tuple(tuple(_cell(item.get(name)) for name in names) for item in items[:MAX_RECORD_ROWS])
    return Records(columns=names, rows=rows, total=len(items))


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _cell(value: object) -> str:
    if value is None:
        return ""
    try:
        text = json.dumps(value) if isinstance(value, bool | float) else str(value)
    except ValueError:  # an integer past Python's digit limit for str()
        text = "…"
    return text[:MAX_CELL_CHARS]


def _cleaned(records: Records, clean: Callable[[str], str]) -> Records:
    return Records(
        columns=tuple(clean(c) for c in records.columns),
        rows=tuple(tuple(clean(cell) for cell in row) for row in records.rows),
        total=records.total,
    )


def _too_large(size: int, limit: int) -> Refused:
    return Refused("image", f"too large ({_size(size)}; the limit is {_size(limit)})")


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    if count >= 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count} bytes"
