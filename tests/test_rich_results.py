"""A result's images, links and records reach the person as checked, typed parts; the model
still reads only the text.

Through the real registry and ``tests/servers/rich.py`` over stdio, and ``rich_parts`` on
results built here for what that server does not send (secrets inside image bytes, broken
base64, objects that are not flat).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import mcp_types as types
import pytest

from mcp_core.models import NewConnection
from mcp_core.rich_results import MAX_IMAGES, Image, Link, Records, Refused, rich_parts
from mcp_core.services import Services
from tests.servers.rich import LINK_URL, chart_png, people_records
from tests.support.registry import add, call, make_settings, open_services

pytestmark = pytest.mark.anyio

RICH = Path(__file__).resolve().parent / "servers" / "rich.py"
LIMIT = 8 * 1024


def rich_connection(name: str = "rich") -> NewConnection:
    return NewConnection(name=name, transport="stdio", command=sys.executable, args=[str(RICH)])


@pytest.fixture
async def rich(tmp_path: Path) -> AsyncIterator[Services]:
    async with open_services(make_settings(tmp_path, max_upload_bytes=LIMIT)) as services:
        outcome = await add(services, rich_connection())
        assert outcome.error is None, outcome.error
        yield services


def png_result(data: bytes, mime: str = "image/png") -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.ImageContent(data=base64.b64encode(data).decode(), mime_type=mime)]
    )


async def test_an_image_reaches_the_person_as_its_bytes_and_the_model_as_a_line(rich: Services) -> None:
    result = await call(rich, "rich__chart")

    assert result.rich == (Image(data=chart_png(), mime_type="image/png"),)
    assert result.text == f"a chart\n[image image/png, {len(base64.b64encode(chart_png())) * 3 // 4} bytes]"


async def test_an_image_over_the_upload_cap_is_refused_with_its_size(rich: Services) -> None:
    result = await call(rich, "rich__big_chart", kb=20)

    [refused] = result.rich
    assert isinstance(refused, Refused)
    assert refused.why == "too large (20 KB; the limit is 8 KB)"


@pytest.mark.parametrize(
    ("tool", "why"),
    [
        ("rich__fake_png", "it is declared image/png but its bytes are not one"),
        ("rich__svg", "image/svg+xml is not shown (only PNG, JPEG, GIF and WebP are)"),
    ],
)
async def test_an_image_whose_bytes_or_type_are_wrong_is_refused(rich: Services, tool: str, why: str) -> None:
    result = await call(rich, tool)

    assert result.rich == (Refused("image", why),)


async def test_links_are_kept_unfetched_and_only_http_ones_count_as_web(rich: Services) -> None:
    result = await call(rich, "rich__links")

    assert result.rich == (
        Link(uri=LINK_URL, title="Q3 <report> & more"),
        Link(uri="file:///etc/passwd", title="passwd"),
        Link(uri="https://example.org/embedded", title="https://example.org/embedded"),
    )
    assert [link.web for link in result.rich if isinstance(link, Link)] == [True, False, True]


async def test_a_list_of_flat_records_becomes_columns_and_string_cells(rich: Services) -> None:
    result = await call(rich, "rich__people", count=3)

    [records] = result.rich
    assert records == Records(
        columns=("name", "age", "active", "team"),
        rows=(
            ("person 0", "20", "true", ""),
            ("person 1", "21", "false", ""),
            ("person 2", "22", "true", ""),
        ),
        total=3,
    )
    assert json.loads(result.text) == people_records(3)  # the model reads what it read before


def test_records_also_come_from_json_text_and_not_from_nested_objects() -> None:
    def text(value: object) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(value))])

    assert rich_parts(text([{"a": 1}, {"b": "x"}]), max_image_bytes=LIMIT) == (
        Records(columns=("a", "b"), rows=(("1", ""), ("", "x")), total=2),
    )
    assert rich_parts(text([{"a": {"nested": 1}}]), max_image_bytes=LIMIT) == ()
    assert rich_parts(text({"a": 1}), max_image_bytes=LIMIT) == ()
    assert rich_parts(text([1, 2]), max_image_bytes=LIMIT) == ()


def test_an_image_holding_a_secret_or_broken_base64_is_refused() -> None:
    secret = "sk-live-7f3a9c1e5d"
    leaky = png_result(chart_png() + secret.encode())
    broken = types.CallToolResult(content=[types.ImageContent(data="not base64!!", mime_type="image/png")])

    assert rich_parts(leaky, max_image_bytes=LIMIT, secrets=[secret]) == (
        Refused("image", "it contains one of the connection's secrets"),
    )
    assert rich_parts(broken, max_image_bytes=LIMIT) == (Refused("image", "its data is not valid base64"),)


def test_only_a_few_images_of_one_result_are_kept_and_none_of_an_error() -> None:
    many = types.CallToolResult(content=png_result(chart_png()).content * (MAX_IMAGES + 2))

    parts = rich_parts(many, max_image_bytes=LIMIT)

    assert sum(isinstance(p, Image) for p in parts) == MAX_IMAGES
    assert sum(isinstance(p, Refused) for p in parts) == 2
    failed = png_result(chart_png()).model_copy(update={"is_error": True})
    assert rich_parts(failed, max_image_bytes=LIMIT) == ()


@pytest.mark.parametrize(
    ("mime", "data"),
    [
        ("image/jpeg", b"\xff\xd8\xff\xe0" + b"\x00" * 16),
        ("image/gif", b"GIF89a" + b"\x00" * 16),
        ("image/webp", b"RIFF" + (12).to_bytes(4, "little") + b"WEBPVP8 " + b"\x00" * 4),
    ],
)
def test_jpeg_gif_and_webp_signatures_are_accepted(mime: str, data: bytes) -> None:
    assert rich_parts(png_result(data, mime), max_image_bytes=LIMIT) == (Image(data=data, mime_type=mime),)
