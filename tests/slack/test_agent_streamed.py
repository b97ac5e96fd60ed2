"""Streamed answers (the default): the model's words, task cards, the status line, agent
sessions, and every way back to editing one message when Slack will not stream.

Served like production (signed HTTP, the fake Slack validating the AI methods the way Slack
does, the scripted model streaming, tools in the real toy server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.slack.agent_harness import (
    TOY_SECRET,
    TURN_S,
    agent_bot,
    approval_value,
    mention,
    turn_done,
    updates,
)
from tests.slack.conftest import TEAM, USER, USER_B, listeners_done
from tests.support.fake_slack import FakeSlack, agent_session_stopped_event, message_im_event
from tests.support.fake_slack_ai import Stream

pytestmark = pytest.mark.anyio


def streamed(**overrides: Any) -> dict[str, Any]:
    return {"slack_streaming": True} | overrides


def streams(fake: FakeSlack) -> list[Stream]:
    return list(fake.ai.streams.values())


def session_history(fake: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    session = fake.ai.sessions.get((channel, thread_ts))
    return session.history if session else []


def statuses(fake: FakeSlack) -> list[str]:
    return [c["body"]["status"] for c in fake.calls("assistant.threads.setStatus")]


async def test_an_answer_streams_into_the_thread_with_a_task_card_per_tool_call(
    tmp_path: Path, fake: FakeSlack
) -> None:
    event = mention("echo hi")
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.call_tools(("toy__echo", {"text": "hi"}))
        bot.llm.reply("The toy server said *hi* back to you, word for word.")
        await bot.slack.event(event)
        await turn_done(bot)

    [stream] = streams(fake)
    assert (stream.channel, stream.thread_ts) == ("C_TEST", event["ts"])
    assert (stream.recipient_user_id, stream.recipient_team_id) == (USER, TEAM)
    assert stream.state == "stopped"
    assert stream.text == "The toy server said *hi* back to you, word for word."
    [card] = stream.tasks().values()
    assert card["title"] == "toy__echo"
    assert card["status"] == "complete"
    assert card["output"].startswith("hi (")
    seen = [c["status"] for c in stream.chunks if c["type"] == "task_update"]
    assert seen[:2] == ["pending", "in_progress"]
    assert seen[-1] == "complete"
    assert bot.llm.streamed == [True, True]  # the model was read streamed
    assert fake.calls("chat.update") == []
    assert fake.calls("chat.postMessage") == []
    assert "Thinking…" in statuses(fake)
    assert "Calling toy__echo…" in statuses(fake)
    assert session_history(fake, "C_TEST", event["ts"]) == ["processing", "closed"]


async def test_a_dm_answer_streams_too(tmp_path: Path, fake: FakeSlack) -> None:
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.reply("Hello there in your DM.")
        await bot.slack.event(message_im_event("hi", user_id=USER))
        await turn_done(bot)

    [stream] = streams(fake)
    assert stream.channel.startswith("D")
    assert stream.text == "Hello there in your DM."


async def test_an_answer_longer_than_a_stream_holds_goes_on_in_a_second_message(
    tmp_path: Path, fake: FakeSlack
) -> None:
    answer = " ".join(f"word{n:05d}" for n in range(2_000))  # 19,999 characters
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.stream_chunk_chars = 500
        bot.llm.reply(answer)
        await bot.slack.event(mention("talk a lot"))
        await turn_done(bot)

    first, second = streams(fake)
    assert all(s.markdown_chars <= 12_000 for s in (first, second))
    assert first.text + second.text == answer  # all of it, once
    assert first.state == second.state == "stopped"


async def test_the_askers_secrets_are_redacted_from_streamed_words_and_task_cards(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.call_tools(("toy__echo", {"text": TOY_SECRET}))
        bot.llm.reply(f"Found it: {TOY_SECRET} is the value.")
        await bot.slack.event(mention("echo the secret"))
        await turn_done(bot)

    [stream] = streams(fake)
    assert stream.text == "Found it: [redacted] is the value."
    [card] = stream.tasks().values()
    assert "[redacted]" in card["output"]
    assert TOY_SECRET not in fake.all_traffic_text()


async def test_a_special_mention_in_the_models_words_is_defused(tmp_path: Path, fake: FakeSlack) -> None:
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.reply("Alert <!channel> and <!here> now please.")
        await bot.slack.event(mention("shout"))
        await turn_done(bot)

    [stream] = streams(fake)
    assert "<!channel>" not in stream.text
    assert "<!here>" not in stream.text
    assert stream.text.replace("\u200b", "") == "Alert <!channel> and <!here> now please."


async def test_an_approval_question_ends_the_stream_and_the_answer_streams_after_the_click(
    tmp_path: Path, fake: FakeSlack
) -> None:
    event = mention("take a moment")
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.call_tools(("toy__slow", {"seconds": 0}), content="Let me check that for you. ")
        bot.llm.reply("All done now, it worked.")
        await bot.slack.event(event)
        question = (await fake.await_for("chat.postMessage", 1, timeout_s=TURN_S))[0]["body"]
        [before] = streams(fake)
        assert before.state == "stopped"  # stopped before the question was posted
        assert fake.ai.sessions[("C_TEST", event["ts"])].status == "suspended"
        await bot.slack.click("mcp_agent_approve", approval_value(question))
        await turn_done(bot)

    first, second = streams(fake)
    assert first.text == "Let me check that for you. "
    assert second.text == "All done now, it worked."
    assert list(second.tasks().values())[-1]["status"] == "complete"
    assert session_history(fake, "C_TEST", event["ts"]) == ["processing", "suspended", "processing", "closed"]


async def test_a_running_call_refreshes_its_card_and_the_status_line_before_they_idle_out(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake, **streamed(slack_status_refresh_s=0.2)) as bot:
        bot.llm.call_tools(("toy__slow", {"seconds": 1.2}))
        bot.llm.reply("Finally done.")
        await bot.slack.event(mention("slowly"))
        await bot.slack.click("mcp_agent_approve", approval_value(await approval_question_any(fake)))
        await turn_done(bot)

    stream = streams(fake)[-1]
    running = [c for c in stream.chunks if c["type"] == "task_update" and c["status"] == "in_progress"]
    assert len(running) >= 3  # the first, then refreshes while it ran
    assert statuses(fake).count("Calling toy__slow…") >= 3


async def approval_question_any(fake: FakeSlack) -> dict[str, Any]:
    return (await fake.await_for("chat.postMessage", 1, timeout_s=TURN_S))[0]["body"]


# --- falling back to editing one message -------------------------------------------------------


async def test_a_workspace_without_streaming_gets_the_edited_answer_and_is_not_asked_again(
    tmp_path: Path, fake: FakeSlack
) -> None:
    fake.unknown_methods.add("chat.startStream")
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        for n in (1, 2):
            bot.llm.call_tools(("toy__echo", {"text": "hi"}))
            bot.llm.reply(f"Answer number {n}.")
            await bot.slack.event(mention(f"echo {n}"))
            await turn_done(bot)

    assert len(fake.calls("chat.startStream")) == 1  # refused once, remembered
    answers = [c["body"]["text"] for c in fake.calls("chat.update")]
    assert "Answer number 1." in answers
    assert answers[-1] == "Answer number 2."
    assert streams(fake) == []


async def test_a_token_without_the_streaming_scope_falls_back_to_edits(
    tmp_path: Path, fake: FakeSlack
) -> None:
    fake.scopes.remove("chat:write")
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.reply("Edited instead.")
        await bot.slack.event(mention("hello"))
        await turn_done(bot)

    [post] = fake.calls("chat.postMessage")
    assert post["body"]["text"] == "🤔 Thinking…"
    assert fake.calls("chat.update")[-1]["body"]["text"] == "Edited instead."


async def test_a_stream_that_dies_mid_turn_becomes_that_messages_edited_answer_shown_once(
    tmp_path: Path, fake: FakeSlack
) -> None:
    def dead(body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        return 200, {}, {"ok": False, "error": "message_not_in_streaming_state"}

    fake.overrides["chat.appendStream"] = dead
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.call_tools(("toy__echo", {"text": "hi"}))
        bot.llm.reply("The answer survives the dead stream.")
        await bot.slack.event(mention("echo hi"))
        await turn_done(bot)

    [stream] = streams(fake)
    edits = updates(fake, stream.ts)
    assert edits[-1]["text"] == "The answer survives the dead stream."
    assert "toy__echo" in str(edits[-1]["blocks"])  # the tools used, as on the edit path
    shown = [m.get("text") for m in fake.messages["C_TEST"]]
    assert shown.count("The answer survives the dead stream.") == 1
    assert fake.calls("chat.postMessage") == []  # no second message for it
    assert fake.calls("chat.stopStream") == []  # never after the stream died


async def test_an_app_not_declared_as_an_agent_streams_without_sessions(
    tmp_path: Path, fake: FakeSlack
) -> None:
    fake.scopes.remove("assistant:write")
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        for n in (1, 2):
            bot.llm.reply(f"Streamed answer {n}.")
            await bot.slack.event(mention(f"hi {n}"))
            await turn_done(bot)

    assert [s.text for s in streams(fake)] == ["Streamed answer 1.", "Streamed answer 2."]
    assert len(fake.calls("agents.sessions.setStatus")) == 1  # refused once, remembered
    assert all(s.stop_body is not None and "session_status" not in s.stop_body for s in streams(fake))


# --- Slack's Stop ------------------------------------------------------------------------------


async def test_slacks_stop_ends_a_streamed_turn_and_says_how_far_it_got(
    tmp_path: Path, fake: FakeSlack
) -> None:
    event = mention("take your time")
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.call_tools(("toy__slow", {"seconds": 60}))
        await bot.slack.event(event)
        await bot.slack.click("mcp_agent_approve", approval_value(await approval_question_any(fake)))
        await running_card(fake)

        await bot.slack.event(agent_session_stopped_event(USER_B, thread_ts=event["ts"], channel_id="C_TEST"))
        [refusal] = await fake.await_for("chat.postEphemeral", timeout_s=TURN_S)
        assert refusal["body"]["user"] == USER_B
        assert streams(fake)[-1].state == "streaming"  # someone else's stop changed nothing

        await bot.slack.event(agent_session_stopped_event(USER, thread_ts=event["ts"], channel_id="C_TEST"))
        await listeners_done(TURN_S)

    stream = streams(fake)[-1]
    assert stream.state == "stopped"
    assert stream.text.endswith("Stopped — ran 0 of 1 tool.")
    assert list(stream.tasks().values())[-1]["status"] == "error"
    assert fake.ai.sessions[("C_TEST", event["ts"])].status == "closed"


async def running_card(fake: FakeSlack) -> None:
    with anyio.fail_after(TURN_S):
        while not any(  # noqa: ASYNC110
            c["type"] == "task_update" and c["status"] == "in_progress"
            for s in streams(fake)
            for c in s.chunks
        ):
            await anyio.sleep(0.02)


async def test_a_model_error_after_streamed_words_ends_the_stream_with_what_went_wrong(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake, **streamed()) as bot:
        bot.llm.cut("Half an answer and then ")
        await bot.slack.event(mention("go"))
        await turn_done(bot)

    [stream] = streams(fake)
    assert stream.state == "stopped"
    assert stream.text.startswith("Half an ")
    assert "stopped answering mid-way" in stream.text
