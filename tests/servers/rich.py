"""A stdio MCP server whose results carry more than text: images, resource links, records.

    python tests/servers/rich.py

Tools (all read-only, so the agent runs them without asking):

    chart()              a real 1×1 PNG (``chart_png()``), and a line of text
    big_chart(kb)        a real PNG padded with an ancillary chunk to about ``kb`` KiB
    fake_png()           declared image/png, but its bytes are a GIF header and text
    svg()                an image/svg+xml image (a type that is never shown)
    links()              a https ResourceLink, a file:// ResourceLink and an embedded resource
    people(count, wide)  ``count`` flat records (structuredContent {"result": [...]}, JSON text
                         too); ``wide`` gives each 25 columns
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import mcp_types as types
from mcp.server import MCPServer
from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True)
LINK_URL = "https://example.com/reports/q3?view=full&x=<1>"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def chart_png(padding: int = 0) -> bytes:
    """A valid 1×1 RGB PNG; ``padding`` bytes of a private ancillary chunk make it bigger."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    pad = _chunk(b"prVt", b"\x00" * padding) if padding else b""
    pixels = _chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return b"\x89PNG\r\n\x1a\n" + header + pad + pixels + _chunk(b"IEND", b"")


def _image(data: bytes, mime: str) -> types.ImageContent:
    return types.ImageContent(data=base64.b64encode(data).decode(), mime_type=mime)


def people_records(count: int, *, wide: bool = False) -> list[dict[str, Any]]:
    """The records ``people`` returns (the test compares against these)."""
    rows = []
    for n in range(count):
        row: dict[str, Any] = {"name": f"person {n}", "age": 20 + n, "active": n % 2 == 0, "team": None}
        if wide:
            row |= {f"extra_{k}": k for k in range(21)}
        rows.append(row)
    return rows


def build_server() -> MCPServer:
    mcp = MCPServer("rich", version="1.0", log_level="WARNING")

    def chart() -> types.CallToolResult:
        return types.CallToolResult(
            content=[types.TextContent(text="a chart"), _image(chart_png(), "image/png")]
        )

    def big_chart(kb: int) -> types.CallToolResult:
        return types.CallToolResult(content=[_image(chart_png(padding=kb * 1024), "image/png")])

    def fake_png() -> types.CallToolResult:
        return types.CallToolResult(content=[_image(b"GIF89a not really a png at all", "image/png")])

    def svg() -> types.CallToolResult:
        return types.CallToolResult(
            content=[_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")]
        )

    def links() -> types.CallToolResult:
        return types.CallToolResult(
            content=[
                types.TextContent(text="three links"),
                types.ResourceLink(uri=LINK_URL, name="q3", title="Q3 <report> & more"),
                types.ResourceLink(uri="file:///etc/passwd", name="passwd"),
                types.EmbeddedResource(
                    resource=types.TextResourceContents(uri="https://example.org/embedded", text="inner")
                ),
            ]
        )

    def people(count: int, wide: bool = False) -> types.CallToolResult:
        records = people_records(count, wide=wide)
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(records))], structured_content={"result": records}
        )

    for tool in (chart, big_chart, fake_png, svg, links, people):
        mcp.add_tool(tool, name=tool.__name__, annotations=READ_ONLY, structured_output=False)
    return mcp


def main() -> None:
    build_server().run("stdio")


if __name__ == "__main__":
    main()
