"""A person's tool choices, end to end: switching tools off and on from ``/mcp tools``, *Always
allow* on the approval question, and *Ask again* / *Turn on* from ``/mcp list`` and the Home tab.

Served like production (``agent_harness``): signed HTTP in, the fake Slack and the scripted
OpenAI server out, the toy server's tools run through the real registry and store. The model's
requests are the proof of what it was offered; the usage rows, of what ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot import texts
from mcp_core.models import Connection
from tests.slack.agent_harness import (
    TURN_S,
    Bot,
    agent_bot,
    approval_value,
    blocks_text,
    live_thread,
    mention,
    others_wrote_in_thread,
    tool_messages,
    tool_runs,
    turn_done,
    updates,
)
from tests.slack.conftest import TEAM, USER, USER_B, listeners_done
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio

NOT_A_TOOL = "Error: There is no tool named “toy__echo”."


async def toy_of(bot: Bot) -> Connection:
    found = await bot.services.store.find_connection(TEAM, USER, "toy")
    assert found is not None
    return found


async def tools_page(bot: Bot) -> dict[str, Any]:
    """``/mcp tools toy``: the message sent back."""
    reply = await bot.slack.command("tools toy")
    [page] = await bot.slack.replies(reply)
    return page


def tool_section(page: dict[str, Any], tool: str) -> dict[str, Any]:
    [section] = [
        b for b in page["blocks"] if b["type"] == "section" and b["text"]["text"].startswith(f"`{tool}`")
    ]
    return section


async def click_and_read(bot: Bot, action_id: str, value: str, *, user: str = USER) -> dict[str, Any]:
    """A click in a message; the one reply the bot sent to its response_url."""
    clicked = await bot.slack.click(action_id, value, user=user)
    [reply] = await bot.slack.replies(clicked)
    return reply


async def click_and_read_list(bot: Bot) -> dict[str, Any]:
    """``/mcp list``: the message sent back."""
    reply = await bot.slack.command("list")
    [body] = await bot.slack.replies(reply)
    return body


def offered(request: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools", [])}


def buttons(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every button of a message by its text."""
    found = {}
    for block in body.get("blocks") or []:
        elements = block.get("elements", []) if block["type"] == "actions" else [block.get("accessory")]
        for element in elements:
            if element and element.get("type") == "button":
                found[element["text"]["text"]] = element
    return found


async def echo_turn(bot: Bot, fake: FakeSlack) -> dict[str, Any]:
    """A turn in which the model calls toy__echo whether offered or not; its first request."""
    before = len(bot.llm.requests)
    bot.llm.call_tools(("toy__echo", {"text": "hi"}))
    bot.llm.reply("Done.")
    await bot.slack.event(mention("echo hi"))
    await turn_done(bot)
    return bot.llm.requests[before]


# --- switching tools off and on ----------------------------------------------------------------


async def test_a_switched_off_tool_is_not_offered_not_run_when_named_and_back_once_switched_on(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        page = await tools_page(bot)
        switch = tool_section(page, "echo")["accessory"]
        assert switch["text"]["text"] == texts.TURN_OFF

        off_page = await click_and_read(bot, switch["action_id"], switch["value"])
        off_request = await echo_turn(bot, fake)
        runs_while_off = await tool_runs(bot.services)
        off_answer = tool_messages(bot.llm.requests[-1])
        listed = await click_and_read_list(bot)

        switch_on = tool_section(off_page, "echo")["accessory"]
        on_page = await click_and_read(bot, switch_on["action_id"], switch_on["value"])
        on_request = await echo_turn(bot, fake)
        on_answer = tool_messages(bot.llm.requests[-1])
        catalog = {e.name for e in await bot.services.registry.catalog(TEAM, USER)}

    assert off_page["replace_original"] is True  # the page shows the new state in place
    assert tool_section(off_page, "echo")["text"]["text"].startswith("`echo` _(off, read-only)_")
    assert switch_on["text"]["text"] == texts.TURN_ON
    assert "toy__echo" not in offered(off_request)
    assert "toy__pid" in offered(off_request)  # the connection's other tools stay
    assert off_answer == [NOT_A_TOOL]  # named by the model anyway: refused, not sent
    assert runs_while_off == 0
    assert f"{texts.SWITCHED_OFF_LINE} `echo`" in blocks_text(listed)
    assert "Turn on: echo" in buttons(listed)
    assert tool_section(on_page, "echo")["text"]["text"].startswith("`echo` _(read-only)_")
    assert "toy__echo" in offered(on_request)
    assert on_answer == ["hi"]
    assert "toy__echo" in catalog


async def test_turn_on_from_the_home_tab_brings_the_tool_back_and_refreshes_the_tab(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        toy = await toy_of(bot)
        await bot.services.registry.set_tool_enabled(TEAM, USER, toy.id, "echo", False)
        await bot.slack.event({"type": "app_home_opened", "user": USER, "tab": "home"})
        [home] = await fake.await_for("views.publish", 1, timeout_s=TURN_S)
        turn_on = buttons(home["body"]["view"])["Turn on: echo"]

        await bot.slack.click(turn_on["action_id"], turn_on["value"], in_home=True)
        refreshed = await fake.await_for("views.publish", 2, timeout_s=TURN_S)
        await listeners_done(TURN_S)
        catalog = {e.name for e in await bot.services.registry.catalog(TEAM, USER)}

    assert "toy__echo" in catalog
    assert "Turn on: echo" not in buttons(refreshed[-1]["body"]["view"])


async def test_nobody_switches_someone_elses_tool_and_a_made_up_tool_name_is_refused(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        switch = tool_section(await tools_page(bot), "echo")["accessory"]
        toy = await toy_of(bot)
        forged_list = json.dumps({"c": str(toy.id), "t": "rm_rf"})
        await bot.services.registry.set_tool_enabled(TEAM, USER, toy.id, "pid", False)
        await bot.services.registry.set_always_allowed(TEAM, USER, toy.id, "add", True)

        stranger = await click_and_read(bot, switch["action_id"], switch["value"], user=USER_B)
        turn_on = await click_and_read(
            bot, "mcp_tool_on_0", json.dumps({"c": str(toy.id), "t": "pid"}), user=USER_B
        )
        ask_again = await click_and_read(
            bot, "mcp_tool_ask_again_0", json.dumps({"c": str(toy.id), "t": "add"}), user=USER_B
        )
        made_up = json.loads(switch["value"]) | {"t": "rm_rf"}
        unknown = await click_and_read(bot, switch["action_id"], json.dumps(made_up))
        not_in_list = await click_and_read(bot, "mcp_tool_on_0", forged_list)
        prefs = (await toy_of(bot)).tool_prefs
        bobs = await bot.services.store.find_connection(TEAM, USER_B, "bobs")

    for refused in (stranger, turn_on, ask_again):
        assert refused["text"] == texts.NOT_YOUR_CONNECTION
    assert unknown["text"] == "❌ toy has no tool named “rm_rf”."
    assert unknown["replace_original"] is False  # the page stays as it was
    assert not_in_list["text"] == "❌ toy has no tool named “rm_rf”."
    assert (prefs.off, set(prefs.always)) == ({"pid"}, {"add"})
    assert bobs is not None
    assert bobs.tool_prefs.off == frozenset()


# --- always allow ------------------------------------------------------------------------------


async def pid_turn(bot: Bot, fake: FakeSlack, **event: Any) -> int:
    """Start a turn calling toy__pid; the number of messages posted before it."""
    posted = len(fake.calls("chat.postMessage"))
    bot.llm.call_tools(("toy__pid", {}))
    bot.llm.reply("Done.")
    await bot.slack.event(mention("what is your pid?", **event))
    return posted


async def asked(fake: FakeSlack, posted: int) -> dict[str, Any]:
    """The approval question of a turn started after ``posted`` messages (its second post)."""
    posts = await fake.await_for("chat.postMessage", posted + 2, timeout_s=TURN_S)
    return posts[posted + 1]["body"]


def questions_since(fake: FakeSlack, posted: int) -> list[dict[str, Any]]:
    bodies = [c["body"] for c in fake.calls("chat.postMessage")[posted:]]
    return [b for b in bodies if str(b.get("text", "")).startswith(f"<@{USER}>, may I run")]


async def test_always_allow_runs_this_call_and_the_next_turn_without_a_question_until_asked_again(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        question = await asked(fake, await pid_turn(bot, fake))
        value = approval_value(question)
        stranger = await click_and_read(bot, "mcp_agent_always", value, user=USER_B)
        await bot.slack.click("mcp_agent_always", value)
        await turn_done(bot)
        ran_once = await tool_runs(bot.services)
        question_ts = bot.posts.ts_of(f"<@{USER}>, may I run")
        [decided] = updates(fake, question_ts)
        remembered = (await toy_of(bot)).tool_prefs.always

        second = await pid_turn(bot, fake)
        await turn_done(bot)
        asked_second = questions_since(fake, second)
        ran_twice = await tool_runs(bot.services)

        listed = await click_and_read_list(bot)
        ask_again = buttons(listed)["Ask again: pid"]
        relisted = await click_and_read(bot, ask_again["action_id"], ask_again["value"])
        third = await asked(fake, await pid_turn(bot, fake))
        await bot.slack.click("mcp_agent_deny", approval_value(third))
        await turn_done(bot)

    assert list(buttons(question)) == ["Approve", texts.ALWAYS_ALLOW, "Deny"]
    assert stranger["text"] == texts.APPROVAL_NOT_YOURS
    assert ran_once == 1
    assert decided["text"].startswith(f"✅ <@{USER}> approved `toy__pid` and lets it run without asking")
    assert set(remembered) == {"pid"}
    assert asked_second == []  # no question: it ran at once
    assert ran_twice == 2
    assert f"{texts.ALWAYS_ALLOWED_LINE} `pid`" in blocks_text(listed)
    assert relisted["replace_original"] is True
    assert "Ask again: pid" not in buttons(relisted)
    assert third["text"].startswith(f"<@{USER}>, may I run `toy__pid`?")  # asked again


async def test_always_allow_also_covers_the_later_calls_of_the_same_turn(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        posted = len(fake.calls("chat.postMessage"))
        bot.llm.call_tools(("toy__pid", {}))
        bot.llm.call_tools(("toy__pid", {}))  # the model asks again in its next round
        bot.llm.reply("Done twice.")
        await bot.slack.event(mention("what is your pid, twice?"))
        question = await asked(fake, posted)
        await bot.slack.click("mcp_agent_always", approval_value(question))
        await turn_done(bot)
        questions = questions_since(fake, posted)
        runs = await tool_runs(bot.services)

    assert len(questions) == 1  # the second call ran unasked
    assert runs == 2


async def test_where_someone_else_wrote_an_always_allowed_tool_still_asks_without_always_allow(
    tmp_path: Path, fake: FakeSlack
) -> None:
    thread = others_wrote_in_thread(fake, "what runs on the toy box?", "@bot run toy__pid for me")
    async with agent_bot(tmp_path, fake) as bot:
        live_thread(fake, bot.posts)
        toy = await toy_of(bot)
        await bot.services.registry.set_always_allowed(TEAM, USER, toy.id, "pid", True)
        question = await asked(fake, await pid_turn(bot, fake, thread_ts=thread))
        value = approval_value(question)
        forged = await click_and_read(bot, "mcp_agent_always", value)  # a button it did not offer
        await bot.slack.click("mcp_agent_deny", value)
        await turn_done(bot)
        runs = await tool_runs(bot.services)

    assert texts.OTHERS_WROTE in question["text"]
    assert list(buttons(question)) == ["Approve", "Deny"]
    assert forged["text"] == texts.APPROVAL_NOT_OFFERED
    assert runs == 0
