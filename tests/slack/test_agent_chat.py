"""The agent in Slack, end to end: a mention or DM becomes a turn answered in its thread.

The bot is served like production (signed HTTP into ``http_app``) with the real composition
root: its Web API client talks to the fake Slack, its OpenAI client to the scripted
``fake_openai`` server, and tools run in the real toy stdio server through the real registry
and credential store. Every wait is bounded (``fail_after`` or the fakes' deadlines).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from mcp_core.agent import SYSTEM_PROMPT
from tests.slack.agent_harness import (
    DENIED,
    TOY_SECRET,
    TURN_S,
    agent_bot,
    approval_question,
    approval_value,
    blocks_text,
    live_thread,
    mention,
    tool_messages,
    tool_runs,
    turn_done,
    updates,
)
from tests.slack.conftest import TEAM, USER, USER_B, listeners_done
from tests.support.fake_slack import BOT_ID, BOT_USER_ID, FakeSlack, message_im_event

pytestmark = pytest.mark.anyio


# --- a turn ------------------------------------------------------------------------------------


async def test_a_mention_with_a_read_only_tool_is_answered_in_its_thread_with_the_askers_tools_only(
    tmp_path: Path, fake: FakeSlack
) -> None:
    event = mention("please echo hi")
    async with agent_bot(tmp_path, fake) as bot:
        llm = bot.llm
        llm.call_tools(("toy__echo", {"text": "hi"}))
        llm.reply("The toy server said *hi*.")
        await bot.slack.event(event)
        await turn_done(bot)
        mine = {e.name for e in await bot.services.registry.catalog(TEAM, USER)}

    [progress] = fake.calls("chat.postMessage")  # read-only: no approval question
    assert progress["body"]["thread_ts"] == event["ts"]
    assert progress["body"]["channel"] == "C_TEST"
    assert progress["body"]["text"] == "🤔 Thinking…"
    progress_ts = bot.posts.ts_of("🤔")
    edits = updates(fake, progress_ts)
    assert [c["body"]["ts"] for c in fake.calls("chat.update")] == [progress_ts] * len(edits)
    assert any("`toy__echo`" in e["text"] for e in edits[:-1])  # a progress line while it ran
    answer = edits[-1]
    assert answer["text"] == "The toy server said *hi*."
    [*sections, context, feedback] = answer["blocks"]
    assert [s["type"] for s in sections] == ["section"]
    assert feedback["type"] == "context_actions"  # 👍 / 👎 (tests/slack/test_rich_results.py)
    assert sections[0]["text"]["text"] == "The toy server said *hi*."
    assert context["type"] == "context"
    assert context["elements"][0]["text"].startswith("Tools: ✅ `toy__echo`")

    first, second = llm.requests
    assert first["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "please echo hi"},  # without the bot's <@U_BOT>
    ]
    names = {tool["function"]["name"] for tool in first["tools"]}
    assert names == mine
    assert "toy__echo" in names
    assert not any(n.startswith(("bobs__", "elsewhere__")) for n in names)  # others' connections
    assert tool_messages(second) == ["hi"]


async def test_the_thread_is_the_conversation_in_order_without_the_progress_message(
    tmp_path: Path, fake: FakeSlack
) -> None:
    root = "1700000000.000100"
    fake.messages["C_TEST"] = [
        {"type": "message", "user": USER, "ts": root, "text": f"<@{BOT_USER_ID}> what is 2+3?"},
        {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": "1700000000.000200",
            "thread_ts": root,
            "text": "2+3 is 5.",
        },
        {  # another app's bot: not the person's words
            "type": "message",
            "user": "U_OTHERBOT",
            "bot_id": "B_OTHER",
            "ts": "1700000000.000250",
            "thread_ts": root,
            "text": "beep",
        },
        {
            "type": "message",
            "subtype": "channel_join",
            "user": USER_B,
            "ts": "1700000000.000260",
            "thread_ts": root,
            "text": "joined",
        },
    ]
    event = mention("and times 4?", ts="1700000000.000300", thread_ts=root)
    fake.messages["C_TEST"].append(event)
    async with agent_bot(tmp_path, fake) as bot:
        live_thread(fake, bot.posts)
        bot.llm.reply("20.")
        await bot.slack.event(event)
        await turn_done(bot)

    [read] = fake.calls("conversations.replies")
    assert (read["body"]["channel"], read["body"]["ts"]) == ("C_TEST", root)
    [progress] = fake.calls("chat.postMessage")
    assert progress["body"]["thread_ts"] == root  # a reply in a thread stays in that thread
    [request] = bot.llm.requests
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "what is 2+3?"},
        {"role": "assistant", "content": "2+3 is 5."},
        {"role": "user", "content": "and times 4?"},
    ]
    assert "Thinking" not in json.dumps(request, ensure_ascii=False)
    assert updates(fake, bot.posts.ts_of("🤔"))[-1]["text"] == "20."


async def test_a_dm_is_answered_in_its_thread_and_edits_bots_and_plain_channel_messages_are_ignored(
    tmp_path: Path, fake: FakeSlack
) -> None:
    dm = message_im_event("hello there", user_id=USER)
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.reply("Hello!")
        await bot.slack.event(dm)
        await turn_done(bot)
        assert len(fake.calls("chat.postMessage")) == 1

        changed = message_im_event("hello again", user_id=USER) | {"subtype": "message_changed"}
        own = message_im_event("Hello!", user_id=BOT_USER_ID, bot_id=BOT_ID)
        other_bot = message_im_event("beep", user_id="U_OTHERBOT", bot_id="B_OTHER")
        in_channel = message_im_event("no mention", user_id=USER, channel_id="C_TEST") | {
            "channel_type": "channel"
        }
        for ignored in (changed, own, other_bot, in_channel):
            reply = await bot.slack.event(ignored)
            assert reply.status == 200
        await listeners_done(TURN_S)

    [progress] = fake.calls("chat.postMessage")
    assert (progress["body"]["channel"], progress["body"]["thread_ts"]) == ("D_TEST", dm["ts"])
    assert updates(fake, bot.posts.ts_of("🤔"))[-1]["text"] == "Hello!"
    [request] = bot.llm.requests
    assert request["messages"][1:] == [{"role": "user", "content": "hello there"}]


# --- approval ----------------------------------------------------------------------------------


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "deny"])
async def test_a_call_that_may_write_waits_for_the_askers_click_and_a_strangers_changes_nothing(
    tmp_path: Path, fake: FakeSlack, approve: bool
) -> None:
    event = mention("what is your pid?")
    async with agent_bot(tmp_path, fake) as bot:
        slack, llm = bot.slack, bot.llm
        llm.call_tools(("toy__pid", {}))
        llm.reply("Finished.")
        await slack.event(event)
        question = await approval_question(bot, fake)
        assert question["thread_ts"] == event["ts"]
        why = "It may change something (the server does not say it only reads)."
        assert question["text"] == f"<@{USER}>, may I run `toy__pid`? {why}"
        question_ts = bot.posts.ts_of(f"<@{USER}>, may I run")
        value = approval_value(question)

        with anyio.fail_after(TURN_S):
            stranger = await slack.click("mcp_agent_approve", value, user=USER_B)
            [refusal] = await slack.replies(stranger)
        assert refusal["text"] == "Only the person who asked can approve or deny this call."
        assert refusal["response_type"] == "ephemeral"
        assert len(llm.requests) == 1  # still waiting for the asker
        assert updates(fake, question_ts) == []
        assert await tool_runs(bot.services) == 0

        asker = await slack.click("mcp_agent_approve" if approve else "mcp_agent_deny", value)
        await turn_done(bot)
        runs = await tool_runs(bot.services)

        late = await slack.click("mcp_agent_approve", value)  # the question is closed now
        [gone] = await slack.replies(late)
        await listeners_done(TURN_S)

    assert gone["text"].startswith("This question is no longer open")
    assert fake.calls(asker.response_url.split(str(fake.port), 1)[1]) == []  # no ephemeral for the asker
    [result] = tool_messages(llm.requests[1])
    [decided] = updates(fake, question_ts)
    answer = updates(fake, bot.posts.ts_of("🤔"))[-1]
    assert answer["text"] == "Finished."
    if approve:
        assert result.isdigit()  # the toy server's pid: the tool ran
        assert runs == 1
        assert decided["text"] == f"✅ <@{USER}> approved `toy__pid`."
        assert "✅ `toy__pid`" in blocks_text(answer)
    else:
        assert result == DENIED
        assert runs == 0
        assert decided["text"] == f"🚫 <@{USER}> denied `toy__pid`; it was not run."


async def test_a_denied_call_is_listed_as_not_run_in_the_answers_tools_line(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__pid", {}))
        bot.llm.reply("You said no.")
        await bot.slack.event(mention("what is your pid?"))
        question = await approval_question(bot, fake)
        await bot.slack.click("mcp_agent_deny", approval_value(question))
        await turn_done(bot)

    answer = updates(fake, bot.posts.ts_of("🤔"))[-1]
    assert "Tools: 🚫 `toy__pid` not run" in blocks_text(answer)


async def test_calls_that_could_not_run_are_listed_as_failed_in_the_answers_tools_line(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__echo", {"text": "hi"}), ("nobody__nothing", {}), ("toy__echo", "{not json"))
        bot.llm.reply("Some of that did not work.")
        await bot.slack.event(mention("echo hi, and more"))
        await turn_done(bot)

    answer = updates(fake, bot.posts.ts_of("🤔"))[-1]
    assert "Tools: ✅ `toy__echo`" in blocks_text(answer)
    assert "⚠️ `nobody__nothing` failed" in blocks_text(answer)
    assert blocks_text(answer).count("`toy__echo`") == 2  # the one that ran and the one that could not


async def test_an_unanswered_approval_times_out_as_a_deny_and_the_tool_is_not_run(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake, agent_approval_timeout_s=0.5) as bot:
        bot.llm.call_tools(("toy__add", {"a": 2, "b": 3}))
        bot.llm.reply("Nobody answered, so I did not add.")
        await bot.slack.event(mention("add 2 and 3"))
        question = await approval_question(bot, fake)
        await turn_done(bot)
        runs = await tool_runs(bot.services)

    assert runs == 0
    assert tool_messages(bot.llm.requests[1]) == [DENIED]
    question_ts = bot.posts.ts_of(question["text"])
    [expired] = updates(fake, question_ts)
    assert expired["text"] == "⌛ No answer in time: `toy__add` was not run."
    assert expired["blocks"] == []  # the buttons are gone
    assert updates(fake, bot.posts.ts_of("🤔"))[-1]["text"] == "Nobody answered, so I did not add."


# --- failures and secrets ----------------------------------------------------------------------


@pytest.mark.parametrize("script", ["fail_500", "nothing_scripted"])
async def test_a_failing_model_leaves_an_error_in_the_thread_without_trace_or_key(
    tmp_path: Path, fake: FakeSlack, caplog: pytest.LogCaptureFixture, script: str
) -> None:
    caplog.set_level("DEBUG")
    async with agent_bot(tmp_path, fake) as bot:
        key = bot.llm.api_key
        if script == "fail_500":
            bot.llm.fail(500, f"upstream broke; your key {key} is fine")
        await bot.slack.event(mention("hi"))
        await turn_done(bot)

    assert bot.llm.requests  # the model was asked
    progress_ts = bot.posts.ts_of("🤔")
    final = updates(fake, progress_ts)[-1]
    assert final["text"].startswith("❌ ")
    assert "HTTP 500" in final["text"]
    traffic = fake.all_traffic_text()
    for leak in (key, "Traceback", 'File "', "upstream broke", "no answer scripted"):
        assert leak not in traffic
    assert key not in caplog.text


async def test_a_connection_secret_never_reaches_slack_the_model_or_the_logs(
    tmp_path: Path, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__env", {"name": "TOY_SECRET"}))
        bot.llm.reply("TOY_SECRET is set.")
        await bot.slack.event(mention("what is TOY_SECRET?"))
        question = await approval_question(bot, fake)  # env is not annotated read-only
        await bot.slack.click("mcp_agent_approve", approval_value(question))
        await turn_done(bot)
        runs = await tool_runs(bot.services)

    assert runs == 1  # it ran, with the secret in its environment
    assert tool_messages(bot.llm.requests[1]) == ["[redacted]"]
    assert TOY_SECRET not in json.dumps(bot.llm.requests)
    assert TOY_SECRET not in fake.all_traffic_text()
    assert TOY_SECRET not in caplog.text


async def test_special_mentions_from_the_model_are_defused_in_the_answer(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.reply("Done <!channel> and <!here|here> and <!everyone>, ask <@U0BOB>.")
        await bot.slack.event(mention("shout"))
        await turn_done(bot)

    answer = updates(fake, bot.posts.ts_of("🤔"))[-1]
    shown = answer["text"] + blocks_text(answer)
    assert "<!" not in shown
    assert "&lt;!channel>" in answer["text"]
    assert "&lt;!channel>" in answer["blocks"][0]["text"]["text"]
    assert "<@U0BOB>" in answer["text"]  # ordinary user mentions are kept
    assert not any("<!" in json.dumps(c["body"]) for c in fake.calls("chat.postMessage"))
