"""/mcp list | tools | test | disconnect | help, sent as signed slash commands."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot import commands, texts
from mcp_core.models import ToolInfo
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, listeners_done, message_text
from tests.support.fake_slack import FakeSlack
from tests.support.registry import BEARER
from tests.support.servers import RunningServer

TOY_TOOLS = 9


@pytest.mark.anyio
@pytest.mark.parametrize("text", ["help", "frobnicate now", "", "HELP"])
async def test_help_an_unknown_subcommand_and_a_bare_mcp_reply_with_usage(
    slack: SlackDriver, text: str
) -> None:
    reply = await slack.command(text)

    assert (reply.status, reply.text) == (200, "")
    [body] = await slack.replies(reply)
    assert body["text"] == commands.USAGE
    assert body["response_type"] == "ephemeral"


@pytest.mark.anyio
async def test_list_without_connections_says_how_to_connect(slack: SlackDriver) -> None:
    reply = await slack.command("list")

    assert texts.NO_CONNECTIONS in await slack.reply_text(reply)


@pytest.mark.anyio
async def test_list_shows_each_connection_with_status_tool_count_last_use_and_calls(
    slack: SlackDriver, toy_server: RunningServer, free_url: str
) -> None:
    healthy = await slack.connect("Healthy", toy_server.url)
    await slack.connect("broken", free_url)
    entry = next(e for e in await slack.services.registry.catalog(TEAM, USER) if e.tool.name == "echo")
    await slack.services.registry.call(TEAM, USER, entry.name, {"text": "hi"})
    await slack.services.usage.flush()

    reply = await slack.command("list")

    [body] = await slack.replies(reply)
    lines = [block["text"]["text"] for block in body["blocks"] if block["type"] == "section"]
    assert lines[0].startswith("*broken* · 🔴 error · 0 tools · never used · 0 calls")
    assert lines[1] == f"*healthy* · 🟢 healthy · {TOY_TOOLS} tools · used just now · 1 calls"
    buttons = [b for block in body["blocks"] if block["type"] == "actions" for b in block["elements"]]
    assert [b["action_id"] for b in buttons[3:]] == ["mcp_test", "mcp_tools", "mcp_disconnect"]
    assert buttons[3]["value"] == str(healthy.id)
    assert body["text"] == "You have 2 MCP connections."


@pytest.mark.anyio
async def test_a_user_lists_only_their_own_connections(slack: SlackDriver, toy_server: RunningServer) -> None:
    await slack.connect("theirs", toy_server.url, user=USER_B)

    reply = await slack.command("list")

    assert "theirs" not in await slack.reply_text(reply)


@pytest.mark.anyio
async def test_tools_of_a_named_connection_lists_names_descriptions_and_badges(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    await slack.connect("toy", toy_server.url)

    reply = await slack.command("tools toy")

    [body] = await slack.replies(reply)
    sections = [block["text"]["text"] for block in body["blocks"] if block["type"] == "section"]
    assert sections[0] == f"*toy* — {TOY_TOOLS} tools (page 1 of 1)"
    [echo] = [s for s in sections if s.startswith("`echo`")]
    assert echo.startswith("`echo` _(read-only)_\n")
    assert not any(block["type"] == "actions" for block in body["blocks"])  # one page: no Next


@pytest.mark.anyio
@pytest.mark.parametrize("typed", ["TOY", "Toy", " toy "])
async def test_names_match_case_insensitively(
    slack: SlackDriver, toy_server: RunningServer, typed: str
) -> None:
    await slack.connect("toy", toy_server.url)

    reply = await slack.command(f"tools {typed}")

    assert f"*toy* — {TOY_TOOLS} tools" in await slack.reply_text(reply)


@pytest.mark.anyio
@pytest.mark.parametrize("sub", ["tools", "test", "disconnect"])
async def test_an_unknown_name_lists_the_users_connections(
    slack: SlackDriver, toy_server: RunningServer, sub: str
) -> None:
    await slack.connect("alpha", toy_server.url)
    await slack.connect("beta", toy_server.url)

    reply = await slack.command(f"{sub} gamma")

    assert await slack.reply_text(reply) == "You have no connection named “gamma”. Yours: `alpha`, `beta`."


@pytest.mark.anyio
async def test_tool_pages_turn_with_next_and_previous_in_place(slack: SlackDriver, free_url: str) -> None:
    connection = await slack.connect("many", free_url)
    tools = [ToolInfo(name=f"tool_{i:02d}", description=f"Tool number {i}.") for i in range(40)]
    await slack.services.store.save_tools(TEAM, USER, connection.id, tools, datetime.now(UTC))

    first = await slack.command("tools many")
    [page1] = await slack.replies(first)
    [nav] = [block for block in page1["blocks"] if block["type"] == "actions"]
    [next_button] = nav["elements"]
    assert next_button["text"]["text"] == "Next →"
    assert len(page1["blocks"]) == 1 + 15 + 1

    second = await slack.click(next_button["action_id"], next_button["value"])
    [page2] = await slack.replies(second)
    assert page2["replace_original"] is True
    assert page2["blocks"][0]["text"]["text"] == "*many* — 40 tools (page 2 of 3)"
    assert "`tool_15`" in message_text(page2)
    [nav] = [block for block in page2["blocks"] if block["type"] == "actions"]
    assert [b["text"]["text"] for b in nav["elements"]] == ["← Previous", "Next →"]

    last = await slack.click(nav["elements"][1]["action_id"], nav["elements"][1]["value"])
    [page3] = await slack.replies(last)
    assert len([b for b in page3["blocks"] if b["type"] == "section"]) == 1 + 10
    [nav] = [block for block in page3["blocks"] if block["type"] == "actions"]
    assert [b["text"]["text"] for b in nav["elements"]] == ["← Previous"]


@pytest.mark.anyio
async def test_tools_without_a_name_groups_every_connection_in_one_message(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    names = [f"toy{i}" for i in range(6)]  # more than the five replies a response_url allows
    for name in names:
        await slack.connect(name, toy_server.url)

    reply = await slack.command("tools")

    await listeners_done()
    [body] = await slack.replies(reply)
    headers = [block["text"]["text"].split("\n")[0] for block in body["blocks"]]
    assert headers == [f"*{name}* — {TOY_TOOLS} tools" for name in names]
    assert all(block["accessory"]["action_id"] == "mcp_tools" for block in body["blocks"])
    assert "`echo` _(read-only)_" in body["blocks"][0]["text"]["text"]


@pytest.mark.anyio
async def test_test_of_one_connection_reports_tool_count_and_latency(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    await slack.connect("toy", toy_server.url)

    reply = await slack.command("test TOY")

    text = await slack.reply_text(reply)
    assert re.fullmatch(rf"🟢 \*toy\*: {TOY_TOOLS} tools, answered in \d+ ms", text), text


@pytest.mark.anyio
async def test_test_of_all_connections_answers_once_with_every_result(
    slack: SlackDriver, fake: FakeSlack, bearer_server: RunningServer, free_url: str
) -> None:
    await slack.connect("good", bearer_server.url, token=BEARER)
    await slack.connect("gone", free_url)
    await listeners_done()
    published = len(fake.calls("views.publish"))

    reply = await slack.command("test")

    gone, good = (await slack.reply_text(reply)).split("\n")  # by name
    assert re.fullmatch(r"🔴 \*gone\*: could not reach the server .*\(\d+ ms\)", gone), gone
    assert good.startswith(f"🟢 *good*: {TOY_TOOLS} tools")
    assert len(fake.calls("views.publish")) == published + 1  # the Home tab shows the new health


@pytest.mark.anyio
async def test_disconnect_by_name_asks_for_confirmation_first(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    connection = await slack.connect("toy", toy_server.url)

    reply = await slack.command("disconnect Toy")

    [body] = await slack.replies(reply)
    assert body["text"] == "Disconnect toy?"
    [button] = [b for block in body["blocks"] if block["type"] == "actions" for b in block["elements"]][2:]
    assert (button["action_id"], button["value"]) == ("mcp_disconnect", str(connection.id))
    assert button["confirm"]["confirm"]["text"] == "Disconnect"
    assert await slack.connections() == [connection]


@pytest.mark.anyio
async def test_disconnect_without_a_name_asks_which_one(slack: SlackDriver) -> None:
    reply = await slack.command("disconnect")

    assert await slack.reply_text(reply) == texts.WHICH_ONE
