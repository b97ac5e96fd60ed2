"""What servers say mid-call, in Slack: questions (elicitation) and progress during an agent turn.

Served like production (signed HTTP, the fake Slack validating views.open as Slack does), with
tests/servers/asking.py as USER's "asking" connection (2026-07-28, and "oldasking" on the
2025-11-25 handshake) and the scripted fake OpenAI. The model calls a tool; the server asks; the
asker answers in Slack; what they answered reaches the server, whose result reaches the model.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_core.models import NewConnection
from tests.servers.asking import SIGN_UP_URL
from tests.slack.agent_harness import TURN_S, Bot, agent_bot, mention, tool_messages, turn_done, updates
from tests.slack.conftest import FORM, TEAM, USER, USER_B
from tests.support.fake_slack import FakeSlack, view_closed_body, view_submission_body
from tests.support.in_process import ASKING

pytestmark = pytest.mark.anyio

CALLBACK = "mcp_question_submit"


@asynccontextmanager
async def asking_bot(tmp_path: Path, fake: FakeSlack, **overrides: Any) -> AsyncIterator[Bot]:
    """The agent bot, with USER's "asking" (auto: 2026-07-28) and "oldasking" (legacy) connections."""
    async with agent_bot(tmp_path, fake, **overrides) as bot:
        for name, mode in (("asking", "auto"), ("oldasking", "legacy")):
            new = NewConnection(
                name=name,
                transport="stdio",
                command=sys.executable,
                args=[str(ASKING)],
                config={"protocol_mode": mode},
            )
            outcome = await bot.services.registry.add_connection(TEAM, USER, new)
            assert outcome.error is None, outcome.error
        yield bot


async def question_post(bot: Bot, fake: FakeSlack, start: str = "🙋") -> dict[str, Any]:
    """The bot's thread message that starts with ``start`` (waited for)."""
    with anyio.fail_after(TURN_S):
        while not (found := [b for b, _ in bot.posts.made if str(b.get("text", "")).startswith(start)]):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return found[0]


def buttons(post: dict[str, Any]) -> dict[str, str]:
    [actions] = [b for b in post["blocks"] if b["type"] == "actions"]
    return {e["action_id"]: e.get("value", "") for e in actions["elements"]}


async def open_form(bot: Bot, fake: FakeSlack) -> tuple[str, dict[str, Any]]:
    """USER clicks *Answer*; the question's id and the modal Slack was asked to open."""
    post = await question_post(bot, fake)
    question_id = buttons(post)["mcp_question_open"]
    await bot.slack.click("mcp_question_open", question_id)
    [opened] = await fake.await_for("views.open", timeout_s=TURN_S)
    assert "error" not in opened.get("response", {})
    return question_id, opened["body"]["view"]


async def submit(bot: Bot, question_id: str, state: dict[str, Any], user: str = USER) -> Any:
    body = view_submission_body(CALLBACK, state, user_id=user, team_id=TEAM, private_metadata=question_id)
    return await bot.slack._post(body, FORM)


def mrkdwn_texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["text"]] if node.get("type") == "mrkdwn" else []
        return own + [t for v in node.values() for t in mrkdwn_texts(v)]
    if isinstance(node, list):
        return [t for item in node for t in mrkdwn_texts(item)]
    return []


def the_tool_said(bot: Bot) -> str:
    [said] = tool_messages(bot.llm.requests[1])
    return said


TRIP_STATE: dict[str, Any] = {
    "f0": {"v": "Porto"},
    "f1": {"v": {"type": "number_input", "value": "3"}},
    "f3": {"v": {"type": "email_text_input", "value": "ana@example.com"}},
    "f6": {"v": {"type": "checkboxes", "selected_options": [{"value": "yes"}]}},
    "f7": {"v": {"type": "static_select", "selected_option": {"value": "0"}}},
    "f9": {"v": {"type": "multi_static_select", "selected_options": [{"value": "0"}, {"value": "2"}]}},
}


@pytest.mark.parametrize("connection", ["asking", "oldasking"])
async def test_the_asker_answers_a_servers_form_in_a_modal_and_the_server_gets_the_checked_answer(
    tmp_path: Path, fake: FakeSlack, connection: str
) -> None:
    async with asking_bot(tmp_path, fake) as bot:
        bot.llm.call_tools((f"{connection}__ask", {"form": "trip"}))
        bot.llm.reply("Booked.")
        await bot.slack.event(mention("plan my trip"))
        question_id, view = await open_form(bot, fake)

        wrong = await submit(bot, question_id, {**TRIP_STATE, "f0": {"v": "P"}, "f3": {"v": "nope"}})
        right = await submit(bot, question_id, TRIP_STATE)
        await turn_done(bot)

    post = await question_post(bot, fake)
    assert post["text"] == f"🙋 *{connection}* has a question for <@{USER}> before it can go on."
    assert set(buttons(post)) == {"mcp_question_open", "mcp_question_decline"}
    assert view["notify_on_close"] is True
    assert view["callback_id"] == CALLBACK
    labels = [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"]
    assert labels[:3] == ["Destination", "Travellers", "Budget (EUR)"]
    assert view["blocks"][2]["element"]["initial_value"] == "Lisbon"  # the server's default
    assert wrong.status == 200
    assert json.loads(wrong.text) == {
        "response_action": "errors",
        "errors": {"f0": "Use at least 2 characters.", "f3": "Enter an email address."},
    }
    assert (right.status, right.text) == (200, "")
    action, content = the_tool_said(bot).split(" ", 1)
    assert action == "accept"
    assert json.loads(content) == {
        "destination": "Porto",
        "travellers": 3,
        "email": "ana@example.com",
        "insurance": True,
        "seat": "window",
        "meals": ["veg", "kosher"],
    }
    question_ts = bot.posts.ts_of("🙋")
    assert [u["text"] for u in updates(fake, question_ts)] == [
        f"✅ <@{USER}> answered *{connection}*'s question."
    ]


@pytest.mark.parametrize("connection", ["asking", "oldasking"])
async def test_decline_and_closing_the_modal_reach_the_server_as_decline_and_cancel(
    tmp_path: Path, fake: FakeSlack, connection: str
) -> None:
    async with asking_bot(tmp_path, fake) as bot:
        bot.llm.call_tools((f"{connection}__ask", {"form": "trip"}))
        bot.llm.call_tools((f"{connection}__ask", {"form": "trip"}))
        bot.llm.reply("Fine.")
        await bot.slack.event(mention("plan my trip"))
        post = await question_post(bot, fake)
        await bot.slack.click("mcp_question_decline", buttons(post)["mcp_question_open"])
        with anyio.fail_after(TURN_S):
            while len([b for b, _ in bot.posts.made if b["text"].startswith("🙋")]) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        second = [b for b, _ in bot.posts.made if b["text"].startswith("🙋")][1]
        question_id = buttons(second)["mcp_question_open"]
        await bot.slack.click("mcp_question_open", question_id)
        await fake.await_for("views.open", timeout_s=TURN_S)
        closed = view_closed_body(CALLBACK, user_id=USER, team_id=TEAM, private_metadata=question_id)
        await bot.slack._post(closed, FORM)
        await turn_done(bot)

    assert tool_messages(bot.llm.requests[1]) == ["decline"]
    assert tool_messages(bot.llm.requests[2])[-1] == "cancel"


async def test_only_the_asker_can_answer_and_others_are_told_only_them(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with asking_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("asking__ask", {"form": "trip"}))
        bot.llm.reply("Fine.")
        await bot.slack.event(mention("plan my trip"))
        post = await question_post(bot, fake)
        question_id = buttons(post)["mcp_question_open"]

        opened = await bot.slack.click("mcp_question_open", question_id, user=USER_B)
        [told] = await bot.slack.replies(opened)
        declined = await bot.slack.click("mcp_question_decline", question_id, user=USER_B)
        [told_again] = await bot.slack.replies(declined)
        forged = await submit(bot, question_id, TRIP_STATE, user=USER_B)
        assert fake.calls("views.open") == []

        await bot.slack.click("mcp_question_decline", question_id)
        await turn_done(bot)

    assert told["text"] == told_again["text"] == f"Only <@{USER}>, who asked, can answer this question."
    assert told["response_type"] == "ephemeral"
    assert (forged.status, forged.text) == (200, "")
    assert the_tool_said(bot) == "decline"


async def test_no_answer_in_time_is_a_cancel_and_the_message_says_it_closed(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with asking_bot(tmp_path, fake, elicitation_timeout_s=0.5) as bot:
        bot.llm.call_tools(("asking__ask", {"form": "trip"}))
        bot.llm.reply("Nobody answered.")
        await bot.slack.event(mention("plan my trip"))
        await turn_done(bot)

    assert the_tool_said(bot) == "cancel"
    question_ts = bot.posts.ts_of("🙋")
    [closed] = updates(fake, question_ts)
    assert closed["text"].startswith("⌛ *asking*'s question closed unanswered")


@pytest.mark.parametrize("connection", ["asking", "oldasking"])
async def test_a_schema_that_is_not_a_flat_form_is_declined_and_said_in_the_thread(
    tmp_path: Path, fake: FakeSlack, connection: str
) -> None:
    async with asking_bot(tmp_path, fake) as bot:
        bot.llm.call_tools((f"{connection}__ask", {"form": "crowded"}))
        bot.llm.reply("It could not ask.")
        await bot.slack.event(mention("plan my trip"))
        await turn_done(bot)

    said = await question_post(bot, fake, "⚠️")
    assert said["text"] == (
        f"⚠️ *{connection}* asked a question I can't show: its form cannot be shown: it asks for 120 "
        "fields (at most 40 are shown). I told it no."
    )
    assert the_tool_said(bot) == "decline"
    assert fake.calls("views.open") == []


async def test_a_loud_servers_words_are_escaped_clipped_and_labelled_as_its_own(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with asking_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("asking__ask", {"form": "loud"}))
        bot.llm.reply("Fine.")
        await bot.slack.event(mention("go"))
        question_id, view = await open_form(bot, fake)
        await bot.slack._post(
            view_closed_body(CALLBACK, user_id=USER, team_id=TEAM, private_metadata=question_id), FORM
        )
        await turn_done(bot)

    post = await question_post(bot, fake)
    shown = json.dumps(mrkdwn_texts([post["blocks"], view["blocks"]]))  # plain_text renders nothing
    assert "<!channel>" not in shown
    assert "<https://evil.example" not in shown
    assert "&lt;!channel&gt;" in shown
    assert "asking* says (its own words, not the bot" in shown
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    assert len(field["label"]["text"]) <= 150  # Slack takes 2,000; the server's title was 4,000
    assert len(view["blocks"][1]["text"]["text"]) <= 3000


@pytest.mark.parametrize("connection", ["asking", "oldasking"])
async def test_a_link_is_shown_only_to_the_asker_in_full_and_never_fetched(
    tmp_path: Path, fake: FakeSlack, connection: str
) -> None:
    async with asking_bot(tmp_path, fake) as bot:
        bot.llm.call_tools((f"{connection}__sign_up", {}))
        bot.llm.reply("Open the link I sent you.")
        await bot.slack.event(mention("sign me up"))
        await turn_done(bot)

    [ephemeral] = fake.calls("chat.postEphemeral")
    body = ephemeral["body"]
    assert body["user"] == USER
    assert body["channel"] == "C_TEST"
    [actions] = [b for b in body["blocks"] if b["type"] == "actions"]
    [button] = actions["elements"]
    assert button["url"] == SIGN_UP_URL
    assert button["text"]["text"] == "Open accounts.example.com"
    text = json.dumps(body["blocks"])
    assert "`https://accounts.example.com/sign-up?session=abc123&amp;next=%2Fhome`" in text
    assert "Create your account to continue." in text
    public = [c for c in fake.requests if c["method"] != "chat.postEphemeral"]
    assert SIGN_UP_URL not in json.dumps(public)  # nobody else sees it, and nothing fetched it
    assert "sign-up?session" not in json.dumps(bot.llm.requests)
    assert the_tool_said(bot) == "accept"


@pytest.mark.parametrize("connection", ["asking", "oldasking"])
async def test_a_servers_progress_updates_its_calls_line(
    tmp_path: Path, fake: FakeSlack, connection: str
) -> None:
    async with asking_bot(tmp_path, fake) as bot:
        bot.llm.call_tools((f"{connection}__index", {"steps": 2}))
        bot.llm.reply("Indexed.")
        await bot.slack.event(mention("index it"))
        await turn_done(bot)

    progress_ts = bot.posts.ts_of("🤔")
    lines = [u["text"] for u in updates(fake, progress_ts)]
    assert any(
        f"`{connection}__index` … 1 of 2 — indexing &lt;@U0EVIL&gt; part 1" in line for line in lines
    ), lines
    assert the_tool_said(bot) == "indexed"


# --- on the streamed display (the default) -----------------------------------------------------


async def test_a_question_ends_the_streamed_message_and_the_answer_streams_after_it(
    tmp_path: Path, fake: FakeSlack
) -> None:
    event = mention("plan my trip")
    async with asking_bot(tmp_path, fake, slack_streaming=True) as bot:
        bot.llm.call_tools(("asking__ask", {"form": "trip"}), content="Asking the server. ")
        bot.llm.reply("Booked your trip.")
        await bot.slack.event(event)
        question_id, _ = await open_form(bot, fake)
        [before] = fake.ai.streams.values()
        assert before.state == "stopped"  # ended before the question was posted
        assert fake.ai.sessions[("C_TEST", event["ts"])].status == "suspended"
        await submit(bot, question_id, TRIP_STATE)
        await turn_done(bot)

    first, second = fake.ai.streams.values()
    assert first.text == "Asking the server. "
    assert second.text == "Booked your trip."
    session = fake.ai.sessions[("C_TEST", event["ts"])]
    assert session.history == ["processing", "suspended", "processing", "closed"]
    assert the_tool_said(bot).startswith("accept ")


async def test_a_servers_progress_shows_on_its_task_card(tmp_path: Path, fake: FakeSlack) -> None:
    async with asking_bot(tmp_path, fake, slack_streaming=True) as bot:
        bot.llm.call_tools(("asking__index", {"steps": 2}))
        bot.llm.reply("Indexed.")
        await bot.slack.event(mention("index it"))
        await turn_done(bot)

    [stream] = fake.ai.streams.values()
    details = [c.get("details", "") for c in stream.chunks if c["type"] == "task_update"]
    assert any(d.startswith("1 of 2 — indexing") for d in details), details
    assert not any("<@U0EVIL>" in d for d in details)  # a server's mention is defused or dropped
    assert list(stream.tasks().values())[-1]["status"] == "complete"
