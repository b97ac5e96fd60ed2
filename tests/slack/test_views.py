"""Block Kit surfaces stay within Slack's limits however many connections and tools there are.

Each surface is serialized with ``to_dict()``, which runs slack_sdk's own checks (section text,
button values, title lengths, private_metadata); the counts Slack enforces only server-side
(50 blocks per message, 100 per view) are checked here.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot import views
from mcp_core.models import Connection, ConnectionStatus, ToolInfo, ToolPrefs
from run_cards import load_cards

MESSAGE_BLOCKS, VIEW_BLOCKS, SECTION_TEXT, PRIVATE_METADATA = 50, 100, 3000, 3000
LONG = "word " * 2000  # 10,000 characters


def connection(index: int, *, tools: int = 3, detail: str | None = None) -> Connection:
    now = datetime.now(UTC)
    return Connection(
        id=uuid.uuid4(),
        team_id="T1",
        user_id="U1",
        name=f"conn-{index:02d}",
        transport="streamable_http",
        url="https://example.com/mcp",
        status=ConnectionStatus.ERROR if detail else ConnectionStatus.HEALTHY,
        status_detail=detail,
        tools=[
            ToolInfo(
                name=f"tool_{t:03d}_{'x' * 50}",
                description=LONG,
                read_only=t % 2 == 0,
                destructive=t % 3 == 0,
            )
            for t in range(tools)
        ],
        usage_count=index,
        created_at=now,
        updated_at=now,
    )


def serialized(blocks: list[Block]) -> list[dict[str, Any]]:
    return [block.to_dict() for block in blocks]


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def test_sixty_connections_fit_one_message_with_a_note_about_the_rest() -> None:
    blocks = serialized(views.connection_blocks([connection(i, detail=LONG) for i in range(60)]))

    assert len(blocks) <= MESSAGE_BLOCKS
    assert all(len(text) <= SECTION_TEXT for text in section_texts(blocks))
    assert blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == "…and 36 more."


def test_sixty_connections_fit_the_home_tab() -> None:
    view = views.home_view([connection(i) for i in range(60)]).to_dict()

    assert len(view["blocks"]) <= VIEW_BLOCKS
    assert view["blocks"][-1]["elements"][0]["text"] == "…and 12 more."


def test_connections_with_many_tool_choices_fit_one_message_with_one_row_of_undo_buttons_each() -> None:
    many = [connection(i, tools=60) for i in range(30)]
    for one in many:
        one.tool_prefs = ToolPrefs(
            off={t.name for t in one.tools[:30]} | {"n" * 3000}, always={t.name for t in one.tools[30:]}
        )

    blocks = serialized(views.connection_blocks(many))

    assert len(blocks) <= MESSAGE_BLOCKS
    assert all(len(text) <= SECTION_TEXT for text in section_texts(blocks))
    undo = [b for b in blocks if b["type"] == "actions" and b["block_id"].startswith("prefs:")]
    assert len(undo) == 16  # three blocks a connection, then the note
    assert all(len(b["elements"]) == 25 for b in undo)
    assert undo[0]["elements"][0]["text"]["text"].startswith("Ask again: tool_030")
    assert blocks[-1]["elements"][0]["text"] == "…and 14 more."


def test_a_tool_name_too_long_for_a_button_value_is_listed_without_its_switch() -> None:
    one = connection(1, tools=2)
    one.tools[0] = ToolInfo(name="n" * 3000)

    blocks = serialized(views.tool_page_blocks(one, 0))

    assert "accessory" not in blocks[1]
    assert blocks[2]["accessory"]["text"]["text"] == "Turn off"


def test_a_page_of_tools_with_long_names_and_descriptions_stays_within_limits() -> None:
    many = connection(1, tools=40)
    many.tools[0] = ToolInfo(name="n" * 500, description="<script> & " + LONG)

    blocks = serialized(views.tool_page_blocks(many, 0))

    assert len(blocks) <= MESSAGE_BLOCKS
    texts = section_texts(blocks)
    assert all(len(text) <= SECTION_TEXT for text in texts)
    assert texts[1].startswith(f"`{'n' * 99}…`\n&lt;script&gt; &amp; word")
    assert texts[1].endswith("…")


@pytest.mark.parametrize("page", [-5, 0, 1, 2, 99])
def test_tool_pages_are_clamped_to_the_pages_there_are(page: int) -> None:
    blocks = serialized(views.tool_page_blocks(connection(1, tools=40), page))

    header = blocks[0]["text"]["text"]
    expected = min(max(page, 0), 2) + 1
    assert header.endswith(f"(page {expected} of 3)")


def test_every_connections_tools_grouped_fit_one_message() -> None:
    blocks = serialized(views.all_tools_blocks([connection(i, tools=200) for i in range(60)]))

    assert len(blocks) <= MESSAGE_BLOCKS
    assert all(len(text) <= SECTION_TEXT for text in section_texts(blocks))
    assert blocks[-1]["elements"][0]["text"] == "…and 11 more."
    assert json.loads(blocks[0]["accessory"]["value"])["p"] == 0


def test_badges_say_read_only_and_destructive() -> None:
    tools = [
        ToolInfo(name="reader", read_only=True),
        ToolInfo(name="wiper", destructive=True),
        ToolInfo(name="plain"),
    ]
    one = connection(1)
    one.tools = tools

    texts = section_texts(serialized(views.tool_page_blocks(one, 0)))

    assert texts[1:] == [
        "`reader` _(read-only)_\n_no description_",
        "`wiper` _(⚠️ destructive)_\n_no description_",
        "`plain`\n_no description_",
    ]


@pytest.mark.parametrize("editing", [False, True])
def test_a_card_form_is_valid_and_its_metadata_fits(editing: bool) -> None:
    metadata = {"card": "custom", "channel": "C" + "1" * 20, "edit": str(uuid.uuid4())}
    card = load_cards().get("custom")

    view = views.card_form(card, metadata=metadata, name="n" * 32, editing=editing)
    payload = view.to_dict()

    assert len(payload["private_metadata"]) <= PRIVATE_METADATA
    assert json.loads(payload["private_metadata"]) == metadata
    assert len(payload["title"]["text"]) <= 24


def test_a_failed_connect_message_carries_retry_and_edit() -> None:
    connection_id = uuid.uuid4()

    blocks = serialized(views.result_blocks("❌ " + LONG, connection_id=connection_id, failed=True))

    assert len(blocks[0]["text"]["text"]) <= SECTION_TEXT
    assert [(b["action_id"], b["value"]) for b in blocks[1]["elements"]] == [
        ("mcp_retry", str(connection_id)),
        ("mcp_edit", str(connection_id)),
    ]


# --- approval questions say what the server claims about the tool ------------------------------


def _call(**hints: bool | None) -> Any:
    from mcp_core.agent import ToolCall
    from mcp_core.models import CatalogEntry

    tool = ToolInfo(name="pid", description="Returns the pid.", **hints)
    entry = CatalogEntry(name="toy__pid", connection_id=uuid.uuid4(), connection_name="toy", tool=tool)
    return ToolCall(id="c1", name="toy__pid", arguments={}, entry=entry)


@pytest.mark.parametrize(
    ("hints", "why", "said"),
    [
        ({"read_only": True}, "The server says it only reads.", "_The server says: read-only._"),
        (
            {"read_only": False, "destructive": True, "idempotent": False},
            "The server says it may delete or overwrite things.",
            "_The server says: may write, destructive, not idempotent._",
        ),
        ({"destructive": False}, "may change things, but not delete or overwrite them", "not destructive"),
        ({}, "It may change something (the server does not say it only reads).", None),
    ],
)
def test_an_approval_question_says_what_the_server_claims_about_the_tool(
    hints: dict[str, bool], why: str, said: str | None
) -> None:
    question = views.approval_question("v", "U1", _call(**hints))
    assert question is not None
    text, blocks = question
    assert why in text
    detail = blocks[0].text.text  # type: ignore[attr-defined]
    assert "`pid` on *toy*" in detail
    if said is None:
        assert "The server says:" not in detail
    else:
        assert said in detail
