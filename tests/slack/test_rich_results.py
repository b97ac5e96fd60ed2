"""What tools return besides text reaches the thread, and 👍 / 👎 on answers is recorded.

Served like production (signed HTTP, the fake Slack, the scripted fake OpenAI), with the real
``tests/servers/rich.py`` over stdio: its images are uploaded through Slack's external upload
flow (bytes compared), refused ones become a line, links are shown (never fetched or
unfurled), records become a table block the fake validates like Slack or, too big, text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcp_core.models import NewConnection
from tests.servers.rich import chart_png
from tests.slack.agent_harness import Bot, agent_bot, blocks_text, mention, turn_done, updates
from tests.slack.conftest import SECRET, TEAM, USER, USER_B, listeners_done
from tests.support.fake_slack import FORM, FakeSlack, block_actions_body, post_signed

pytestmark = pytest.mark.anyio

RICH = Path(__file__).resolve().parents[1] / "servers" / "rich.py"
UPLOAD_CAP = 8 * 1024


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Bot]:
    """The agent bot; USER also owns ``rich`` (tests/servers/rich.py); images above 8 KiB are
    not uploaded."""
    async with agent_bot(tmp_path, fake, max_upload_bytes=UPLOAD_CAP) as running:
        rich = NewConnection(name="rich", transport="stdio", command=sys.executable, args=[str(RICH)])
        outcome = await running.services.registry.add_connection(TEAM, USER, rich)
        assert outcome.error is None, outcome.error
        yield running


async def answered(bot: Bot, *calls: tuple[str, dict[str, Any]], user: str = USER) -> dict[str, Any]:
    """``user`` asks; the model calls ``calls``, then answers "Done."; the mention event."""
    bot.llm.call_tools(*calls)
    bot.llm.reply("Done.")
    event = mention("please", user_id=user)
    await bot.slack.event(event)
    await turn_done(bot)
    return event


def posts_after_answer(bot: Bot) -> list[dict[str, Any]]:
    """Messages the bot posted in the thread besides the progress message (which became the answer)."""
    return [body for body, _ in bot.posts.made if not str(body.get("text", "")).startswith("🤔")]


def answer_of(bot: Bot, fake: FakeSlack) -> dict[str, Any]:
    return updates(fake, bot.posts.ts_of("🤔"))[-1]


def feedback_values(answer: dict[str, Any]) -> dict[str, str]:
    [block] = [b for b in answer["blocks"] if b["type"] == "context_actions"]
    [buttons] = block["elements"]
    assert buttons["type"] == "feedback_buttons"
    assert buttons["action_id"] == "mcp_answer_feedback"
    return {"up": buttons["positive_button"]["value"], "down": buttons["negative_button"]["value"]}


async def test_an_image_a_tool_returns_is_uploaded_into_the_answers_thread(bot: Bot, fake: FakeSlack) -> None:
    event = await answered(bot, ("rich__chart", {}))

    [upload] = [u for u in fake.ai.uploads.values() if u.completed]
    assert upload.data == chart_png()
    assert (upload.channel_id, upload.thread_ts) == ("C_TEST", event["ts"])
    assert upload.filename == "rich__chart-1.png"
    assert "image image/png" in json.dumps(bot.llm.requests[-1]["messages"])  # the model read a line
    assert chart_png().hex() not in json.dumps(bot.llm.requests[-1]["messages"])


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (
            ("rich__big_chart", {"kb": 20}),
            "🖼️ An image from `rich__big_chart` was not shown: too large (20 KB;",
        ),
        (
            ("rich__fake_png", {}),
            "🖼️ An image from `rich__fake_png` was not shown: it is declared image/png but its bytes are not",
        ),
    ],
)
async def test_an_image_too_large_or_not_what_it_claims_is_not_uploaded_and_a_line_says_why(
    bot: Bot, fake: FakeSlack, call: tuple[str, dict[str, Any]], line: str
) -> None:
    await answered(bot, call)

    assert fake.ai.uploads == {}
    assert fake.calls("files.getUploadURLExternal") == []
    [note] = posts_after_answer(bot)
    assert note["text"].startswith(line)


async def test_links_are_shown_clickable_only_for_http_and_never_unfurled(bot: Bot, fake: FakeSlack) -> None:
    await answered(bot, ("rich__links", {}))

    [links] = posts_after_answer(bot)
    shown = blocks_text(links)
    assert "<https://example.com/reports/q3?view=full&x=%3C1%3E|Q3 &lt;report&gt; &amp; more>" in shown
    assert "• passwd: `file:///etc/passwd`" in shown
    assert "<https://example.org/embedded|https://example.org/embedded>" in shown
    assert (links["unfurl_links"], links["unfurl_media"]) in ((False, False), ("false", "false"), ("0", "0"))


async def test_records_a_tool_returns_are_posted_as_a_table_block_within_slacks_limits(
    bot: Bot, fake: FakeSlack
) -> None:
    await answered(bot, ("rich__people", {"count": 3}))

    [post] = posts_after_answer(bot)
    [table] = [b for b in post["blocks"] if b["type"] == "table"]
    rows = [[cell["text"] for cell in row] for row in table["rows"]]
    assert rows == [
        ["name", "age", "active", "team"],
        ["person 0", "20", "true", "—"],
        ["person 1", "21", "false", "—"],
        ["person 2", "22", "true", "—"],
    ]
    assert post["text"] == "📋 From `rich__people`: 3 rows"
    [call] = [c for c in fake.calls("chat.postMessage") if c["body"].get("text") == post["text"]]
    assert "invalid_blocks" not in json.dumps(call)  # the fake validated it as Slack does


@pytest.mark.parametrize("arguments", [{"count": 150}, {"count": 3, "wide": True}])
async def test_records_too_many_for_a_table_fall_back_to_text(
    bot: Bot, fake: FakeSlack, arguments: dict[str, Any]
) -> None:
    await answered(bot, ("rich__people", arguments))

    [post] = posts_after_answer(bot)
    assert [b["type"] for b in post["blocks"]] == ["context", "section"]
    text = post["blocks"][1]["text"]["text"]
    assert text.startswith("```name │ age │ active │ team")
    assert "person 0 │ 20 │ true │" in text
    if arguments["count"] == 150:
        assert "more rows" in text


async def feedback_click(bot: Bot, value: str, user: str) -> list[dict[str, Any]]:
    reply = await bot.slack.click("mcp_answer_feedback", value, user=user)
    assert reply.status == 200
    return await bot.slack.replies(reply)


async def test_feedback_clicks_are_recorded_per_person_changeable_and_thanked_privately(
    bot: Bot, fake: FakeSlack
) -> None:
    await answered(bot, ("toy__echo", {"text": "hi"}))
    values = feedback_values(answer_of(bot, fake))
    turn_id = values["up"].split(":", 1)[1]

    [thanks] = await feedback_click(bot, values["up"], USER)
    await feedback_click(bot, values["down"], USER)  # changes the asker's vote
    await feedback_click(bot, values["up"], USER_B)  # someone else who read the answer

    votes = await bot.services.store.turn_feedback(TEAM, turn_id)
    assert [(v.user_id, v.vote) for v in votes] == sorted([(USER, "down"), (USER_B, "up")])
    assert (thanks["text"], thanks["response_type"]) == ("Thanks for the feedback", "ephemeral")
    await bot.services.usage.flush()
    [turn] = await bot.services.store.list_turns(TEAM, USER)
    assert turn.turn_id == turn_id  # the vote joins the turn's usage row


async def test_a_feedback_click_that_fails_verification_or_is_not_ours_records_nothing(
    bot: Bot, fake: FakeSlack
) -> None:
    await answered(bot, ("toy__echo", {"text": "hi"}))
    values = feedback_values(answer_of(bot, fake))
    turn_id = values["up"].split(":", 1)[1]
    body = block_actions_body(
        "mcp_answer_feedback", values["up"], user_id=USER_B, team_id=TEAM, channel_id="C_TEST"
    )

    status, _, _ = await post_signed(bot.slack.url, body, FORM, SECRET + "-wrong")
    odd = await bot.slack.click("mcp_answer_feedback", f"sideways:{turn_id}", user=USER_B)
    await listeners_done()

    assert status == 401
    assert odd.status == 200
    assert fake.calls(odd.response_url.split(str(fake.port), 1)[1]) == []  # not ours: no thanks either
    assert await bot.services.store.turn_feedback(TEAM, turn_id) == []
